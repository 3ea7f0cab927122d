"""Verdict cache: a rerun makes zero HTTP calls; several processes write at once; a killed writer."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time

import pytest

from judge_server_fixture import FAKE_KEY, expected_rule_verdicts, judge_config, judge_server, rubric_requests
from rvpo.judge import JudgeClient, Verdict, VerdictCache, cache_key, render_judge_messages
from rvpo.judge.cache import cache_key_v1


def test_rerun_makes_zero_http_calls_and_failures_are_not_cached(tmp_path):
    reqs = rubric_requests(8)
    with judge_server("rule", fault_script=["500"] * 2) as srv:  # request 0 fails twice -> abstains
        first = JudgeClient(judge_config(srv.url, tmp_path, max_retries=1, concurrency=1, api_key=FAKE_KEY))
        out1 = first.judge_detailed(reqs)
        first.close()
        assert out1[0].verdict is None and all(o.verdict is not None for o in out1[1:])
        served = srv.stats()["requests"]
        second = JudgeClient(judge_config(srv.url, tmp_path, api_key=FAKE_KEY))  # same cache file
        out2 = second.judge_detailed(reqs)
        assert [o.cached for o in out2] == [False] + [True] * 7  # only the abstention is asked again
        assert second.stats.calls == 1 and srv.stats()["requests"] == served + 1
        third = JudgeClient(judge_config(srv.url, tmp_path))
        assert [v.criteria_met for v in third.judge_many(reqs)] == expected_rule_verdicts(8)
        assert third.stats.calls == 0 and third.stats.cache_hits == 8
        assert srv.stats()["requests"] == served + 1
    assert b"SECRET123" not in (tmp_path / "judge.sqlite").read_bytes()


def test_key_depends_on_model_prompt_and_criterion():
    msgs = render_judge_messages([{"role": "assistant", "content": "a"}], "c", 1)
    k = cache_key("m", msgs, "c")
    assert k == cache_key("m", [dict(m) for m in msgs], "c") and k.startswith("v2:") and len(k) == 67
    assert len({k, cache_key("m2", msgs, "c"), cache_key("m", msgs, "d"),
                cache_key("m", render_judge_messages([{"role": "assistant", "content": "b"}], "c", 1), "c")}) == 4
    assert cache_key_v1("m", msgs, "c") != k and len(cache_key_v1("m", msgs, "c")) == 64


# every setting that can change a verdict, and a value different from JudgeConfig's default
_VERDICT_SETTINGS = [("temperature", 0.7), ("top_p", 0.9), ("max_tokens", 64), ("json_mode", True), ("seed", 7)]


@pytest.mark.parametrize("field,value", _VERDICT_SETTINGS)
def test_changing_a_verdict_setting_misses_the_cache(tmp_path, field, value):
    reqs = rubric_requests(3)
    with judge_server("rule") as srv:
        with JudgeClient(judge_config(srv.url, tmp_path)) as warm:
            warm.judge_many(reqs)
            assert warm.stats.calls == 3
        with JudgeClient(judge_config(srv.url, tmp_path)) as same:
            same.judge_many(reqs)
            assert same.stats.cache_hits == 3 and same.stats.calls == 0
        with JudgeClient(judge_config(srv.url, tmp_path, **{field: value})) as changed:
            changed.judge_many(reqs)
            assert changed.stats.cache_hits == 0 and changed.stats.calls == 3, field


def test_changing_the_grader_template_misses_the_cache(tmp_path, monkeypatch):
    import rvpo.judge.prompt as prompt

    reqs = rubric_requests(2)
    with judge_server("rule") as srv:
        with JudgeClient(judge_config(srv.url, tmp_path)) as warm:
            warm.judge_many(reqs)
        monkeypatch.setattr(prompt, "GRADER_TEMPLATE", prompt.GRADER_TEMPLATE + "\nBe terse.")
        with JudgeClient(judge_config(srv.url, tmp_path)) as changed:
            changed.judge_many(reqs)
            assert changed.stats.cache_hits == 0 and changed.stats.calls == 2


def _write_v1_cache(folder, reqs) -> None:
    """What rvpo's v1 writer left: bare-hex keys of [model, messages, criterion] only."""
    old = VerdictCache(folder / "judge.sqlite")
    for r in reqs:
        msgs = render_judge_messages(r.conversation, r.criterion, r.points)
        old.put(cache_key_v1("rvpo-rule", msgs, r.criterion), "rvpo-rule", Verdict(True, "from v1"))
    old.close()


def test_a_v1_cache_stays_readable_and_is_used_only_when_asked(tmp_path):
    reqs = rubric_requests(4)
    for sub in ("a", "b"):
        _write_v1_cache(tmp_path / sub, reqs)
    with judge_server("rule") as srv:  # by default a v1 entry is not trusted: its settings are unknown
        with JudgeClient(judge_config(srv.url, tmp_path / "a")) as fresh:
            assert [v.criteria_met for v in fresh.judge_many(reqs)] == expected_rule_verdicts(4)
            assert fresh.stats.cache_hits == 0 and fresh.stats.calls == 4
    with JudgeClient(judge_config("http://127.0.0.1:9/v1", tmp_path / "b", cache_read_v1=True)) as legacy:
        out = legacy.judge_detailed(reqs)  # port 9: any HTTP call would abstain
        assert [o.verdict.explanation for o in out] == ["from v1"] * 4 and all(o.cached for o in out)
        assert legacy.stats.calls == 0


def _writer(path: str, wid: int, n: int) -> None:
    cache = VerdictCache(path)
    for i in range(n):
        cache.put(f"k{wid}-{i}", "m", Verdict(criteria_met=(i + wid) % 2 == 0, explanation=f"w{wid} i{i}"))
        cache.put("shared", "m", Verdict(criteria_met=True, explanation=f"w{wid}"))  # contended row
    cache.close()


def test_concurrent_writer_processes(tmp_path):
    path = str(tmp_path / "c.sqlite")
    VerdictCache(path).close()
    ctx = mp.get_context("fork")  # the children open their own connections
    procs = [ctx.Process(target=_writer, args=(path, w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = VerdictCache(path)
    assert len(cache) == 4 * 60 + 1
    got = cache.get_many([f"k{w}-{i}" for w in range(4) for i in range(60)])
    assert all(got[f"k{w}-{i}"].criteria_met == ((i + w) % 2 == 0) for w in range(4) for i in range(60))
    assert cache.get("shared").explanation in {"w0", "w1", "w2", "w3"}


def _endless_writer(path: str, ready) -> None:
    cache = VerdictCache(path)
    i = 0
    while True:
        cache.put(f"x{i}", "m", Verdict(criteria_met=True, explanation="y" * 2000))
        if i == 50:
            ready.set()
        i += 1


def test_killed_writer_leaves_a_readable_cache(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("fork")  # the children open their own connections
    for round_ in range(2):
        ready = ctx.Event()
        p = ctx.Process(target=_endless_writer, args=(path, ready))
        p.start()
        assert ready.wait(60)
        time.sleep(0.05 * round_)
        os.kill(p.pid, signal.SIGKILL)  # mid-write, no cleanup
        p.join(10)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cache = VerdictCache(path)
    n = len(cache)
    assert n > 50 and cache.get("x0") == Verdict(criteria_met=True, explanation="y" * 2000)
    cache.put("after", "m", Verdict(criteria_met=False, explanation=""))
    assert len(cache) == n + 1
