"""verl reward functions: stable component keys, agreement with verl's own rlla port on the real
RLLA-4k test split, rubric keys with NaN, and the components flowing into the estimator."""

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils.reward_score import rlla

import rvpo.integrations.verl as rv
from rvpo import compute_advantages
from rvpo.core import AdvantageSpec
from rvpo.integrations.verl_rewards import TOOLCALL_KEYS, compute_score, compute_score_rubric, rubric_keys
from rvpo.judge import Verdict
from vhelpers import algo_config, make_dataproto

DATA = Path(os.environ.get("RVPO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RLLA = DATA / "toolrl" / "rlla_4k_test.parquet"


@pytest.fixture(scope="module")
def rlla_rows():
    if not RLLA.is_file():  # a plain clone has no ../shared (CI's checkout does)
        pytest.skip(f"needs the public data file {RLLA} (absent: a plain clone has no ../shared)")
    df = pd.read_parquet(RLLA)
    assert len(df) == 80
    return df


def _variants(gt: str) -> list[str]:
    """Four responses per prompt: the gold, extra blank lines, no think block, a truncated ending."""
    return [gt, gt.replace("</think>", "</think>\n\n"), gt.split("</think>")[-1].strip(), gt[:-5]]


def test_toolcall_keys_are_stable_and_abstain_as_nan():
    gold_call = '<think>t</think>\n<tool_call>\n{"name": "f", "parameters": {"x": 1}}\n</tool_call>'
    gold_resp = "<think>t</think>\n<response>hello</response>"
    for sol in (gold_call, "no tags at all", ""):
        out = compute_score("rlla", sol, gold_call)
        assert set(out) == {"score", *TOOLCALL_KEYS}
    assert compute_score("rlla", gold_call, gold_call) == {"score": 4.0, "format_reward": 1.0, "accuracy_reward": 3.0}
    assert compute_score("rlla", "junk", gold_call)["accuracy_reward"] == -3.0
    resp = compute_score("rlla", gold_resp, gold_resp, no_call="abstain")
    assert math.isnan(resp["accuracy_reward"]) and resp["score"] == resp["format_reward"] == 1.0
    assert compute_score("rlla", gold_resp, gold_resp)["accuracy_reward"] == 0.0  # ToolRL's "zero"
    with pytest.raises(TypeError, match="ground_truth"):
        compute_score("rlla", gold_call, None)


def test_agrees_with_verls_rlla_port_on_rlla_4k(rlla_rows):
    """With strict_think=False (upstream's think check) both components equal verl's
    verl/utils/reward_score/rlla.py on 80 real prompts x 4 responses."""
    n = 0
    for _, row in rlla_rows.iterrows():
        gt = row["reward_model"]["ground_truth"]
        for sol in _variants(gt):
            ours = compute_score(row["data_source"], sol, gt, {}, strict_think=False)
            with contextlib.redirect_stdout(io.StringIO()):  # rlla prints at random
                theirs = rlla.compute_score(row["data_source"], sol, gt, {"experiment_name": "qwen"})
            assert ours["format_reward"] == pytest.approx(theirs["format_reward"]), sol
            assert ours["accuracy_reward"] == pytest.approx(theirs["accuracy_reward"]), sol
            n += 1
    assert n == 320


def test_rlla_components_through_the_estimator(rlla_rows):
    """compute_score dicts -> verl's non_tensor_batch layout (np arrays per key, as the agent loop
    builds them) -> rvpo estimator == the core on the same (N, 2) rewards."""
    rows, infos = [], []
    for b, (_, row) in enumerate(rlla_rows.head(6).iterrows()):
        gt = row["reward_model"]["ground_truth"]
        for s, sol in enumerate(_variants(gt)):
            info = compute_score(row["data_source"], sol, gt, {})
            infos.append(info)
            rows.append((f"p{b}", s, [info[k] for k in TOOLCALL_KEYS], 5))
    data = make_dataproto(rows)
    for key in TOOLCALL_KEYS:
        assert key in data.non_tensor_batch
        data.non_tensor_batch[key] = np.array([i[key] for i in infos])
    cfg = algo_config(rvpo_reward_keys=list(TOOLCALL_KEYS), rvpo_whiten="sequence", rvpo_k=2.0)
    with rv.batch_context(non_tensor_batch=data.non_tensor_batch):
        adv = compute_advantage(data, adv_estimator="rvpo", config=cfg).batch["advantages"]
    want = compute_advantages(torch.tensor([r[2] for r in rows], dtype=torch.float64), 4, "rvpo", k=2.0,
                              eps=AdvantageSpec().eps).advantages  # the adapter's eps is the spec's
    torch.testing.assert_close(adv[:, 0].double(), want, rtol=1e-5, atol=1e-6)
    assert adv.abs().sum() > 0


class FakeJudge:
    """``judge_many``: criterion text decides the verdict; 'UNSURE' abstains (None)."""

    def __init__(self):
        self.calls = 0

    def judge_many(self, requests):
        self.calls += 1
        out = []
        for r in requests:
            if "UNSURE" in r.criterion:
                out.append(None)
            else:
                out.append(Verdict(criteria_met="YES" in r.criterion, explanation=""))
        return out


def test_rubric_keys_per_item_with_nan_padding_and_abstention():
    rubric = [
        {"criterion": "YES mentions dosage", "points": 5},
        {"criterion": "gives a diagnosis", "points": -3},  # pitfall not met -> desirable -> 1
        {"criterion": "UNSURE cites a guideline", "points": 2},
    ]
    judge = FakeJudge()
    out = compute_score_rubric("healthbench", "answer", None, {"rubric": rubric, "prompt": "question?"},
                               max_channels=5, judge=judge)
    assert list(out) == ["score", *rubric_keys(5)]
    assert out["rubric_0"] == 1.0 and out["rubric_1"] == 1.0
    assert all(math.isnan(out[f"rubric_{j}"]) for j in (2, 3, 4))  # abstained, then padding
    assert out["score"] == 1.0 and judge.calls == 1
    # the rubric may come as the ground truth (JSON string), max_channels via extra_info
    import json

    out2 = compute_score_rubric("x", "a", json.dumps(rubric[:1]), {"prompt": [{"role": "user", "content": "q"}],
                                                                    "max_channels": 2}, judge=judge)
    assert out2["rubric_0"] == 1.0 and math.isnan(out2["rubric_1"])


def test_rubric_errors_are_clear():
    judge = FakeJudge()
    with pytest.raises(ValueError, match="max_channels"):
        compute_score_rubric("x", "a", "[]", {"prompt": "q"}, judge=judge)
    with pytest.raises(ValueError, match="prompt"):
        compute_score_rubric("x", "a", '[{"criterion": "c", "points": 1}]', {}, max_channels=2, judge=judge)
    with pytest.raises(ValueError, match="max_channels"):  # rubric larger than M
        compute_score_rubric("x", "a", '[{"criterion": "c", "points": 1}, {"criterion": "d", "points": 1}]',
                             {"prompt": "q"}, max_channels=1, judge=judge)
