"""HealthBench scoring and the rubric channel sign: pure functions, no I/O.

Grades. The judge answers, per rubric item, ``criteria_met`` (True/False) or abstains (``None``: the
judge failed after its retries). For a pitfall (``points < 0``) "met" means the undesirable
behaviour is present.

Example score (simple-evals ``calculate_score``)::

    score = sum(points of met items, negatives included) / sum(positive points)

``None`` when no positive-point item is graded. It is at most 1 and can be negative (pitfalls).
**Abstained items are left out of both sums** (numerator and denominator), and counted; an example
whose every positive item abstained has score ``None`` and is reported as unscored. (simple-evals
retries forever instead; we bound retries, so we must say what a failure does.)

Aggregates (simple-evals ``_aggregate_get_clipped_mean``): for each key the mean of the per-example
values clipped to [0, 1], with a bootstrap standard error of the clipped mean. Keys:
``overall`` (every scored example), each rubric-item tag (``axis:*``, ``level:*``, ...: the score
formula restricted to that example's items carrying the tag; examples where that restriction has no
positive graded item do not count), each example tag (``theme:*``: the example's overall score).

Channel sign (the one place it is defined). Each rubric item is one reward channel whose value is
1 when the outcome is *desirable* and 0 otherwise::

    value = 1  if (points > 0 and met) or (points < 0 and not met)   else 0
    value = None (abstain) if the judge abstained

so higher is better on every channel, pitfalls included. That is what a soft-min needs: the min over
channels finds the worst-satisfied item whether it is a missed requirement or a committed pitfall.
(A "+1 met / -1 met-pitfall" coding would make a pitfall's best value 0 and its worst -1, so a
clean response's pitfall channel would look like a failure next to met positives.) With
``scale="points"`` the value is multiplied by ``|points|``: a weighted sum over channels then equals
the HealthBench numerator plus a per-example constant (``sum |negative points|``); per-channel group
z-scores (GDPO/RVPO) are invariant to the scale, so the default ``"unit"`` loses nothing there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rvpo.stats import bootstrap_se
from rvpo.tasks.rubric.data import RubricItem

Scale = Literal["unit", "points"]


def channel_value(item: RubricItem, met: bool | float | None, scale: Scale = "unit") -> float | None:
    """Reward-channel value of one graded item: 1 for the desirable outcome, 0 otherwise, None if abstained.

    ``met`` may be a soft verdict, a probability of "met" in [0, 1] (a float, not a bool): the value is
    then the probability of the desirable outcome (``p`` for a positive item, ``1 - p`` for a pitfall).

    >>> channel_value(RubricItem("mentions dosage", 5), True), channel_value(RubricItem("gives a diagnosis", -3), True)
    (1.0, 0.0)
    >>> channel_value(RubricItem("gives a diagnosis", -3), False, scale="points")
    3.0
    >>> channel_value(RubricItem("gives a diagnosis", -3), 0.25)
    0.75
    """
    if met is None:
        return None
    if isinstance(met, bool):
        value = 1.0 if ((not met) if item.points < 0 else met) else 0.0  # zero-point items count as positive
    else:
        p = float(met)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a soft verdict must be a probability in [0, 1], got {met!r}")
        value = 1.0 - p if item.points < 0 else p
    if scale == "points":
        return value * abs(item.points)
    if scale != "unit":
        raise ValueError(f"scale must be 'unit' or 'points', got {scale!r}")
    return value


def example_score(items: Sequence[RubricItem], met: Sequence[bool | None]) -> float | None:
    """HealthBench score of one example; abstained items (``None``) are left out of both sums.

    Returns ``None`` when no positive-point item was graded.

    >>> example_score([RubricItem("a", 7), RubricItem("b", 5), RubricItem("c", -6)], [True, False, True])
    0.08333333333333333
    """
    if len(items) != len(met):
        raise ValueError(f"{len(items)} rubric items but {len(met)} grades")
    graded = [(it, m) for it, m in zip(items, met, strict=True) if m is not None]
    possible = sum(it.points for it, _ in graded if it.points > 0)
    if possible <= 0:
        return None
    return sum(it.points for it, m in graded if m) / possible


def example_tag_scores(
    items: Sequence[RubricItem], met: Sequence[bool | None], example_tags: Sequence[str] = ()
) -> dict[str, float]:
    """Per-example scores keyed ``overall``, each example tag and each rubric-item tag (see module doc).

    Keys whose score is ``None`` (no positive graded item) are absent.
    """
    out: dict[str, float] = {}
    overall = example_score(items, met)
    if overall is None:
        return out
    out["overall"] = overall
    for tag in example_tags:
        out[tag] = overall
    by_tag: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        for tag in dict.fromkeys(it.tags):  # a tag listed twice on one item counts once
            by_tag[tag].append(i)
    for tag, idx in by_tag.items():
        s = example_score([items[i] for i in idx], [met[i] for i in idx])
        if s is not None:
            out[tag] = s
    return out


@dataclass(frozen=True)
class ClippedMean:
    """Mean of per-example values clipped to [0, 1], bootstrap SE of the clipped mean, n examples."""

    mean: float
    bootstrap_se: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """``{mean, bootstrap_se, n}``."""
        return {"mean": self.mean, "bootstrap_se": self.bootstrap_se, "n": self.n}


def clipped_mean(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> ClippedMean:
    """``clip(mean(values), 0, 1)`` and the bootstrap SE of that clipped mean (``rvpo.stats.bootstrap_se``)."""
    vals = [float(v) for v in values]
    if not vals:
        return ClippedMean(float("nan"), float("nan"), 0)
    mean = min(1.0, max(0.0, math.fsum(vals) / len(vals)))
    return ClippedMean(mean, bootstrap_se(vals, n_boot=n_boot, seed=seed, clip=(0.0, 1.0)), len(vals))


@dataclass
class RubricScores:
    """Aggregate HealthBench-style scores of a set of graded examples."""

    overall: ClippedMean
    by_axis: dict[str, ClippedMean]
    by_theme: dict[str, ClippedMean]
    by_tag: dict[str, ClippedMean]
    n_examples: int
    n_unscored: int  # examples with no positive graded item (all abstained, or none positive)
    n_items: int
    n_abstained: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (what ``results.json`` holds)."""
        return {
            "overall": self.overall.as_dict(),
            "by_axis": {k: v.as_dict() for k, v in self.by_axis.items()},
            "by_theme": {k: v.as_dict() for k, v in self.by_theme.items()},
            "by_tag": {k: v.as_dict() for k, v in self.by_tag.items()},
            "n_examples": self.n_examples,
            "n_unscored": self.n_unscored,
            "n_items": self.n_items,
            "n_abstained": self.n_abstained,
            **self.extra,
        }


def aggregate_scores(
    graded: Sequence[tuple[Sequence[RubricItem], Sequence[bool | None], Sequence[str]]],
    n_boot: int = 1000,
    seed: int = 0,
) -> RubricScores:
    """Aggregate ``[(items, met, example_tags), ...]`` into overall / per-axis / per-theme / per-tag scores.

    ``by_axis`` keys drop the ``axis:`` prefix and ``by_theme`` keys the ``theme:`` prefix;
    ``by_tag`` holds every key (prefixes kept), ``overall`` included.
    """
    per_key: dict[str, list[float]] = defaultdict(list)
    n_unscored = n_items = n_abstained = 0
    for items, met, ex_tags in graded:
        n_items += len(items)
        n_abstained += sum(m is None for m in met)
        scores = example_tag_scores(items, met, ex_tags)
        if "overall" not in scores:
            n_unscored += 1
        for k, v in scores.items():
            per_key[k].append(v)
    by_tag = {k: clipped_mean(v, n_boot, seed) for k, v in sorted(per_key.items())}
    overall = by_tag.get("overall", clipped_mean([], n_boot, seed))
    return RubricScores(
        overall=overall,
        by_axis=_with_prefix(by_tag, "axis:"),
        by_theme=_with_prefix(by_tag, "theme:"),
        by_tag=by_tag,
        n_examples=len(graded),
        n_unscored=n_unscored,
        n_items=n_items,
        n_abstained=n_abstained,
    )


def _with_prefix(d: Mapping[str, ClippedMean], prefix: str) -> dict[str, ClippedMean]:
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}
