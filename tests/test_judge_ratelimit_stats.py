"""Judge client: client-side rate limit, Retry-After, token usage, per-step stats deltas, URL secrets."""

from __future__ import annotations

import asyncio
import math
import time
from types import SimpleNamespace

import pytest

from judge_server_fixture import judge_config, rubric_requests
from rvpo.judge import JudgeClient, JudgeConfig, ratelimit, render_judge_messages
from rvpo.judge.faults import FaultInjector
from rvpo.judge.ratelimit import RateLimiter
from rvpo.judge.server import make_backend, start_in_thread


class FakeTime:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(ratelimit, "asyncio", SimpleNamespace(sleep=clock.sleep))
    return clock


def _times(limiter: RateLimiter, clock: FakeTime, tokens: list[float]) -> list[float]:
    async def go():
        out = []
        for n in tokens:
            await limiter.acquire(n)
            out.append(round(clock.now, 2))
        return out
    return asyncio.run(go())


def test_requests_per_minute_is_a_rolling_window(fake_time):
    lim = RateLimiter(requests_per_minute=3, clock=fake_time)
    assert _times(lim, fake_time, [0] * 7) == [0, 0, 0, 60, 60, 60, 120]


def test_tokens_per_minute_with_settle_and_oversized_attempts(fake_time):
    lim = RateLimiter(tokens_per_minute=100, clock=fake_time)
    assert _times(lim, fake_time, [60, 60]) == [0, 60]  # 120 > 100: the second waits for the first to expire
    fake_time.now = 200.0
    ticket, _ = asyncio.run(lim.acquire(90))
    lim.settle(ticket, 10)  # the reply used 10 tokens, not the 90 booked
    assert _times(lim, fake_time, [80]) == [200]
    assert _times(lim, fake_time, [500]) == [260]  # larger than the limit: runs alone once the window is empty
    assert lim.in_window() == (1, 500)


def test_pause_holds_every_attempt(fake_time):
    lim = RateLimiter(clock=fake_time)  # no limits: only the Retry-After pause
    lim.pause(5.0)
    lim.pause(2.0)  # a shorter pause never shortens the current one
    assert _times(lim, fake_time, [0, 0]) == [5, 5]


@pytest.mark.parametrize("field,value", [("requests_per_minute", 0), ("tokens_per_minute", -1),
                                         ("requests_per_minute", math.inf), ("top_p", 0), ("temperature", -1)])
def test_config_rejects_bad_limits(field, value):
    with pytest.raises(ValueError, match=field):
        JudgeConfig(**{field: value})


def test_client_waits_on_the_request_limit(tmp_path):
    with start_in_thread(make_backend("rule")) as srv:
        client = JudgeClient(judge_config(srv.url, None, requests_per_minute=2))
        client.limiter = RateLimiter(requests_per_minute=2, window_s=0.5)  # a short window keeps the test fast
        t0 = time.perf_counter()
        assert all(v is not None for v in client.judge_many(rubric_requests(4)))
        assert time.perf_counter() - t0 >= 0.5
        assert client.stats.rate_wait_s >= 0.5 and client.stats.calls == 4


def test_retry_after_is_honoured_and_counted(tmp_path):
    faults = FaultInjector(script=["429"], retry_after_s=0.6)
    with start_in_thread(make_backend("rule"), faults=faults) as srv:
        client = JudgeClient(judge_config(srv.url, None, concurrency=1))
        t0 = time.perf_counter()
        verdicts = client.judge_many(rubric_requests(2))
        elapsed = time.perf_counter() - t0
    assert all(v is not None for v in verdicts) and elapsed >= 0.6  # backoff alone is <= 0.05 s here
    assert (client.stats.throttled, client.stats.retries, client.stats.retry_after_s) == (1, 1, 0.6)


def test_token_usage_and_stats_delta(tmp_path):
    reqs = rubric_requests(4)
    faults = FaultInjector(script=["ok"] * 8 + ["500"])
    with start_in_thread(make_backend("rule"), faults=faults) as srv:
        client = JudgeClient(judge_config(srv.url, tmp_path, max_retries=0, concurrency=1))
        client.judge_many(reqs)
        first = client.stats_delta(prefix="judge/")
        client.judge_many(reqs)  # all cached
        second = client.stats_delta(prefix="judge/")
        client.judge_many(rubric_requests(5, offset=4))  # the 5th HTTP call of this batch gets a 500
        third = client.stats_delta()
    # the local server reports usage as characters / 4 of the prompt and of the answer
    prompt_tokens = sum(-(-sum(len(m["content"]) for m in render_judge_messages(r.conversation, r.criterion, r.points))
                          // 4) for r in reqs)
    assert first["judge/tokens_in"] == prompt_tokens and first["judge/tokens_out"] > 0
    assert (first["judge/requests"], first["judge/calls"], first["judge/cache_hits"]) == (4, 4, 0)
    assert first["judge/cache_hit_rate"] == 0.0 and first["judge/abstentions"] == 0
    assert 0 < first["judge/latency_p50_s"] <= first["judge/latency_p95_s"]
    assert (second["judge/requests"], second["judge/calls"], second["judge/cache_hits"]) == (4, 0, 4)
    assert second["judge/cache_hit_rate"] == 1.0 and second["judge/tokens_in"] == 0
    assert math.isnan(second["judge/latency_p50_s"])  # no HTTP call in the interval
    assert third["requests"] == 5 and third["abstentions"] == 1 and third["abstain/http_500"] == 1
    assert third["abstain_rate"] == pytest.approx(0.2)
    total = client.stats.as_dict()
    assert total["tokens_in"] == first["judge/tokens_in"] + third["tokens_in"] and total["requests"] == 13
    assert all(isinstance(v, (int, float)) for v in first.values())


def test_url_userinfo_is_redacted_in_config_repr_errors_and_logs(caplog):
    key = "sk-url-SECRET-99"
    cfg = JudgeConfig(base_url=f"http://user:{key}@127.0.0.1:9/v1", cache_path=None, max_retries=0)
    assert key not in repr(cfg) and key not in str(cfg.as_dict()) and "***@127.0.0.1" in repr(cfg)
    with pytest.raises(ValueError) as e:
        JudgeConfig(base_url=f"ftp://user:{key}@host/v1")
    assert key not in str(e.value) and "ftp://***@host" in str(e.value)
    with caplog.at_level("DEBUG", logger="rvpo.judge"):
        JudgeClient(cfg).judge_many(rubric_requests(1))
    assert key not in caplog.text
