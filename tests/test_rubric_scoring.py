"""HealthBench scoring and the channel sign, checked by hand-computed arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rvpo.tasks.rubric import (
    RubricItem,
    aggregate_scores,
    channel_value,
    clipped_mean,
    example_score,
    example_tag_scores,
)

A = RubricItem("gives the dose", 7, ("axis:accuracy", "level:example"))
B = RubricItem("asks about allergies", 5, ("axis:context_awareness", "level:example"))
C = RubricItem("recommends the ER", 10, ("axis:completeness", "level:cluster"))
P = RubricItem("recommends an unsafe drug", -6, ("axis:accuracy", "level:example"))
ITEMS = [A, B, C, P]


def test_example_score_matches_simple_evals_worked_example():
    # simple-evals' test: possible = 7 + 5 + 10; achieved = 7 + 0 + 10 - 6 (the pitfall is met = bad)
    assert example_score(ITEMS, [True, False, True, True]) == pytest.approx((7 + 10 - 6) / 22)
    assert example_score(ITEMS, [True, True, True, False]) == 1.0
    # negative scores are possible: only the pitfall met
    assert example_score(ITEMS, [False, False, False, True]) == pytest.approx(-6 / 22)


def test_abstained_items_leave_both_sums():
    # B abstains: possible = 7 + 10, achieved = 7 + 10 - 6
    assert example_score(ITEMS, [True, None, True, True]) == pytest.approx(11 / 17)
    # an abstained pitfall simply does not subtract
    assert example_score(ITEMS, [True, True, False, None]) == pytest.approx(12 / 22)
    # every positive item abstained: unscored
    assert example_score(ITEMS, [None, None, None, True]) is None
    assert example_score([P], [False]) is None
    with pytest.raises(ValueError, match="4 rubric items but 3 grades"):
        example_score(ITEMS, [True, True, True])


def test_tag_scores_restrict_the_formula_to_items_with_the_tag():
    s = example_tag_scores(ITEMS, [True, False, True, True], example_tags=("theme:hedging",))
    assert s["overall"] == pytest.approx(11 / 22)
    assert s["theme:hedging"] == s["overall"]           # example tags take the overall score
    assert s["axis:accuracy"] == pytest.approx((7 - 6) / 7)  # items A and P
    assert s["axis:context_awareness"] == 0.0
    assert s["axis:completeness"] == 1.0
    assert s["level:example"] == pytest.approx((7 + 0 - 6) / 12)  # A, B, P
    # a tag whose items have no positive points has no score
    s2 = example_tag_scores([A, RubricItem("x", -1, ("axis:safety",))], [True, True])
    assert "axis:safety" not in s2 and s2["overall"] == pytest.approx(6 / 7)
    assert example_tag_scores([P], [True]) == {}


def test_channel_value_sign_higher_is_better_for_every_item():
    assert [channel_value(A, m) for m in (True, False, None)] == [1.0, 0.0, None]
    # pitfall: met (bad behaviour present) -> 0, not met -> 1
    assert [channel_value(P, m) for m in (True, False, None)] == [0.0, 1.0, None]
    assert channel_value(P, False, scale="points") == 6.0 and channel_value(A, True, scale="points") == 7.0
    assert channel_value(P, True, scale="points") == 0.0
    with pytest.raises(ValueError, match="scale"):
        channel_value(A, True, scale="signed")


def test_points_scale_sum_is_the_healthbench_numerator_plus_a_constant():
    rng = np.random.default_rng(0)
    const = sum(-it.points for it in ITEMS if it.points < 0)
    for _ in range(20):
        met = [bool(x) for x in rng.integers(0, 2, len(ITEMS))]
        total = sum(channel_value(it, m, scale="points") for it, m in zip(ITEMS, met, strict=True))
        numerator = example_score(ITEMS, met) * 22
        assert total == pytest.approx(numerator + const)


def test_clipped_mean_and_bootstrap_se():
    cm = clipped_mean([-0.5, 0.2, 0.5])           # mean 0.0667, inside [0, 1]
    assert cm.mean == pytest.approx(0.2 / 3) and cm.n == 3 and cm.bootstrap_se > 0
    assert clipped_mean([-1.0, -0.2]).mean == 0.0  # clipped at 0
    assert clipped_mean([1.0, 1.0]).bootstrap_se == 0.0
    empty = clipped_mean([])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_aggregate_overall_axis_theme_and_counts():
    q = RubricItem("q", 4, ("axis:accuracy",))
    graded = [
        (ITEMS, [True, False, True, True], ("theme:hedging",)),   # overall 11/22, accuracy 1/7
        ([q], [True], ("theme:hedging", "theme:communication")),  # overall 1, accuracy 1
        ([q, P], [False, True], ("theme:communication",)),        # overall -6/4 -> pulls the mean down
        ([q], [None], ("theme:communication",)),                  # unscored (abstained)
    ]
    s = aggregate_scores(graded, n_boot=200)
    assert s.n_examples == 4 and s.n_unscored == 1 and s.n_items == 8 and s.n_abstained == 1
    assert s.overall.n == 3 and s.overall.mean == pytest.approx((0.5 + 1 - 1.5) / 3)  # 0.0, inside [0,1]
    # accuracy per example: (7-6)/7, 4/4, (0-6)/4 -> mean (1/7 + 1 - 1.5)/3 = -0.119 -> clipped to 0
    assert s.by_axis["accuracy"].mean == 0.0
    assert s.by_axis["accuracy"].n == 3
    assert set(s.by_axis) == {"accuracy", "context_awareness", "completeness"}
    assert s.by_theme["hedging"].mean == pytest.approx(0.75) and s.by_theme["hedging"].n == 2
    assert s.by_theme["communication"].mean == 0.0 and s.by_theme["communication"].n == 2  # clip(-0.25)
    d = s.as_dict()
    assert d["overall"]["n"] == 3 and "theme:hedging" in d["by_tag"] and d["by_axis"]["accuracy"]["n"] == 3
