"""Async judge client for OpenAI-compatible Chat Completions, with cache, retries and abstentions.

One :class:`JudgeRequest` is one rubric item against one conversation (prompt + policy completion).
``JudgeClient.ajudge_many`` returns one ``Verdict | None`` per request, in order; ``None`` is an
abstention: the judge could not give a valid verdict within the retry/re-ask budget. Abstentions are
counted by reason in :class:`JudgeStats` and logged (``rvpo.judge`` logger), never turned into 0.

Per request: cache lookup (the key holds every verdict-changing setting, ``rvpo.judge.cache``) ->
(under the concurrency semaphore) HTTP attempts, each booked with the client-side rate limit
(``rvpo.judge.ratelimit``: requests and tokens per minute, a server's ``Retry-After`` pausing every
attempt), with exponential backoff on 429 / 5xx / timeouts / connection errors / unreadable bodies
(``max_retries``) -> strict verdict parse, re-asking the judge on a malformed verdict
(``max_reasks``) -> cache write (successes only). Identical requests in one batch are judged once.
Token usage (``usage`` of each reply) is counted in :class:`JudgeStats`; :meth:`JudgeClient.stats_delta`
gives the figures since its last call (per training step). The API key is sent only in the
Authorization header and is scrubbed from every log line and error message this module writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from rvpo.judge.cache import VerdictCache, cache_key, cache_key_v1
from rvpo.judge.config import JudgeConfig
from rvpo.judge.parse import Verdict, VerdictParseError, p_met_from_logprobs, parse_verdict
from rvpo.judge.prompt import REASK_MESSAGE, render_judge_messages
from rvpo.judge.ratelimit import RateLimiter
from rvpo.runs import redact_url

log = logging.getLogger("rvpo.judge")

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # where `rvpo judge serve` listens by default

# Abstention reasons (keys of JudgeStats.failures): "timeout", "connection", "http_<status>",
# "bad_response" (HTTP 200 whose body is not a chat completion), "malformed_verdict".


@dataclass
class JudgeRequest:
    """One judgement: ``conversation`` = prompt messages + the policy completion as the last assistant turn."""

    conversation: list[dict]
    criterion: str
    points: float = 1.0


@dataclass
class JudgeOutcome:
    """What happened to one request: the verdict, or the abstention reason; and whether it was cached."""

    verdict: Verdict | None
    reason: str | None = None
    cached: bool = False
    attempts: int = 0


_COUNTERS = ("requests", "calls", "cache_hits", "deduplicated", "retries", "reasks", "throttled",
             "tokens_in", "tokens_out", "rate_wait_s", "retry_after_s", "soft", "hard")


@dataclass
class JudgeStats:
    """Counters over a client's lifetime. ``failures`` counts abstentions by reason.

    ``requests``: judge requests asked for (cache hits included); ``calls``: HTTP attempts;
    ``throttled``: HTTP 429 replies; ``tokens_in`` / ``tokens_out``: prompt / completion tokens from the
    replies' ``usage``; ``rate_wait_s``: seconds attempts waited on the client-side rate limit;
    ``retry_after_s``: seconds of ``Retry-After`` honoured (summed over replies that carried one);
    ``soft`` / ``hard``: verdicts received over HTTP with / without a probability ``p_met``.
    """

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    retries: int = 0
    reasks: int = 0
    throttled: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    rate_wait_s: float = 0.0
    retry_after_s: float = 0.0
    soft: int = 0
    hard: int = 0
    failures: Counter = field(default_factory=Counter)
    latency_s: list[float] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        """Increment counter ``name`` by ``n`` (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def fail(self, reason: str) -> None:
        """Count one abstention for ``reason``."""
        with self._lock:
            self.failures[reason] += 1

    @property
    def abstentions(self) -> int:
        """Total abstentions over all reasons."""
        return sum(self.failures.values())

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters, the failures and how many latencies are recorded."""
        with self._lock:
            out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
            out["failures"] = Counter(self.failures)
            out["n_latency"] = len(self.latency_s)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary over the client's lifetime (latency in seconds over HTTP calls that got a response)."""
        snap = self.snapshot()
        lat = sorted(self.latency_s[:snap["n_latency"]])
        return {
            **{name: snap[name] for name in _COUNTERS},
            "abstentions": sum(snap["failures"].values()), "failures": dict(sorted(snap["failures"].items())),
            "latency_mean_s": sum(lat) / len(lat) if lat else None,
            "latency_p50_s": _quantile(lat, 0.5), "latency_p95_s": _quantile(lat, 0.95),
            "latency_max_s": lat[-1] if lat else None,
        }

    def delta(self, since: dict[str, Any] | None) -> dict[str, float]:
        """Flat figures between snapshot ``since`` (``None``: the start) and now; see :meth:`JudgeClient.stats_delta`."""
        now = self.snapshot()
        base = since or {name: 0 for name in _COUNTERS} | {"failures": Counter(), "n_latency": 0}
        out: dict[str, float] = {name: now[name] - base[name] for name in _COUNTERS}
        for name in ("rate_wait_s", "retry_after_s"):
            out[name] = round(out[name], 6)
        failures = now["failures"] - base["failures"]
        out["abstentions"] = sum(failures.values())
        out["cache_hit_rate"] = out["cache_hits"] / out["requests"] if out["requests"] else math.nan
        out["abstain_rate"] = out["abstentions"] / out["requests"] if out["requests"] else math.nan
        judged = out["soft"] + out["hard"]
        out["soft_rate"] = out["soft"] / judged if judged else math.nan
        lat = sorted(self.latency_s[base["n_latency"]:now["n_latency"]])
        out["latency_p50_s"] = _quantile(lat, 0.5, math.nan)
        out["latency_p95_s"] = _quantile(lat, 0.95, math.nan)
        for reason, n in sorted(failures.items()):
            out[f"abstain/{reason}"] = n
        return out


def _quantile(sorted_values: list[float], p: float, empty: Any = None) -> Any:
    """The ``p`` quantile of an ascending list (nearest rank), or ``empty`` for an empty list."""
    if not sorted_values:
        return empty
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Fatal(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JudgeClient:
    """Judges rubric items through an OpenAI-compatible ``/chat/completions`` endpoint.

    >>> client = JudgeClient(JudgeConfig.from_env(base_url="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
    >>> client.judge_many([JudgeRequest(conv, "Mentions hydration.", 5)])               # doctest: +SKIP
    [Verdict(criteria_met=True, explanation='...')]
    """

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.stats = JudgeStats()
        self.limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        path = config.resolved_cache_path
        self.cache = VerdictCache(path) if path else None
        self._settings = {**config.verdict_settings(), "reask_message": REASK_MESSAGE}
        self._last_snapshot: dict[str, Any] | None = None
        self._snapshot_lock = threading.Lock()

    # ---- public API -------------------------------------------------------------------------
    async def ajudge_many(self, requests: list[JudgeRequest]) -> list[Verdict | None]:
        """One ``Verdict | None`` per request, in order (``None`` = abstention)."""
        return [o.verdict for o in await self.ajudge_detailed(requests)]

    def stats_delta(self, prefix: str = "") -> dict[str, float]:
        """Judge figures since the previous ``stats_delta`` call (the first: since construction), flat.

        Keys (each prefixed by ``prefix``, e.g. ``"judge/"``): ``requests``, ``calls``, ``cache_hits``,
        ``cache_hit_rate``, ``deduplicated``, ``retries``, ``reasks``, ``throttled``, ``abstentions``,
        ``abstain_rate``, ``abstain/<reason>`` (only reasons that occurred), ``latency_p50_s``,
        ``latency_p95_s`` (over the HTTP calls in the interval), ``tokens_in``, ``tokens_out``,
        ``rate_wait_s``, ``retry_after_s``. Rates and latencies are NaN when there was nothing to
        measure (strict JSON writers in :mod:`rvpo.runs` write them as null). Cheap: counters only,
        plus sorting the interval's latencies.
        """
        with self._snapshot_lock:
            out = self.stats.delta(self._last_snapshot)
            self._last_snapshot = self.stats.snapshot()
        return {f"{prefix}{k}": v for k, v in out.items()}

    def judge_many(self, requests: list[JudgeRequest]) -> list[Verdict | None]:
        """Blocking ``ajudge_many``; safe to call from a thread that already runs an event loop."""
        return [o.verdict for o in self.judge_detailed(requests)]

    def judge_detailed(self, requests: list[JudgeRequest]) -> list[JudgeOutcome]:
        """Blocking ``ajudge_detailed`` (runs in a worker thread when a loop is already running)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.ajudge_detailed(requests))
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.ajudge_detailed(requests)).result()

    async def ajudge_detailed(self, requests: list[JudgeRequest]) -> list[JudgeOutcome]:
        """Like ``ajudge_many`` but each item also says why it abstained, and whether it was cached."""
        requests = list(requests)
        prepared = [self._prepare(i, r) for i, r in enumerate(requests)]
        self.stats.add("requests", len(requests))
        keys = [key for key, _ in prepared]
        cached = self.cache.get_many(keys) if self.cache else {}
        if self.cache and self.config.cache_read_v1 and len(cached) < len(set(keys)):
            legacy = {cache_key_v1(self.config.model, m, r.criterion): k
                      for (k, m), r in zip(prepared, requests, strict=True) if k not in cached}
            cached.update({legacy[k1]: v for k1, v in self.cache.get_many(list(legacy)).items()})
        outcomes: list[JudgeOutcome | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(prepared):
            if key in cached:
                outcomes[i] = JudgeOutcome(self._decide(cached[key]), cached=True)
            else:
                todo.setdefault(key, []).append(i)
        self.stats.add("cache_hits", len(requests) - sum(len(v) for v in todo.values()))
        self.stats.add("deduplicated", sum(len(v) - 1 for v in todo.values()))
        if todo:
            sem = asyncio.Semaphore(self.config.concurrency)
            limits = httpx.Limits(max_connections=self.config.concurrency,
                                  max_keepalive_connections=self.config.concurrency)
            headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
            async with httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits,
                                         timeout=httpx.Timeout(self.config.timeout_s)) as http:
                jobs = [self._judge_one(http, sem, key, prepared[idx[0]][1], requests[idx[0]], idx[0])
                        for key, idx in todo.items()]
                results = await asyncio.gather(*jobs)
            for (_key, idx), outcome in zip(todo.items(), results, strict=True):
                for i in idx:
                    outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        """Release the cache connection (the client makes no further calls after this)."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------
    def _prepare(self, i: int, req: JudgeRequest) -> tuple[str, list[dict]]:
        if not isinstance(req, JudgeRequest):
            raise TypeError(f"requests[{i}] must be a JudgeRequest, got {type(req).__name__}")
        try:
            messages = render_judge_messages(req.conversation, req.criterion, req.points)
        except ValueError as e:
            raise ValueError(f"requests[{i}]: {e}") from None
        return cache_key(self.config.model, messages, req.criterion, self._settings), messages

    def _scrub(self, text: str) -> str:
        """``text`` with the API key (and any URL userinfo) removed."""
        text = redact_url(text)
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    async def _judge_one(self, http: httpx.AsyncClient, sem: asyncio.Semaphore, key: str,
                         messages: list[dict], req: JudgeRequest, index: int) -> JudgeOutcome:
        attempts = 0
        async with sem:
            convo = messages
            for reask in range(self.config.max_reasks + 1):
                try:
                    text, lp, n = await self._complete(http, convo)
                    attempts += n
                except (_Retryable, _Fatal) as e:
                    attempts += getattr(e, "attempts", 0)
                    return self._abstain(index, e.reason, attempts)
                try:
                    verdict = parse_verdict(text)
                except VerdictParseError as e:
                    log.info("judge request %d: malformed verdict (%s)", index, self._scrub(str(e)))
                    if reask == self.config.max_reasks:
                        return self._abstain(index, "malformed_verdict", attempts)
                    self.stats.add("reasks")
                    convo = messages + [{"role": "assistant", "content": text[:4000]},
                                        {"role": "user", "content": REASK_MESSAGE}]
                    continue
                if self.config.logprobs:
                    verdict.p_met = p_met_from_logprobs(lp)
                self.stats.add("soft" if verdict.p_met is not None else "hard")
                if self.cache is not None:
                    self.cache.put(key, self.config.model, verdict)  # the judge's own answer and p_met
                return JudgeOutcome(self._decide(verdict), attempts=attempts)
        raise AssertionError("unreachable")

    def _decide(self, verdict: Verdict) -> Verdict:
        """``verdict`` with ``criteria_met = p_met >= threshold`` under a per-judge ``threshold`` (a copy)."""
        t = self.config.threshold
        if t is None or verdict.p_met is None:
            return verdict
        return Verdict(criteria_met=verdict.p_met >= t, explanation=verdict.explanation, p_met=verdict.p_met)

    def _abstain(self, index: int, reason: str, attempts: int) -> JudgeOutcome:
        self.stats.fail(reason)
        log.warning("judge request %d abstained after %d HTTP attempt(s): %s", index, attempts, reason)
        return JudgeOutcome(None, reason=reason, attempts=attempts)

    def _payload(self, messages: list[dict]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                   "temperature": self.config.temperature,
                                   "max_tokens": self.config.max_tokens}
        if self.config.json_mode:
            payload["response_format"] = {"type": "json_object"}
        if self.config.top_p is not None:
            payload["top_p"] = self.config.top_p
        if self.config.seed is not None:
            payload["seed"] = self.config.seed
        if self.config.logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = self.config.top_logprobs
        return payload

    def _backoff(self, retry: int) -> float:
        """Jittered exponential backoff; a ``Retry-After`` is applied separately, as a pause of the limiter."""
        base = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (retry - 1))
        return base * (0.5 + random.random() / 2)  # jitter: spread synchronized retries

    def _token_estimate(self, payload: dict[str, Any]) -> int:
        """Tokens an attempt is booked for before the reply: prompt characters / 4 + ``max_tokens``."""
        chars = sum(len(str(m.get("content", ""))) for m in payload["messages"])
        return chars // 4 + int(payload["max_tokens"])

    async def _complete(self, http: httpx.AsyncClient, messages: list[dict]) -> tuple[str, Any, int]:
        """The judge's answer text, its ``logprobs.content`` (or None) and the number of HTTP attempts;
        raises ``_Retryable``/``_Fatal``."""
        payload = self._payload(messages)
        last: _Retryable | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.add("retries")
                await asyncio.sleep(self._backoff(attempt))
            self.stats.add("calls")
            try:
                return (*await self._attempt(http, payload), attempt + 1)
            except _Retryable as e:
                last = e
                log.info("judge call failed (%s), attempt %d/%d", e.reason, attempt + 1,
                         self.config.max_retries + 1)
            except _Fatal as e:
                e.attempts = attempt + 1  # type: ignore[attr-defined]
                raise
        assert last is not None
        last.attempts = self.config.max_retries + 1  # type: ignore[attr-defined]
        raise last

    async def _attempt(self, http: httpx.AsyncClient, payload: dict[str, Any]) -> tuple[str, Any]:
        ticket, waited = await self.limiter.acquire(self._token_estimate(payload))
        if waited:
            self.stats.add("rate_wait_s", waited)
        t0 = time.perf_counter()
        try:
            resp = await http.post("/chat/completions", json=payload)
        except httpx.TimeoutException:
            raise _Retryable("timeout") from None
        except httpx.TransportError:
            raise _Retryable("connection") from None
        self.stats.latency_s.append(time.perf_counter() - t0)
        status = resp.status_code
        if status == 429 or status >= 500:
            retry_after = _retry_after(resp)
            if status == 429:
                self.stats.add("throttled")
            if retry_after:
                pause = min(retry_after, self.config.retry_after_max_s)
                self.limiter.pause(pause)  # every attempt of this client waits, not only this one
                self.stats.add("retry_after_s", pause)
            raise _Retryable(f"http_{status}", retry_after)
        if status >= 400:
            log.warning("judge endpoint %s answered HTTP %d: %s", self._scrub(self.base_url), status,
                        self._scrub(resp.text[:200]))
            raise _Fatal(f"http_{status}")
        try:
            body = resp.json()
            content = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("bad_response") from None
        self._count_usage(body.get("usage"), ticket)
        if not isinstance(content, str):
            raise _Retryable("bad_response")
        logprobs = body["choices"][0].get("logprobs")
        return content, logprobs.get("content") if isinstance(logprobs, dict) else None

    def _count_usage(self, usage: Any, ticket: list[float]) -> None:
        """Add a reply's ``usage`` to the token counters and correct the rate limiter's booking."""
        if not isinstance(usage, dict):
            return
        n_in, n_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        n_in = n_in if isinstance(n_in, int) and n_in >= 0 else 0
        n_out = n_out if isinstance(n_out, int) and n_out >= 0 else 0
        self.stats.add("tokens_in", n_in)
        self.stats.add("tokens_out", n_out)
        if n_in or n_out:
            self.limiter.settle(ticket, n_in + n_out)


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds a reply asks us to wait: ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date), or None."""
    ms = resp.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = resp.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
