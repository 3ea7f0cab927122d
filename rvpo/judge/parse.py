"""Strict parsing of the judge's verdict JSON.

Accepted: the judge's whole answer is one JSON object ``{"explanation": str, "criteria_met": bool}``,
optionally wrapped, as a whole, in one Markdown code fence (```json ... ``` or ``` ... ```), with
surrounding whitespace. Everything else raises :class:`VerdictParseError`: prose around the object,
several objects, ``"true"`` as a string, ``1``, a missing key. No searching for a JSON object inside
free text: that is how text quoted from the graded completion could become the verdict.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(?P<body>.*)\n[ \t]*```\Z", re.S)


class VerdictParseError(ValueError):
    """The judge's answer is not a valid verdict; the message says why (first 200 chars of the text)."""


@dataclass
class Verdict:
    """One rubric-item judgement: did the graded answer meet the criterion, and why.

    ``p_met``: the judge's normalised probability of the "met" answer, ``P(true) / (P(true) + P(false))``
    at the ``criteria_met`` value, where the backend exposes token probabilities (the local model
    server; an OpenAI-compatible server's ``logprobs``); ``None`` where it does not (a hard verdict).
    """

    criteria_met: bool
    explanation: str
    p_met: float | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        """``"soft"`` when :attr:`p_met` is known, else ``"hard"`` (which kind of verdict :attr:`score` is)."""
        return "soft" if self.p_met is not None else "hard"

    @property
    def score(self) -> float:
        """The soft verdict in [0, 1]: :attr:`p_met` where known, else the hard verdict as 1.0 / 0.0."""
        return float(self.p_met) if self.p_met is not None else float(self.criteria_met)

    def to_json(self) -> str:
        """Canonical JSON (what the cache stores)."""
        return json.dumps({"explanation": self.explanation, "criteria_met": self.criteria_met},
                          ensure_ascii=False)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _fail(reason: str, text: str) -> VerdictParseError:
    snippet = text[:200] + ("..." if len(text) > 200 else "")
    return VerdictParseError(f"{reason}: {snippet!r}")


def parse_verdict(text: str) -> Verdict:
    """Parse the judge's answer strictly into a :class:`Verdict`.

    >>> parse_verdict('{"explanation": "ok", "criteria_met": true}')
    Verdict(criteria_met=True, explanation='ok')
    >>> parse_verdict('```json\\n{"explanation": "no", "criteria_met": false}\\n```').criteria_met
    False
    """
    if not isinstance(text, str):
        raise VerdictParseError(f"verdict must be text, got {type(text).__name__}")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    if not body.startswith("{"):
        raise _fail("verdict is not a JSON object", text)
    try:
        obj = json.loads(body, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise _fail(f"verdict is not valid JSON ({e.msg} at char {e.pos})", text) from None
    except _DuplicateKey as e:
        raise _fail(f"duplicate key {e.args[0]!r}", text) from None
    if not isinstance(obj, dict):
        raise _fail("verdict is not a JSON object", text)
    met = obj.get("criteria_met")
    if not isinstance(met, bool):
        raise _fail(f"'criteria_met' must be true or false, got {met!r:.40}", text)
    explanation = obj.get("explanation", "")
    if not isinstance(explanation, str):
        raise _fail("'explanation' must be a string", text)
    extra = set(obj) - {"explanation", "criteria_met"}
    if extra:
        raise _fail(f"unexpected keys {sorted(extra)}", text)
    return Verdict(criteria_met=met, explanation=explanation)


_KEY = re.compile(r'(?<!\\)"criteria_met"\s*:\s*')


def p_met_from_logprobs(content: list | None) -> float | None:
    """``P(true) / (P(true) + P(false))`` at the ``criteria_met`` value, from OpenAI ``logprobs.content``.

    ``content``: the reply's ``choices[0].logprobs.content``, a list of ``{"token", "logprob",
    "top_logprobs": [{"token", "logprob"}, ...]}``. The token that holds the value of the (unescaped)
    ``"criteria_met":`` key is found by its character offset in the concatenated tokens; the chosen
    token and its alternatives are summed by whether they spell ``true`` or ``false`` (case and
    surrounding whitespace ignored). An alternative missing from ``top_logprobs`` counts as 0. ``None``
    when the structure is missing or malformed or neither answer has a probability.

    >>> round(p_met_from_logprobs([{"token": '{"criteria_met":', "logprob": 0.0},
    ...     {"token": " true", "logprob": -0.2, "top_logprobs": [{"token": " true", "logprob": -0.2},
    ...                                                        {"token": " false", "logprob": -1.7}]}]), 4)
    0.8176
    """
    if not isinstance(content, list) or not content:
        return None
    try:
        tokens = [str(t["token"]) for t in content]
    except (TypeError, KeyError):
        return None
    text = "".join(tokens)
    matches = list(_KEY.finditer(text))
    if not matches:
        return None
    pos = matches[-1].end()
    start = 0
    for tok, entry in zip(tokens, content, strict=True):  # noqa: B007 (entry: the token at pos, read after the break)
        if start <= pos < start + len(tok):
            break
        start += len(tok)
    else:
        return None
    cands = [entry] + list(entry.get("top_logprobs") or [])
    mass = {"true": 0.0, "false": 0.0}
    seen: set[str] = set()
    for c in cands:
        try:
            tok, lp = str(c["token"]), float(c["logprob"])
        except (TypeError, KeyError, ValueError):
            continue
        word = tok.strip().lower()
        if tok in seen or word not in mass or not math.isfinite(lp):
            continue
        seen.add(tok)
        mass[word] += math.exp(lp)
    total = mass["true"] + mass["false"]
    return mass["true"] / total if total > 0 else None
