"""The dead-judge alarm: can the judge tell the completions of one prompt apart?

A group-relative estimator (GRPO, GDPO, RVPO) learns from differences between the ``G`` completions
of one prompt. A rubric item whose judge gives every completion of a group the same verdict carries
no signal for that group. When that holds for most (group, item) pairs, training on the rubric
cannot move: the judge, not the policy, is the bottleneck (measured: SmolLM2-135M gives P(yes)
0.10-0.24 whatever the answer, so its yes/no verdict never varies).

:func:`group_spread` measures it on one batch; :class:`SpreadAlarm` keeps the figures of the first
steps, warns on the console when the judge looks dead, and words the finding for ``summary.md``.

Shapes: ``values`` is ``(N, M)`` (``N = B * G`` completions in contiguous groups of ``G``; ``None`` or
NaN = abstained or padding). A (group, item) pair counts when at least two of its completions were
judged; it has *spread* when its values differ by more than ``tol``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("rvpo.tasks.rubric")

HARD_TOL = 1e-9
"""A hard (0/1) channel has spread when its values differ at all."""
SOFT_TOL = 0.02
"""A soft channel (probabilities) has spread when its values differ by more than 2 percentage points:
smaller differences are within what a z-score would inflate from numerical noise."""
DEAD_BELOW = 0.5
"""The alarm fires when fewer than this share of (group, item) pairs have spread ("most groups")."""


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Spread:
    """One batch: ``pairs`` (group, item) pairs with >= 2 judged completions, ``with_spread`` of them, and
    ``mean_std``, the mean over those pairs of the within-group standard deviation (population)."""

    pairs: int
    with_spread: int
    mean_std: float

    @property
    def frac(self) -> float:
        """Share of pairs with spread (NaN when there is no pair)."""
        return self.with_spread / self.pairs if self.pairs else math.nan


def group_spread(values: Sequence[Sequence[Any]], group_size: int, tol: float = HARD_TOL) -> Spread:
    """Within-group spread of every channel of an ``(N, M)`` batch (see the module docstring).

    >>> group_spread([[1.0, 0.2], [1.0, 0.9], [0.0, None], [0.0, 0.5]], group_size=2)
    Spread(pairs=3, with_spread=1, mean_std=0.11666666666666665)
    """
    n = len(values)
    if group_size < 1 or n % group_size:
        raise ValueError(f"group_spread: {n} rows do not split into groups of {group_size}")
    pairs = spread = 0
    stds = 0.0
    m = max((len(r) for r in values), default=0)
    for g in range(0, n, group_size):
        rows = values[g:g + group_size]
        for j in range(m):
            col = [x for x in (_num(r[j]) if j < len(r) else None for r in rows) if x is not None]
            if len(col) < 2:
                continue
            pairs += 1
            spread += (max(col) - min(col)) > tol
            mu = sum(col) / len(col)
            stds += math.sqrt(sum((x - mu) ** 2 for x in col) / len(col))
    return Spread(pairs, spread, stds / pairs if pairs else math.nan)


class SpreadAlarm:
    """Per-step spread figures and, at the first ``steps`` batches, a console warning when the judge is dead.

    ``observe(...)`` returns the step's metrics (keys below, with ``prefix``); :attr:`finding` holds the
    first alarm's sentence (``None`` while the judge separates completions), for ``summary.md``.

    - ``judge_spread_frac``: share of (group, item) pairs whose yes/no verdicts differ within the group;
    - ``judge_spread_frac_soft``: the same for the judge's probabilities (``p_met``, > ``SOFT_TOL`` apart;
      NaN when the judge gave none); ``judge_soft_std``: their mean within-group standard deviation;
    - ``judge_spread_frac_trained``: the same for the channel values training sees (per ``verdict``);
    - ``judge_dead``: 1 when the trained values have spread in fewer than ``DEAD_BELOW`` of the pairs.
    """

    def __init__(self, steps: int = 3, verdict: str = "hard"):
        self.steps, self.verdict = int(steps), verdict
        self.seen = 0
        self.finding: str | None = None
        self.first: dict[str, float] = {}

    def observe(self, trained: Sequence[Sequence[Any]], group_size: int, hard: Sequence[Sequence[Any]] | None = None,
                probs: Sequence[Sequence[Any]] | None = None, step: int = 0, prefix: str = "rubric/") -> dict[str, float]:
        """Figures of one batch; warns (``rvpo.tasks.rubric`` logger) at the first ``steps`` batches if dead."""
        t = group_spread(trained, group_size, SOFT_TOL if self.verdict == "soft" else HARD_TOL)
        h = group_spread(hard, group_size, HARD_TOL) if hard is not None else None
        s = group_spread(probs, group_size, SOFT_TOL) if probs is not None else None
        out = {"judge_spread_frac_trained": t.frac,
               "judge_spread_frac": h.frac if h else t.frac,
               "judge_spread_frac_soft": s.frac if s and s.pairs else math.nan,
               "judge_soft_std": s.mean_std if s and s.pairs else math.nan,
               "judge_dead": float(t.pairs > 0 and t.frac < DEAD_BELOW)}
        self.seen += 1
        if self.seen == 1:
            self.first = dict(out, pairs=float(t.pairs), step=float(step))
        if out["judge_dead"] and self.seen <= self.steps:
            msg = self._message(out, t, h, s, step, group_size)
            logger.warning("%s", msg)
            if self.finding is None:
                self.finding = msg
        return {prefix + k: v for k, v in out.items()}

    def _message(self, out: dict, t: Spread, h: Spread | None, s: Spread | None, step: int, g: int) -> str:
        hard_part = (f"yes/no verdicts differ in {h.with_spread} of {h.pairs} (group, item) pairs "
                     f"({h.frac:.0%})" if h and h.pairs else "")
        soft_part = (f"its probabilities differ by > {SOFT_TOL} in {s.with_spread} of {s.pairs} "
                     f"({s.frac:.0%}; mean within-group std {s.mean_std:.3f})" if s and s.pairs
                     else "it gave no probabilities (hard verdicts only)")
        text = (f"the judge cannot tell these completions apart: at step {step}, the channel values training "
                f"sees (verdict: {self.verdict}) differ within the group of G={g} in only {t.with_spread} of "
                f"{t.pairs} (group, item) pairs ({t.frac:.0%}); {hard_part}{'; ' if hard_part else ''}{soft_part}. "
                "Where they do not differ, a group-relative estimator gets no signal.")
        if self.verdict != "soft" and s and s.pairs and s.frac >= DEAD_BELOW:
            text += " The probabilities do vary: try task option verdict: soft."
        else:
            text += " Use a stronger judge (check it first: `rvpo judge check`)."
        return text
