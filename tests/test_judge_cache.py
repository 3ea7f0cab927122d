"""Verdict cache: a rerun makes zero HTTP calls; several processes write at once; a killed writer."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time

from judge_server_fixture import FAKE_KEY, expected_rule_verdicts, judge_config, judge_server, rubric_requests

from rvpo.judge import JudgeClient, Verdict, VerdictCache, cache_key, render_judge_messages


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
    assert k == cache_key("m", [dict(m) for m in msgs], "c") and len(k) == 64
    assert len({k, cache_key("m2", msgs, "c"), cache_key("m", msgs, "d"),
                cache_key("m", render_judge_messages([{"role": "assistant", "content": "b"}], "c", 1), "c")}) == 4


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
