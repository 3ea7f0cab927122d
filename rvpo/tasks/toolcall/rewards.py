"""ToolRL tool-call rewards: a format channel in {0, 1} and a correctness channel in [-3, 3].

Output format (ToolRL, Qian et al. 2025; ``qiancheng0/ToolRL`` ``verl/utils/reward_score/rlla.py``)::

    <think> reasoning </think>
    <tool_call>
    {"name": "get_weather", "parameters": {"city": "Paris"}}
    {"name": "...", "parameters": {...}}
    </tool_call>
    <response> final answer </response>

``<think>`` is always required; ``<tool_call>`` and ``<response>`` are required exactly when the
ground truth has them. Both reward functions follow TRL's contract (batched lists in, one float per
completion out) and take the ``ground_truth`` column (the gold output in the format above).

Reimplemented from the definition (the upstream code was read, not copied). Deviations from the
upstream code are listed in docs/toolcall.md and marked ``DEVIATION`` below.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rvpo.rewards import completion_text

__all__ = [
    "ParsedOutput",
    "parse_output",
    "parse_gold_calls",
    "split_think",
    "score_calls",
    "canonicalize_calls",
    "format_score",
    "correctness_score",
    "format_reward",
    "correctness_reward",
    "make_format_reward",
    "make_correctness_reward",
    "render_output",
    "name_match",
    "CORRECTNESS_MAX",
    "CORRECTNESS_MIN",
]

CORRECTNESS_MAX = 3.0
CORRECTNESS_MIN = -3.0

# Regexes of ToolRL's format check, chosen by which of <tool_call>/<response> the gold has.
# ``^``/``$`` anchor to the (stripped) completion; DOTALL lets the bodies span lines.
_FORMAT_PATTERNS: dict[tuple[bool, bool], re.Pattern[str]] = {
    (True, False): re.compile(r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>$", re.DOTALL),
    (False, True): re.compile(r"^<think>.*?</think>\n<response>.*?</response>$", re.DOTALL),
    (True, True): re.compile(
        r"^<think>.*?</think>\n<tool_call>\n.*?\n</tool_call>\n<response>.*?</response>$", re.DOTALL
    ),
    (False, False): re.compile(r"^<think>.*?</think>$", re.DOTALL),
}


@dataclass
class ParsedOutput:
    """One completion split into its ToolRL parts. Parse problems are recorded in ``errors``.

    think / response: text inside the first tag pair (stripped), or None when the pair is absent.
    tool_calls: the calls of the first ``<tool_call>`` block, each ``{"name": str, "parameters": dict}``
        (only the lines that parsed); None when there is no ``<tool_call>`` tag.
    errors: human-readable problems with the tool-call block ("line 2: invalid JSON ..."); a
        completion with any error scores the minimum correctness.
    """

    think: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    response: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when a tool-call block is present and every line of it parsed."""
        return self.tool_calls is not None and not self.errors


def split_think(text: str) -> tuple[str | None, str]:
    """(think body, the text outside the think block).

    The think block runs from the first ``<think>`` to the first ``</think>`` after it; its body is
    opaque. DEVIATION: upstream searches the whole text, so a gold or completion whose reasoning
    mentions "<tool_call>" or "<response>" (17 of the 400 ToolRL SFT golds do) is misread there:
    its own gold crashes upstream's correctness and scores format 0 against itself.
    Without a closed think block, nothing is masked.
    """
    start = text.find("<think>")
    end = text.find("</think>", start + 7) if start >= 0 else -1
    if start < 0 or end < 0:
        return None, text
    return text[start + 7:end].strip(), text[:start] + text[end + 8:]


def _first_block(text: str, tag: str) -> str | None:
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return (text[start:] if end < 0 else text[start:end]).strip()


def _parse_call_lines(block: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse a tool-call block: one JSON object per line (ToolRL: blank lines are errors)."""
    calls: list[dict[str, Any]] = []
    errors: list[str] = []
    for i, line in enumerate(block.split("\n"), start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"tool_call line {i}: invalid JSON ({exc.msg}): {line[:80]!r}")
            continue
        if not isinstance(obj, dict):
            errors.append(f"tool_call line {i}: expected a JSON object, got {type(obj).__name__}")
            continue
        # DEVIATION (strictness): upstream only fails on a missing/non-dict "parameters" when the
        # call's name matches a gold name; here every call must be {"name": str, "parameters": dict}.
        if not isinstance(obj.get("name"), str):
            errors.append(f"tool_call line {i}: missing or non-string 'name'")
            continue
        if not isinstance(obj.get("parameters"), dict):
            errors.append(f"tool_call line {i}: missing or non-object 'parameters'")
            continue
        calls.append(obj)
    return calls, errors


def parse_output(text: str) -> ParsedOutput:
    """Split ``text`` into think / tool_calls / response; never raises.

    Like ToolRL, only the first ``<tool_call>`` block counts and its body is the text between the
    first ``<tool_call>`` and the next ``</tool_call>``, stripped, split on newlines. Tags inside
    the think block are ignored (see ``split_think``).
    """
    text = completion_text(text) if not isinstance(text, str) else text
    think, text = split_think(text)
    out = ParsedOutput(think=think, response=_first_block(text, "response"))
    start = text.find("<tool_call>")
    if start < 0:
        return out
    body_start = start + len("<tool_call>")
    end = text.find("</tool_call>", body_start)
    nxt = text.find("<tool_call>", body_start)
    if end < 0 or (0 <= nxt < end):
        # DEVIATION (edge case): upstream accepts a closing tag anywhere in the text (even before
        # the opening one); here the block must be closed before any second opening tag.
        out.tool_calls = []
        out.errors.append("<tool_call> is not closed by </tool_call>")
        return out
    out.tool_calls, out.errors = _parse_call_lines(text[body_start:end].strip())
    return out


def parse_gold_calls(ground_truth: str) -> list[dict[str, Any]] | None:
    """The gold call list of a ToolRL ground truth, or None when it has no ``<tool_call>``.

    Raises ValueError when the gold's tool-call block does not parse (a data bug, not a model error).
    """
    gold = _gold_calls(ground_truth)
    return None if gold is None else copy.deepcopy(gold)


@functools.lru_cache(maxsize=4096)
def _gold_calls(ground_truth: str) -> list[dict[str, Any]] | None:
    # Cached: TRL scores each gold G times per step. Callers must not mutate the result.
    if "<tool_call>" not in split_think(ground_truth)[1]:
        return None
    parsed = parse_output(ground_truth)
    if parsed.errors:
        raise ValueError(f"ground truth has a malformed <tool_call> block: {parsed.errors[0]}; gold={ground_truth[:200]!r}")
    return parsed.tool_calls


def render_output(calls: Sequence[dict[str, Any]] | None = None, think: str = "", response: str | None = None) -> str:
    """Render a ToolRL output string (the inverse of ``parse_output``)."""
    parts = [f"<think> {think.strip()} </think>" if think.strip() else "<think></think>"]
    if calls:
        lines = "\n".join(json.dumps({"name": c["name"], "parameters": c["parameters"]}, ensure_ascii=False) for c in calls)
        parts.append(f"<tool_call>\n{lines}\n</tool_call>")
    if response is not None:
        parts.append(f"<response> {response.strip()} </response>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------------------------


def format_score(text: str, ground_truth: str, strict_think: bool = True) -> float:
    """1.0 if ``text`` has exactly the tags the gold requires, each once, in order; else 0.0.

    Required: ``<think>`` always, ``<tool_call>`` iff the gold has one, ``<response>`` iff the gold
    has one; the parts are joined by single newlines with nothing before or after (the completion is
    stripped first, as ToolRL's ``compute_score`` does), and tool-call lines sit on their own lines.
    ``strict_think=False`` reproduces upstream exactly (it does not count ``<think>`` tags, so a
    duplicated think block can pass there).
    """
    text = text.strip()
    gold_rest = split_think(ground_truth)[1]
    has_call, has_resp = "<tool_call>" in gold_rest, "<response>" in gold_rest
    if not _FORMAT_PATTERNS[(has_call, has_resp)].search(text):
        return 0.0
    rest = split_think(text)[1]
    # DEVIATION: strict_think also requires a single think block (method.md: "each required tag
    # exactly once"); upstream does not count <think> tags.
    if strict_think and ("<think>" in rest or "</think>" in rest):
        return 0.0
    for tag in (["tool_call"] if has_call else []) + (["response"] if has_resp else []):
        if rest.count(f"<{tag}>") != 1 or rest.count(f"</{tag}>") != 1:
            return 0.0
    return 1.0


# ---------------------------------------------------------------------------------------------
# correctness
# ---------------------------------------------------------------------------------------------


def name_match(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Frequency-aware Jaccard of two lists (multiset intersection / multiset union), in [0, 1].

    Equal lists (including two empty ones) give 1; one empty list gives 0.
    """
    if list(a) == list(b):
        return 1.0
    if not a or not b:
        return 0.0
    ca, cb = Counter(a), Counter(b)
    inter = sum((ca & cb).values())
    union = len(a) + len(b) - inter
    return inter / union if union > 0 else 0.0


def _call_match(gold: dict[str, Any], pred: dict[str, Any]) -> float:
    """Param-name Jaccard + number of gold params whose predicted value is exactly equal."""
    gp, pp = gold["parameters"], pred["parameters"]
    keys = name_match(list(gp.keys()), list(pp.keys()))
    values = sum(1.0 for k, v in gp.items() if k in pp and pp[k] == v)
    return keys + values


def score_calls(gold: list[dict[str, Any]], pred: list[dict[str, Any]],
                max_reward: float = CORRECTNESS_MAX, min_reward: float = CORRECTNESS_MIN) -> float:
    """ToolRL's correctness of a predicted call list against a gold call list.

    ``max_reward`` on an exact list match; otherwise ``S / S_max`` mapped linearly onto
    [min_reward, max_reward], where ``S`` = name_match(gold names, predicted names) + for each gold
    call in order, the best-scoring unused predicted call of the same name (greedy, first best wins,
    only scores > 0 count) and ``S_max = 1 + sum(1 + |gold params|)``.
    A reordered but otherwise identical list also reaches ``max_reward`` through ``S = S_max``.
    """
    if gold == pred:
        return max_reward
    score = name_match([c["name"] for c in gold], [c["name"] for c in pred])
    total = 1.0
    used: set[int] = set()
    for g in gold:
        total += 1.0 + len(g["parameters"])
        best, best_i = 0.0, -1
        for i, p in enumerate(pred):
            if i in used or p["name"] != g["name"]:
                continue
            s = _call_match(g, p)
            if s > best:
                best, best_i = s, i
        if best_i >= 0:
            used.add(best_i)
            score += best
    return (max_reward - min_reward) * score / total + min_reward


_NO_CALL_MODES = ("zero", "abstain", "match")


def correctness_score(text: str, ground_truth: str, *, no_call: str = "zero",
                      max_reward: float = CORRECTNESS_MAX, min_reward: float = CORRECTNESS_MIN,
                      accepted: str | list[dict[str, Any]] | None = None) -> float | None:
    """Correctness of one completion against one ToolRL ground truth, in [min_reward, max_reward].

    Gold with tool calls: ``min_reward`` when the completion has no closed ``<tool_call>`` block or
    any of its lines fails to parse; else ``score_calls``.
    Gold without tool calls (response-only), by ``no_call``:
      "zero" (ToolRL): 0.0 for every completion, so the channel carries no signal there;
      "abstain": None (TRL/RVPO: this channel abstains for the completion);
      "match": ``max_reward`` if the completion has no ``<tool_call>``/``</tool_call>`` tag, else
        ``min_reward`` (the variant left commented out in ToolRL).
    ``accepted`` (rvpo extension, BFCL rows): ``[{"name", "parameters": {param: [accepted values]}}]``
    or its JSON text; predicted calls are first normalised with ``canonicalize_calls``, so any
    accepted value counts as the gold value. None or "" scores exactly as ToolRL.
    """
    if no_call not in _NO_CALL_MODES:
        raise ValueError(f"no_call must be one of {_NO_CALL_MODES}, got {no_call!r}")
    gold = _gold_calls(ground_truth)
    if gold is None:
        if no_call == "zero":
            return 0.0
        if no_call == "abstain":
            return None
        rest = split_think(text)[1]
        return max_reward if ("<tool_call>" not in rest and "</tool_call>" not in rest) else min_reward
    parsed = parse_output(text)
    if not parsed.ok:
        return min_reward
    pred = parsed.tool_calls or []
    if accepted:
        pred = canonicalize_calls(pred, gold, _accepted_list(accepted))
    return score_calls(gold, pred, max_reward, min_reward)


@functools.lru_cache(maxsize=4096)
def _accepted_json(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"'accepted' is not valid JSON ({exc.msg}): {text[:120]!r}") from None
    return _accepted_list(value)


def _accepted_list(accepted: Any) -> list[dict[str, Any]]:
    if isinstance(accepted, str):
        return _accepted_json(accepted)
    if not isinstance(accepted, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("parameters"), dict)
            and all(isinstance(v, list) for v in a["parameters"].values()) for a in accepted):
        raise ValueError("'accepted' must be a list of {'name': str, 'parameters': {param: [values]}}")
    return accepted


def _is_accepted(value: Any, accepted: list[Any]) -> bool:
    # Equal to an accepted value; a dict (or list of dicts) also when BFCL's per-key lists accept it.
    if value in accepted:
        return True
    if isinstance(value, dict):
        return _dict_accepted(value, accepted)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return any(isinstance(a, list) and len(a) == len(value) and all(_dict_accepted(v, [d]) for v, d in zip(value, a, strict=True))
                   for a in accepted)
    return False


def _dict_accepted(value: dict, accepted: list[Any]) -> bool:
    return any(isinstance(a, dict) and all(k in a and isinstance(a[k], list) and v in a[k] for k, v in value.items())
               and all(k in value or "" in vals for k, vals in a.items() if isinstance(vals, list)) for a in accepted)


def canonicalize_calls(pred: list[dict[str, Any]], gold: list[dict[str, Any]],
                       accepted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Map accepted alternatives onto the gold values (BFCL's answer lists), before ToolRL scoring.

    ``accepted[i]`` lists the accepted values of ``gold[i]``'s parameters ("" = may be omitted).
    Each predicted call is paired with the same-name accepted entry under which most of its values
    are accepted (first on ties); an accepted value is replaced by the gold value, or dropped when
    the gold call leaves that optional parameter out. Other values are left as predicted.
    "Accepted" is equality with a listed value; a dict value (or list of dicts) is accepted when
    BFCL's per-key lists accept each key (exact values, no string standardisation).
    """
    if len(accepted) != len(gold):
        raise ValueError(f"'accepted' has {len(accepted)} entries but the gold has {len(gold)} calls")
    out = []
    for p in pred:
        cands = [(a, g) for a, g in zip(accepted, gold, strict=True) if a["name"] == p["name"] == g["name"]]
        if not cands:
            out.append(p)
            continue

        def n_ok(ag: tuple[dict[str, Any], dict[str, Any]], p: dict[str, Any] = p) -> int:
            return sum(1 for k, v in p["parameters"].items() if _is_accepted(v, ag[0]["parameters"].get(k, [])))

        acc, g = max(cands, key=n_ok)  # max keeps the first of equal counts
        params = {}
        for k, v in p["parameters"].items():
            if k in acc["parameters"] and v != "" and _is_accepted(v, acc["parameters"][k]):
                if k in g["parameters"]:
                    params[k] = g["parameters"][k]
                continue  # dropped: an accepted value of an optional parameter the gold omits
            params[k] = v
        out.append({"name": p["name"], "parameters": params})
    return out


# ---------------------------------------------------------------------------------------------
# TRL reward functions
# ---------------------------------------------------------------------------------------------


def _check_lengths(completions: Sequence[Any], ground_truth: Sequence[str] | None, fn: str) -> None:
    if ground_truth is None:
        raise ValueError(f"{fn}: needs the 'ground_truth' column (one gold ToolRL output per completion)")
    if len(ground_truth) != len(completions):
        raise ValueError(f"{fn}: {len(completions)} completions but {len(ground_truth)} ground_truth values")


def _accepted_column(column: Any, n: int, fn: str) -> list[Any]:
    if column is None:
        return [None] * n
    if len(column) != n:
        raise ValueError(f"{fn}: {n} completions but {len(column)} 'accepted' values")
    return list(column)


def make_format_reward(strict_think: bool = True, name: str = "format") -> Callable[..., list[float]]:
    """A TRL reward function ``fn(completions, ground_truth, **kw) -> list[float]`` in {0, 1}."""

    def reward(completions: Sequence[Any], ground_truth: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
        _check_lengths(completions, ground_truth, name)
        return [format_score(completion_text(c), gt, strict_think=strict_think) for c, gt in zip(completions, ground_truth, strict=True)]

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def make_correctness_reward(no_call: str = "zero", max_reward: float = CORRECTNESS_MAX,
                            min_reward: float = CORRECTNESS_MIN, name: str = "correctness",
                            use_accepted: bool = True) -> Callable[..., list[float | None]]:
    """A TRL reward function ``fn(completions, ground_truth, **kw) -> list[float | None]``.

    ``no_call`` chooses the score for response-only golds (see ``correctness_score``); ToolRL's
    ``CORRECTMAX1`` variant is ``max_reward=1, min_reward=-1``. With ``use_accepted`` an
    ``accepted`` column (BFCL rows; None/"" elsewhere) widens exact value matches.
    """
    if no_call not in _NO_CALL_MODES:
        raise ValueError(f"no_call must be one of {_NO_CALL_MODES}, got {no_call!r}")
    if not max_reward > min_reward:
        raise ValueError(f"max_reward ({max_reward}) must exceed min_reward ({min_reward})")

    def reward(completions: Sequence[Any], ground_truth: Sequence[str] | None = None, **kwargs: Any) -> list[float | None]:
        _check_lengths(completions, ground_truth, name)
        acc = _accepted_column(kwargs.get("accepted") if use_accepted else None, len(completions), name)
        return [correctness_score(completion_text(c), gt, no_call=no_call, max_reward=max_reward,
                                  min_reward=min_reward, accepted=a)
                for c, gt, a in zip(completions, ground_truth, acc, strict=True)]

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def format_reward(completions: Sequence[Any], ground_truth: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """ToolRL format reward in {0, 1} per completion (see ``format_score``). TRL name: "format"."""
    _check_lengths(completions, ground_truth, "format")
    return [format_score(completion_text(c), gt) for c, gt in zip(completions, ground_truth, strict=True)]


def correctness_reward(completions: Sequence[Any], ground_truth: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """ToolRL correctness reward in [-3, 3] per completion (response-only gold: 0.0, as ToolRL).

    An optional ``accepted`` column (BFCL rows) widens exact value matches (``canonicalize_calls``).

    TRL name: "correctness". Use ``make_correctness_reward(no_call="abstain")`` to abstain instead.
    """
    _check_lengths(completions, ground_truth, "correctness")
    acc = _accepted_column(kwargs.get("accepted"), len(completions), "correctness")
    return [float(correctness_score(completion_text(c), gt, accepted=a)) for c, gt, a in zip(completions, ground_truth, acc, strict=True)]


format_reward.__name__ = "format"
correctness_reward.__name__ = "correctness"
