"""LLM-judged rubric reward: one reward channel per rubric item (M varies per prompt).

Notation: ``N`` completions in a batch, ``M = max_channels`` channels (the largest rubric a prompt
may have). Row ``i``'s rubric has ``M_i <= M`` items; channels ``M_i..M-1`` are ``None`` (padding).

For every (completion, item) pair one :class:`rvpo.judge.JudgeRequest` is built (the conversation is
the prompt's messages plus the completion as the last assistant turn); **all** ``sum_i M_i``
requests go to the judge in one ``judge_many`` call, so they run concurrently up to the judge's
``concurrency`` and hit its cache. A judge failure (``None`` verdict after retries) becomes a
``None`` channel value, which the advantage core treats as NaN ("abstain": left out of that
completion's aggregate). Channel values follow :func:`rvpo.tasks.rubric.scoring.channel_value`: 1 for the
desirable outcome (positive item met, pitfall not met), else 0 (times ``|points|`` with
``scale="points"``).

Plugging into TRL::

    reward = RubricReward(JudgeClient(JudgeConfig.from_env()), max_channels=ds.max_items)
    reward_funcs = expand_multichannel(reward)        # rvpo.integrations.trl
    train_dataset = to_trl_dataset(ds)                # columns: prompt, rubric, example_id
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rvpo.rewards import completion_text
from rvpo.tasks.rubric.data import RubricDataset, RubricItem, rubric_from_column, rubric_to_json
from rvpo.tasks.rubric.scoring import Scale, channel_value

logger = logging.getLogger(__name__)

VERDICT_MODES = "soft | hard | threshold:<t>"


def parse_verdict_mode(spec: Any) -> tuple[str, float | None]:
    """``"soft"`` / ``"hard"`` / ``"threshold:<t>"`` (t in [0, 1]) as ``(mode, t)``; ``ValueError`` otherwise.

    >>> parse_verdict_mode("threshold:0.3"), parse_verdict_mode("soft")
    (('threshold', 0.3), ('soft', None))
    """
    text = str(spec).strip().lower()
    if text in ("soft", "hard"):
        return text, None
    if text.startswith("threshold:"):
        try:
            t = float(text.split(":", 1)[1])
        except ValueError:
            t = float("nan")
        if 0.0 <= t <= 1.0:
            return "threshold", t
    raise ValueError(f"verdict: expected {VERDICT_MODES} (t in [0, 1]), got {spec!r}")


def verdict_input(verdict: Any, mode: str, threshold: float | None = None) -> bool | float | None:
    """What :func:`channel_value` gets for one judge verdict under ``mode`` (see :func:`parse_verdict_mode`).

    ``hard``: the judge's boolean; ``soft``: ``p_met`` where the judge gave one, else the boolean;
    ``threshold``: ``p_met >= t`` where the judge gave ``p_met``, else the boolean. ``None``: abstained.
    """
    if verdict is None:
        return None
    p = getattr(verdict, "p_met", None)
    if mode == "hard" or p is None:
        return bool(verdict.criteria_met)
    if mode == "soft":
        return min(1.0, max(0.0, float(p)))
    return float(p) >= float(threshold)


def prompt_messages(prompt: Any) -> list[dict]:
    """A TRL prompt (a string or a list of chat messages) as a list of ``{role, content}`` messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    raise TypeError(f"prompt must be a string or a list of messages, got {type(prompt).__name__}")


@dataclass
class RubricRewardStats:
    """Running counts since construction (or the last :meth:`RubricReward.reset_stats`)."""

    calls: int = 0
    completions: int = 0
    judge_s: float = 0.0
    last_judge_s: float = 0.0
    requests: int = 0
    abstained: int = 0
    last_abstained: int = 0
    abstained_by_channel: list[int] = field(default_factory=list)
    soft: int = 0
    """verdicts that carried a probability (``p_met``): soft channel values where ``verdict`` is soft"""
    last_soft: int = 0
    last_judged: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Counts and the overall abstention rate, JSON-ready (for trainer logs)."""
        return {
            "calls": self.calls, "completions": self.completions, "requests": self.requests,
            "abstained": self.abstained, "last_abstained": self.last_abstained,
            "judge_s": round(self.judge_s, 3), "last_judge_s": round(self.last_judge_s, 3),
            "abstain_rate": self.abstained / self.requests if self.requests else 0.0,
            "soft": self.soft,
        }


class RubricReward:
    """Multi-channel reward (``rvpo.rewards.MultiChannelReward``) graded by an LLM judge.

    Args:
        judge: a :class:`rvpo.judge.JudgeClient` (anything with ``judge_many(requests) -> list[Verdict | None]``).
        max_channels: ``M``, the number of channels; a row whose rubric has more items raises
            ``ValueError`` (size it with :attr:`RubricDataset.max_items`).
        rubric_column: the dataset column holding each row's rubric (a JSON string from
            :func:`rvpo.tasks.rubric.rubric_to_json` or a list of ``{criterion, points, tags}``).
        scale: ``"unit"`` (0/1 values) or ``"points"`` (0/|points|); see :mod:`rvpo.tasks.rubric.scoring`.
        name: prefix of the channel names ``<name>_0 .. <name>_{M-1}``.
        digits: zero-pad the channel index to this many digits (``item_00``; 0 = no padding).
        verdict: ``"hard"`` (the judge's yes/no), ``"soft"`` (its probability of "met" where it gives one:
            :attr:`rvpo.judge.Verdict.p_met`; the yes/no where it does not) or ``"threshold:<t>"``
            (met iff that probability >= t); see :func:`verdict_input`.

    Call: ``reward(prompts, completions, rubric=[...]) -> (N, M)`` nested list of ``float | None``.
    After a call, ``last_values`` holds those values, ``last_hard`` the same channels under the judge's
    yes/no, and ``last_p`` each judged item's ``p_met`` (``None``: hard verdict, abstention or padding).
    """

    def __init__(self, judge: Any, max_channels: int, rubric_column: str = "rubric",
                 scale: Scale = "unit", name: str = "rubric", digits: int = 0, verdict: str = "hard"):
        if max_channels < 1:
            raise ValueError(f"max_channels must be >= 1, got {max_channels}")
        if scale not in ("unit", "points"):
            raise ValueError(f"scale must be 'unit' or 'points', got {scale!r}")
        self.judge = judge
        self.verdict_mode, self.verdict_threshold = parse_verdict_mode(verdict)
        self.max_channels = int(max_channels)
        self.rubric_column = rubric_column
        self.scale = scale
        self.channel_names = [f"{name}_{j:0{max(int(digits), 1)}d}" for j in range(self.max_channels)]
        self.__name__ = name
        self.stats = RubricRewardStats(abstained_by_channel=[0] * self.max_channels)
        self.last_rubrics: list[list[RubricItem]] = []
        """Row i's items in the last call (channel j of row i is ``last_rubrics[i][j]``), for :meth:`tag_metrics`."""
        self.last_values: list[list[float | None]] = []
        """The ``(N, M)`` values the last call returned."""
        self.last_hard: list[list[float | None]] = []
        """The ``(N, M)`` values of the last call under the judge's yes/no (hard) verdicts."""
        self.last_p: list[list[float | None]] = []
        """The ``(N, M)`` ``p_met`` of the last call's verdicts (``None``: hard, abstained or padding)."""

    def tag_metrics(self, binding: Any = None, prefix: str = "rubric/") -> dict[str, float]:
        """:func:`rubric_tag_metrics` of the last call (``binding``: the estimator's ``(N, M)`` weights)."""
        return rubric_tag_metrics(self.last_rubrics, self.last_values, binding=binding, prefix=prefix,
                                  hard=self.last_hard or None)

    def reset_stats(self) -> None:
        """Zero the running counts in :attr:`stats`."""
        self.stats = RubricRewardStats(abstained_by_channel=[0] * self.max_channels)

    def _rubrics(self, n: int, columns: dict[str, Any]) -> list[list[RubricItem]]:
        if self.rubric_column not in columns:
            raise KeyError(f"RubricReward needs the dataset column {self.rubric_column!r}; "
                           f"got columns {sorted(columns)}")
        col = columns[self.rubric_column]
        if len(col) != n:
            raise ValueError(f"column {self.rubric_column!r} has {len(col)} rows for {n} completions")
        rubrics = []
        for i, value in enumerate(col):
            try:
                items = rubric_from_column(value)
            except ValueError as e:
                raise ValueError(f"row {i}: {e}") from None
            if len(items) > self.max_channels:
                raise ValueError(f"row {i}: rubric has {len(items)} items but max_channels={self.max_channels}; "
                                 f"build RubricReward with max_channels >= the dataset's max_items")
            rubrics.append(items)
        return rubrics

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[list[float | None]]:
        """Judge every (completion, item) pair in one concurrent batch; return ``(N, M)`` values."""
        from rvpo.judge import JudgeRequest  # deferred: optional httpx (rvpo[judge]); verl's ToolRL scorer runs without

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rubrics = self._rubrics(len(completions), columns)
        requests, where = [], []  # where[r] = (row, channel) of request r
        for i, (prompt, completion, items) in enumerate(zip(prompts, completions, rubrics, strict=True)):
            conv = prompt_messages(prompt) + [{"role": "assistant", "content": completion_text(completion)}]
            for j, it in enumerate(items):
                requests.append(JudgeRequest(conversation=conv, criterion=it.criterion, points=it.points))
                where.append((i, j))
        t0 = time.perf_counter()
        verdicts = self.judge.judge_many(requests) if requests else []
        self.stats.last_judge_s = time.perf_counter() - t0
        self.stats.judge_s += self.stats.last_judge_s
        if len(verdicts) != len(requests):
            raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(requests)} requests")
        out: list[list[float | None]] = [[None] * self.max_channels for _ in completions]  # (N, M)
        hard = [[None] * self.max_channels for _ in completions]
        probs: list[list[float | None]] = [[None] * self.max_channels for _ in completions]
        n_abstain = n_soft = 0
        for (i, j), v in zip(where, verdicts, strict=True):
            out[i][j] = channel_value(rubrics[i][j], verdict_input(v, self.verdict_mode, self.verdict_threshold),
                                      self.scale)
            hard[i][j] = channel_value(rubrics[i][j], None if v is None else bool(v.criteria_met), self.scale)
            if v is None:
                n_abstain += 1
                self.stats.abstained_by_channel[j] += 1
            elif getattr(v, "p_met", None) is not None:
                probs[i][j] = float(v.p_met)
                n_soft += 1
        self.stats.last_soft, self.stats.last_judged = n_soft, len(requests) - n_abstain
        self.stats.soft += n_soft
        self._log(len(completions), len(requests), n_abstain)
        self.last_rubrics, self.last_values, self.last_hard, self.last_p = rubrics, out, hard, probs
        return out

    def _log(self, n: int, n_req: int, n_abstain: int) -> None:
        s = self.stats
        s.calls += 1
        s.completions += n
        s.requests += n_req
        s.abstained += n_abstain
        s.last_abstained = n_abstain
        level = logging.WARNING if n_abstain else logging.DEBUG
        logger.log(level, "rubric reward: %d completions, %d judge requests, %d abstained (total %d/%d)",
                   n, n_req, n_abstain, s.abstained, s.requests)


# ---------------------------------------------------------------------------------------------
# diagnostics by rubric tag (channel j is a different item for each prompt)

def rubric_tag_metrics(rubrics: Sequence[Sequence[RubricItem]], values: Sequence[Sequence[float | None]],
                       binding: Any = None, prefix: str = "rubric/",
                       hard: Sequence[Sequence[float | None]] | None = None) -> dict[str, float]:
    """Per-tag figures of one batch, flat; meaningful where per-channel figures are not.

    Args:
        rubrics: ``N`` rows; row ``i`` holds its ``M_i`` items (channel ``j`` of row ``i`` is item ``j``).
        values: ``(N, M)`` channel values as :class:`RubricReward` returns them (``None``: abstained or padding).
        binding: optional ``(N, M)`` binding weights of the advantage estimator (``out.binding``; a
            tensor, array or nested list), each row summing to 1 over its active channels.
        prefix: key prefix.
        hard: optional ``(N, M)`` values under the judge's yes/no verdicts (``RubricReward.last_hard``):
            ``satisfied`` counts those (a soft value of 0.3 is not "satisfied"); default ``values``.

    Returns ``{prefix + key: float}`` with ``satisfied`` (share of judged items with the desirable
    outcome: a positive item met, a pitfall avoided), ``abstained`` (share of items the judge abstained
    on), and per tag ``T`` (each item's tags plus ``sign:positive`` / ``sign:pitfall``):
    ``items/T`` (count), ``satisfied/T``, ``abstained/T``, ``value/T`` (mean channel value), and with
    ``binding`` ``binding/T`` (mean over rows of the binding mass on items tagged ``T``: which kind of
    item the soft-min is bottlenecked on). Shares with nothing to measure are NaN.
    """
    if len(rubrics) != len(values):
        raise ValueError(f"{len(rubrics)} rubric rows but {len(values)} value rows")
    weights = binding.tolist() if hasattr(binding, "tolist") else binding
    if weights is not None and len(weights) != len(values):
        raise ValueError(f"binding has {len(weights)} rows for {len(values)} value rows")
    count: dict[str, int] = {}
    judged: dict[str, int] = {}
    good: dict[str, int] = {}
    total: dict[str, float] = {}
    mass: dict[str, float] = {}
    for i, (items, row) in enumerate(zip(rubrics, values, strict=True)):
        row_mass: dict[str, float] = {}
        for j, it in enumerate(items):
            tags = (*it.tags, "sign:pitfall" if it.is_pitfall else "sign:positive")
            v = row[j]
            h = v if hard is None else hard[i][j]
            for t in ("", *tags):
                count[t] = count.get(t, 0) + 1
                if v is not None:
                    judged[t] = judged.get(t, 0) + 1
                    good[t] = good.get(t, 0) + (h is not None and h > 0)
                    total[t] = total.get(t, 0.0) + float(v)
                if weights is not None and t:
                    row_mass[t] = row_mass.get(t, 0.0) + float(weights[i][j])
        for t, m in row_mass.items():
            mass[t] = mass.get(t, 0.0) + m
    nan = float("nan")

    def share(a: float, b: int) -> float:
        return a / b if b else nan

    out = {f"{prefix}satisfied": share(good.get("", 0), judged.get("", 0)),
           f"{prefix}abstained": share(count.get("", 0) - judged.get("", 0), count.get("", 0))}
    for t in sorted(k for k in count if k):
        out[f"{prefix}items/{t}"] = float(count[t])
        out[f"{prefix}satisfied/{t}"] = share(good.get(t, 0), judged.get(t, 0))
        out[f"{prefix}abstained/{t}"] = share(count[t] - judged.get(t, 0), count[t])
        out[f"{prefix}value/{t}"] = share(total.get(t, 0.0), judged.get(t, 0))
        if weights is not None:
            out[f"{prefix}binding/{t}"] = share(mass.get(t, 0.0), len(values))
    return out


# ---------------------------------------------------------------------------------------------
# datasets for TRL

def to_trl_rows(dataset: RubricDataset, rubric_column: str = "rubric") -> list[dict[str, Any]]:
    """Rows ``{"prompt": messages, rubric_column: JSON string, "example_id": id}`` (conversational TRL format)."""
    return [{"prompt": ex.conversation, rubric_column: rubric_to_json(ex.items), "example_id": ex.id}
            for ex in dataset.examples]


def to_trl_dataset(dataset: RubricDataset, rubric_column: str = "rubric"):
    """A ``datasets.Dataset`` of :func:`to_trl_rows` (the rubric is a JSON string: arrow-friendly)."""
    from datasets import Dataset

    return Dataset.from_list(to_trl_rows(dataset, rubric_column))
