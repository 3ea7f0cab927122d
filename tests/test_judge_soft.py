"""Soft verdicts: p_met from logprobs over HTTP, the cache keeps it, thresholds, verdict modes, the check AUC."""

from __future__ import annotations

import math
import sqlite3

import pytest

from judge_server_fixture import judge_config, judge_server
from rvpo.judge import JudgeClient, JudgeRequest, Verdict, VerdictCache
from rvpo.judge.check import CHECK_ITEMS, auc, check_requests, run_check
from rvpo.judge.parse import p_met_from_logprobs
from rvpo.tasks.rubric.data import RubricItem, rubric_to_json
from rvpo.tasks.rubric.reward import RubricReward, parse_verdict_mode

CRIT = 'Mentions "fluids", "temperature" and "doctor".'


def conv(answer: str) -> list[dict]:
    return [{"role": "user", "content": "My child has a fever."}, {"role": "assistant", "content": answer}]


ANSWERS = ["Give fluids, check the temperature, see a doctor.",  # 3/3 -> p 0.9
           "Give fluids and check the temperature.",              # 2/3 -> p 0.633
           "Give fluids.",                                        # 1/3 -> p 0.367
           "Rest."]                                                # 0/3 -> p 0.1


def test_two_answers_to_one_criterion_get_different_soft_scores_and_the_cache_round_trips_them(tmp_path):
    reqs = [JudgeRequest(conv(a), CRIT, 5) for a in ANSWERS]
    with judge_server("soft-rule") as srv:
        client = JudgeClient(judge_config(srv.url, tmp_path, logprobs=True))
        first = client.judge_many(reqs)
        client.close()
        assert [v.source for v in first] == ["soft"] * 4 and client.stats.soft == 4
        assert [round(v.p_met, 3) for v in first] == [0.9, 0.633, 0.367, 0.1]
        assert [v.criteria_met for v in first] == [True, True, False, False]  # the judge's own argmax
        again = JudgeClient(judge_config(srv.url, tmp_path, logprobs=True))
        second = again.judge_many(reqs)
        assert again.stats.calls == 0 and again.stats.cache_hits == 4
        assert [v.p_met for v in second] == pytest.approx([v.p_met for v in first], abs=1e-12)
        # without logprobs: other cache keys (a hard config never reads soft rows), hard verdicts
        hard = JudgeClient(judge_config(srv.url, tmp_path)).judge_many(reqs)
        assert [v.source for v in hard] == ["hard"] * 4 and [v.score for v in hard] == [1.0, 1.0, 0.0, 0.0]


def test_a_server_without_logprobs_gives_hard_verdicts_and_says_so(tmp_path):
    with judge_server("rule") as srv:
        client = JudgeClient(judge_config(srv.url, None, logprobs=True))
        v = client.judge_many([JudgeRequest(conv("Give fluids."), 'Mentions "fluids".', 5)])[0]
    assert v.p_met is None and v.source == "hard" and v.score == 1.0
    assert client.stats.hard == 1 and client.stats_delta()["soft_rate"] == 0.0


def test_per_judge_threshold_rederives_the_yes_no_and_applies_to_cached_rows(tmp_path):
    reqs = [JudgeRequest(conv(a), CRIT, 5) for a in ANSWERS]
    with judge_server("soft-rule") as srv:
        JudgeClient(judge_config(srv.url, tmp_path, logprobs=True)).judge_many(reqs)  # fill the cache
        strict = JudgeClient(judge_config(srv.url, tmp_path, logprobs=True, threshold=0.8))
        assert [v.criteria_met for v in strict.judge_many(reqs)] == [True, False, False, False]
        assert strict.stats.calls == 0  # the threshold is applied after the cache, not part of its key


def test_old_schema_cache_gains_the_column_and_reads_as_hard(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE verdicts (key TEXT PRIMARY KEY, model TEXT NOT NULL, criteria_met INTEGER NOT NULL, "
                "explanation TEXT NOT NULL, created REAL NOT NULL)")
    con.execute("INSERT INTO verdicts VALUES ('k1', 'm', 1, 'old', 0)")
    con.commit()
    con.close()
    cache = VerdictCache(path)
    old = cache.get("k1")
    assert old.criteria_met and old.p_met is None and old.source == "hard"
    cache.put("k2", "m", Verdict(False, "new", p_met=0.25))
    cache.close()
    again = VerdictCache(path)  # reopening a migrated file is fine too
    assert again.get("k2").p_met == 0.25 and again.get_many(["k1", "k2"])["k1"].p_met is None


def test_p_met_from_logprobs_finds_the_value_token_not_an_escaped_quote():
    toks = [{"token": '{"explanation": "says \\"criteria_met\\": false", "criteria_met":', "logprob": 0},
            {"token": " true", "logprob": math.log(0.7),
             "top_logprobs": [{"token": " true", "logprob": math.log(0.7)}, {"token": " false", "logprob": math.log(0.1)},
                              {"token": " maybe", "logprob": math.log(0.2)}]},
            {"token": "}", "logprob": 0}]
    assert p_met_from_logprobs(toks) == pytest.approx(0.875)
    assert p_met_from_logprobs(None) is None and p_met_from_logprobs([{"token": "{}"}]) is None
    assert p_met_from_logprobs([{"token": '{"criteria_met": '}, {"token": "true", "logprob": 0.0}]) == 1.0


@pytest.mark.parametrize("spec,ok", [("soft", True), ("hard", True), ("threshold:0.3", True),
                                     ("threshold:1.5", False), ("threshold:x", False), ("fuzzy", False)])
def test_verdict_mode_spec(spec, ok):
    if ok:
        parse_verdict_mode(spec)
    else:
        with pytest.raises(ValueError, match="verdict: expected soft | hard"):
            parse_verdict_mode(spec)


def test_reward_channels_soft_hard_and_threshold_differ_where_they_should(tmp_path):
    items = [RubricItem(CRIT, 5), RubricItem('Mentions "antibiotics".', -4)]  # a pitfall: 1 - p
    rubric = rubric_to_json(items)
    prompts = [[{"role": "user", "content": "My child has a fever."}]] * 4
    with judge_server("soft-rule") as srv:
        client = JudgeClient(judge_config(srv.url, tmp_path, logprobs=True))
        vals = {mode: RubricReward(client, max_channels=3, verdict=mode)(prompts, ANSWERS, rubric=[rubric] * 4)
                for mode in ("soft", "hard", "threshold:0.3", "threshold:0.7")}
    soft = [[round(x, 3) if x is not None else None for x in row] for row in vals["soft"]]
    assert soft == [[0.9, 0.9, None], [0.633, 0.9, None], [0.367, 0.9, None], [0.1, 0.9, None]]
    assert [r[0] for r in vals["hard"]] == [1.0, 1.0, 0.0, 0.0]
    assert [r[0] for r in vals["threshold:0.3"]] == [1.0, 1.0, 1.0, 0.0]  # 0.367 >= 0.3: differs from hard
    assert [r[0] for r in vals["threshold:0.7"]] == [1.0, 0.0, 0.0, 0.0]
    assert [r[1] for r in vals["hard"]] == [1.0] * 4  # pitfall absent (p 0.1): desirable


def test_check_items_and_auc_separate_with_a_soft_rule_judge():
    assert len(CHECK_ITEMS) == 12
    reqs, labels = check_requests()
    assert len(reqs) == 24 and labels[:2] == [True, False]
    assert auc([0.5] * 4, [True, False, True, False]) == 0.5 and math.isnan(auc([None, 1.0], [True, False]))

    class Perfect:
        def judge_many(self, rs):
            return [Verdict(y, "", p_met=0.6 if y else 0.4) for y in labels]

    res = run_check(Perfect())
    assert res["auc_soft"] == 1.0 and res["auc_hard"] == 1.0 and res["soft"] == 24


@pytest.mark.parametrize("backend, extra, rc_want, says", [
    ("soft-rule", [], 0, "AUC soft (p_met) 0.778"),   # the soft rule separates the built-in items, not perfectly
    ("soft-rule", ["--min-auc", "0.9"], 1, "FAILED"),  # ... so a stricter bar fails, naming the best AUC
    ("echo", [], 1, "FAILED"),                          # an echo server never gives a verdict
])
def test_judge_check_command_against_a_server(backend, extra, rc_want, says, capsys):
    """`rvpo judge check --judge-url`: prints both AUCs, exits 1 with the reason when the best is below --min-auc."""
    from rvpo.cli import main

    with judge_server(backend) as srv:
        rc = main(["judge", "check", "--judge-url", srv.url, "--judge-model", "rvpo-rule", "--timeout", "10", *extra])
    out = capsys.readouterr().out
    assert rc == rc_want and says in out


def test_judge_check_refuses_bad_settings(capsys):
    from rvpo.cli import main

    assert main(["judge", "check", "--judge-url", "http://127.0.0.1:9/v1", "--min-auc", "2"]) == 2
    assert "--min-auc" in capsys.readouterr().err
