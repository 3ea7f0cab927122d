"""RubricReward: one channel per rubric item, one concurrent judge batch, None for padding/abstention."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rvpo import compute_advantages
from rvpo.judge import JudgeRequest, Verdict
from rvpo.rewards import MultiChannelReward
from rvpo.tasks.rubric import RubricItem, load_rubric_file, rubric_to_json
from rvpo.tasks.rubric.reward import RubricReward, prompt_messages, to_trl_dataset, to_trl_rows

HARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "healthbench" / "healthbench_hard_sample50.jsonl"


class KeywordJudge:
    """Fake judge: met iff the criterion's first word occurs in the completion; 'ABSTAIN...' abstains."""

    def __init__(self):
        self.batches: list[list[JudgeRequest]] = []

    def judge_many(self, requests):
        self.batches.append(list(requests))
        out = []
        for r in requests:
            assert r.conversation[-1]["role"] == "assistant"
            word = r.criterion.split()[0]
            out.append(None if word == "ABSTAIN" else
                       Verdict(criteria_met=word in r.conversation[-1]["content"], explanation="kw"))
        return out


RUBRIC_A = [RubricItem("ecg recommended", 5, ("axis:accuracy",)), RubricItem("discharge advised", -2),
            RubricItem("ABSTAIN always", 1)]
RUBRIC_B = [RubricItem("fluids suggested", 3)]


def test_channels_values_padding_and_one_judge_batch():
    judge = KeywordJudge()
    reward = RubricReward(judge, max_channels=4)
    assert isinstance(reward, MultiChannelReward)
    assert reward.channel_names == ["rubric_0", "rubric_1", "rubric_2", "rubric_3"]
    prompts = [[{"role": "user", "content": "chest pain"}]] * 2 + ["thirsty"]
    completions = [[{"role": "assistant", "content": "get an ecg"}],
                   [{"role": "assistant", "content": "ecg, then discharge"}],
                   "drink fluids"]
    rubric = [rubric_to_json(RUBRIC_A), rubric_to_json(RUBRIC_A), [it.to_dict() for it in RUBRIC_B]]
    out = reward(prompts, completions, rubric=rubric)
    assert out == [
        [1.0, 1.0, None, None],   # ecg met; pitfall not met -> desirable (1); abstained; padding
        [1.0, 0.0, None, None],   # pitfall met -> 0
        [1.0, None, None, None],  # one item, three pads
    ]
    assert len(judge.batches) == 1 and len(judge.batches[0]) == 3 + 3 + 1  # all pairs in one call
    req = judge.batches[0][1]
    assert req.criterion == "discharge advised" and req.points == -2
    assert req.conversation == [{"role": "user", "content": "chest pain"}, {"role": "assistant", "content": "get an ecg"}]
    assert reward.stats.as_dict()["abstained"] == 2 and reward.stats.abstained_by_channel == [0, 0, 2, 0]
    scaled = RubricReward(KeywordJudge(), max_channels=3, scale="points")(prompts[:1], completions[:1], rubric=rubric[:1])
    assert scaled == [[5.0, 2.0, None]]


def test_errors_name_the_problem():
    reward = RubricReward(KeywordJudge(), max_channels=2)
    with pytest.raises(KeyError, match="'rubric'"):
        reward(["p"], ["c"], other=[1])
    with pytest.raises(ValueError, match="row 0: rubric has 3 items but max_channels=2"):
        reward(["p"], ["c"], rubric=[rubric_to_json(RUBRIC_A)])
    with pytest.raises(ValueError, match="row 0: rubric column"):
        reward(["p"], ["c"], rubric=[[{"criterion": "x"}]])
    with pytest.raises(ValueError, match="max_channels"):
        RubricReward(KeywordJudge(), max_channels=0)
    with pytest.raises(TypeError, match="prompt must be"):
        prompt_messages(3)


def test_nan_abstentions_flow_into_advantages():
    # B = 2 prompts x G = 3 completions; padding and abstention both become NaN
    reward = RubricReward(KeywordJudge(), max_channels=3)
    prompts = ["p1"] * 3 + ["p2"] * 3
    completions = ["ecg", "nothing", "ecg discharge", "fluids", "", "fluids"]
    rubric = [rubric_to_json(RUBRIC_A)] * 3 + [rubric_to_json(RUBRIC_B)] * 3
    values = reward(prompts, completions, rubric=rubric)
    r = torch.tensor([[math.nan if v is None else v for v in row] for row in values])  # (N, M)
    assert int(torch.isnan(r).sum()) == 3 + 3 * 2  # channel 2 abstains for p1; p2 pads 2 channels
    out = compute_advantages(r, group_size=3, estimator="rvpo", k=1.0)
    assert out.advantages.shape == (6,) and torch.isfinite(out.advantages).all()
    assert out.advantages[0] > out.advantages[1]  # 'ecg' beats 'nothing' on the only varying channel


@pytest.mark.needs_shared("healthbench")
def test_trl_rows_and_dataset_from_a_real_file():
    ds = load_rubric_file(HARD, limit=4)
    rows = to_trl_rows(ds)
    assert [r["example_id"] for r in rows] == [ex.id for ex in ds]
    assert rows[0]["prompt"] == ds[0].conversation
    assert [it["points"] for it in json.loads(rows[0]["rubric"])] == [it.points for it in ds[0].items]
    hf = to_trl_dataset(ds)
    assert hf.column_names == ["prompt", "rubric", "example_id"] and len(hf) == 4
    # the TRL column goes straight back into the reward
    reward = RubricReward(KeywordJudge(), max_channels=ds.max_items)
    out = reward([r["prompt"] for r in rows], ["an answer"] * 4, rubric=hf["rubric"])
    assert [sum(v is not None for v in row) for row in out] == [len(ex.items) for ex in ds]


def test_over_http_with_the_rule_judge_and_an_abstention(tmp_path):
    from judge_server_fixture import judge_config, judge_server
    from rvpo.judge import JudgeClient

    rubric = rubric_to_json([RubricItem('Mentions "fluids".', 5), RubricItem('Recommends "antibiotics".', -2),
                             RubricItem('Says "call a doctor".', 3)])
    prompts = [[{"role": "user", "content": "My child has a fever."}]] * 3
    completions = ["Give fluids.", "Give fluids and antibiotics; call a doctor.", "Rest."]
    # the first request the server sees fails (HTTP 500) and the client may not retry: one abstention
    with judge_server("rule", fault_script=["500"]) as srv:
        client = JudgeClient(judge_config(srv.url, tmp_path, concurrency=1, max_retries=0))
        reward = RubricReward(client, max_channels=4)
        values = reward(prompts, completions, rubric=[rubric] * 3)
        client.close()
    expected = [[1.0, 1.0, 0.0, None], [1.0, 0.0, 1.0, None], [0.0, 1.0, 0.0, None]]
    n_none = 0
    for row, exp in zip(values, expected, strict=True):
        for v, e in zip(row, exp, strict=True):
            n_none += v is None
            assert v is None or v == e
    assert n_none == 3 + 1 and reward.stats.abstained == 1 and client.stats.abstentions == 1
    r = torch.tensor([[math.nan if v is None else v for v in row] for row in values])  # (N=3, M=4)
    out = compute_advantages(r, group_size=3, estimator="rvpo", k=2.0)
    assert torch.isfinite(out.advantages).all()


def test_expand_multichannel_gives_m_trl_functions_sharing_one_judge_batch():
    from rvpo.integrations.trl import expand_multichannel

    judge = KeywordJudge()
    fns = expand_multichannel(RubricReward(judge, max_channels=3))
    assert [f.__name__ for f in fns] == ["rubric_0", "rubric_1", "rubric_2"]
    prompts, completions = ["p", "q"], ["ecg only", "fluids"]
    rubric = [rubric_to_json(RUBRIC_A), rubric_to_json(RUBRIC_B)]
    cols = [f(prompts=prompts, completions=completions, rubric=rubric) for f in fns]
    assert cols == [[1.0, 1.0], [1.0, None], [None, None]]  # row p: ecg met, no discharge; row q: fluids met
    assert len(judge.batches) == 1  # M functions, one judge call


def test_verl_rubric_reward_uses_the_judge_client_cache_and_abstention(tmp_path, monkeypatch):
    """``compute_score_rubric`` with its default judge: the env-configured JudgeClient, its sqlite cache,
    and a failed verdict as NaN (never 0)."""
    import math

    import rvpo.tasks.rubric.verl_score as vr
    from judge_server_fixture import judge_server

    rubric = [{"criterion": 'Mentions "fluids".', "points": 5}, {"criterion": 'Mentions "antibiotics".', "points": 3}]
    extra = {"rubric": rubric, "prompt": [{"role": "user", "content": "My child has a fever."}]}
    monkeypatch.setattr(vr, "_JUDGES", {})
    monkeypatch.setenv("RVPO_JUDGE_CACHE", str(tmp_path / "judge.sqlite"))
    monkeypatch.setenv("RVPO_JUDGE_MODEL", "rvpo-rule")
    with judge_server("rule", fault_script=["ok", "malformed", "malformed", "malformed"]) as srv:
        monkeypatch.setenv("RVPO_JUDGE_BASE_URL", srv.url)
        kw = {"max_channels": 3, "judge_config": {"concurrency": 1, "backoff_s": 0.01}}
        first = vr.compute_score_rubric("hb", "Give fluids.", None, extra, **kw)
        (client,) = vr._JUDGES.values()
        assert first["rubric_0"] == 1.0 and math.isnan(first["rubric_1"]) and math.isnan(first["rubric_2"])
        assert client.stats.failures == {"malformed_verdict": 1}  # abstained after the re-asks, not scored 0
        second = vr.compute_score_rubric("hb", "Give fluids.", None, extra, **kw)
        assert second["rubric_1"] == 0.0  # asked again (abstentions are not cached): a verdict now, not met
        assert client.stats.cache_hits == 1 and srv.stats()["requests"] == 5  # item 0 came from the cache
    with pytest.raises(ValueError, match="api_key"):
        vr.compute_score_rubric("hb", "a", None, extra, max_channels=3, judge_config={"api_key": "sk-x"})


def test_tag_metrics_by_rubric_tag_with_binding_weights():
    from rvpo.tasks.rubric.reward import rubric_tag_metrics

    judge = KeywordJudge()
    reward = RubricReward(judge, max_channels=4)
    prompts = ["chest pain", "chest pain", "thirsty"]
    completions = ["get an ecg", "ecg, then discharge", "no idea"]
    rubric = [rubric_to_json(RUBRIC_A), rubric_to_json(RUBRIC_A), rubric_to_json(RUBRIC_B)]
    values = reward(prompts, completions, rubric=rubric)  # [[1, 1, -, pad], [1, 0, -, pad], [0, pad...]]
    binding = torch.tensor([[0.2, 0.8, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    m = reward.tag_metrics(binding=binding)
    assert m == rubric_tag_metrics(reward.last_rubrics, values, binding=binding)
    assert m["rubric/satisfied"] == pytest.approx(3 / 5) and m["rubric/abstained"] == pytest.approx(2 / 7)
    assert m["rubric/items/axis:accuracy"] == 2 and m["rubric/satisfied/axis:accuracy"] == 1.0
    assert m["rubric/satisfied/sign:pitfall"] == 0.5 and m["rubric/items/sign:positive"] == 5
    assert m["rubric/satisfied/sign:positive"] == pytest.approx(2 / 3)  # ecg twice met, fluids missed
    assert m["rubric/abstained/sign:positive"] == pytest.approx(2 / 5)
    assert m["rubric/binding/sign:pitfall"] == pytest.approx((0.8 + 0.9) / 3)
    assert m["rubric/binding/sign:pitfall"] + m["rubric/binding/sign:positive"] == pytest.approx(1.0)
    assert m["rubric/value/sign:positive"] == pytest.approx(2 / 3)
    no_binding = reward.tag_metrics()
    assert not any("/binding/" in k for k in no_binding) and math.isnan(
        rubric_tag_metrics([[RubricItem("ABSTAIN x", 1)]], [[None]])["rubric/satisfied"])
    with pytest.raises(ValueError, match="rows"):
        rubric_tag_metrics([[]], [[None], [None]])
