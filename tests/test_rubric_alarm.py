"""The dead-judge alarm: spread per (group, item), console warning, metrics and the summary sentence."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from rvpo.tasks.base import StepData
from rvpo.tasks.rubric.alarm import SpreadAlarm, group_spread


def test_group_spread_counts_pairs_with_two_judged_values():
    vals = [[1.0, None], [1.0, 0.3], [0.0, 0.5], [1.0, 0.52]]  # G=2: groups (0,1) and (2,3)
    hard = group_spread(vals, 2)
    assert (hard.pairs, hard.with_spread) == (3, 2)  # (g0, ch1) has one judged value: not a pair
    soft = group_spread(vals, 2, tol=0.05)
    assert soft.with_spread == 1  # 0.5 vs 0.52 is within tol
    with pytest.raises(ValueError, match="groups of 3"):
        group_spread(vals, 3)


def test_alarm_fires_on_a_dead_judge_and_names_soft_when_probabilities_vary(caplog):
    g = 4
    hard = [[0.0, 0.0]] * 8  # same verdict everywhere
    probs = [[0.1 + 0.05 * i, 0.2] for i in range(8)]  # channel 0 varies, channel 1 does not
    alarm = SpreadAlarm(steps=1, verdict="hard")
    with caplog.at_level(logging.WARNING, logger="rvpo.tasks.rubric"):
        m = alarm.observe(hard, g, hard=hard, probs=probs, step=0)
        alarm.observe(hard, g, hard=hard, probs=probs, step=1)  # past `steps`: no second warning
    assert m["rubric/judge_dead"] == 1.0 and m["rubric/judge_spread_frac"] == 0.0
    assert m["rubric/judge_spread_frac_soft"] == 0.5 and m["rubric/judge_soft_std"] > 0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "cannot tell these completions apart" in warnings[0]
    assert "0 of 4 (group, item) pairs" in warnings[0] and "2 of 4" in warnings[0]
    assert alarm.finding == warnings[0]


def test_alarm_is_quiet_when_verdicts_vary():
    vals = [[1.0], [0.0], [1.0], [0.0]]
    alarm = SpreadAlarm(verdict="hard")
    m = alarm.observe(vals, 2, hard=vals, probs=[[None]] * 4)
    assert m["rubric/judge_dead"] == 0.0 and alarm.finding is None and math.isnan(m["rubric/judge_spread_frac_soft"])


def test_rubric_task_step_metrics_reports_spread_and_summary_sentence(tmp_path):
    from rvpo.judge import Verdict
    from rvpo.tasks.rubric.task import RubricTask

    task = RubricTask(judge_backend="rule", verdict="soft")
    task._m = 2

    class Flat:  # a dead judge: the same probability for everything
        def judge_many(self, reqs):
            return [Verdict(False, "", p_met=0.2) for _ in reqs]

    task.judge = Flat()
    reward = task.reward
    rubric = '[{"criterion": "a", "points": 1}, {"criterion": "b", "points": 1}]'
    prompts = [[{"role": "user", "content": "q"}]] * 4
    vals = reward(prompts, ["x", "y", "z", "w"], rubric=[rubric] * 4)
    task.judge = None
    data = StepData(rewards=torch.tensor(vals, dtype=torch.float), channel_names=("item_00", "item_01"),
                    completions=("x", "y", "z", "w"), group_size=2, step=0)
    m = task.step_metrics(data=data)
    assert m["rubric/judge_dead"] == 1.0 and m["rubric/judge_spread_frac_soft"] == 0.0
    assert m["rubric/soft_frac"] == 1.0
    assert "the judge cannot tell these completions apart" in task.describe_eval()
