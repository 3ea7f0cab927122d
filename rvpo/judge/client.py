"""Async judge client for OpenAI-compatible Chat Completions, with cache, retries and abstentions.

One :class:`JudgeRequest` is one rubric item against one conversation (prompt + policy completion).
``JudgeClient.ajudge_many`` returns one ``Verdict | None`` per request, in order; ``None`` is an
abstention: the judge could not give a valid verdict within the retry/re-ask budget. Abstentions are
counted by reason in :class:`JudgeStats` and logged (``rvpo.judge`` logger), never turned into 0.

Per request: cache lookup -> (under the concurrency semaphore) HTTP attempts with exponential backoff
on 429 / 5xx / timeouts / connection errors / unreadable bodies (``max_retries``) -> strict verdict
parse, re-asking the judge on a malformed verdict (``max_reasks``) -> cache write (successes only).
Identical requests in one batch are judged once. The API key is sent only in the Authorization
header and is scrubbed from every log line and error message this module writes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from rvpo.judge.cache import VerdictCache, cache_key
from rvpo.judge.config import JudgeConfig
from rvpo.judge.parse import Verdict, VerdictParseError, parse_verdict
from rvpo.judge.prompt import REASK_MESSAGE, render_judge_messages

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


@dataclass
class JudgeStats:
    """Counters over a client's lifetime. ``failures`` counts abstentions by reason."""

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    retries: int = 0
    reasks: int = 0
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

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready summary (latency in seconds over HTTP calls that got a response)."""
        lat = sorted(self.latency_s)

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {
            "requests": self.requests, "calls": self.calls, "cache_hits": self.cache_hits,
            "deduplicated": self.deduplicated, "retries": self.retries, "reasks": self.reasks,
            "abstentions": self.abstentions, "failures": dict(sorted(self.failures.items())),
            "latency_mean_s": sum(lat) / len(lat) if lat else None,
            "latency_p50_s": q(0.5), "latency_p95_s": q(0.95), "latency_max_s": lat[-1] if lat else None,
        }


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
        path = config.resolved_cache_path
        self.cache = VerdictCache(path) if path else None

    # ---- public API -------------------------------------------------------------------------
    async def ajudge_many(self, requests: list[JudgeRequest]) -> list[Verdict | None]:
        """One ``Verdict | None`` per request, in order (``None`` = abstention)."""
        return [o.verdict for o in await self.ajudge_detailed(requests)]

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
        outcomes: list[JudgeOutcome | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(prepared):
            if key in cached:
                outcomes[i] = JudgeOutcome(cached[key], cached=True)
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
            for (key, idx), outcome in zip(todo.items(), results, strict=True):
                for i in idx:
                    outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        """Release the cache connection (the client makes no further calls after this)."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> "JudgeClient":
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
        return cache_key(self.config.model, messages, req.criterion), messages

    def _scrub(self, text: str) -> str:
        """``text`` with the API key (and any URL userinfo) removed."""
        text = re.sub(r"(https?://)[^/@\s]+@", r"\1***@", str(text))
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    async def _judge_one(self, http: httpx.AsyncClient, sem: asyncio.Semaphore, key: str,
                         messages: list[dict], req: JudgeRequest, index: int) -> JudgeOutcome:
        attempts = 0
        async with sem:
            convo = messages
            for reask in range(self.config.max_reasks + 1):
                try:
                    text, n = await self._complete(http, convo)
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
                if self.cache is not None:
                    self.cache.put(key, self.config.model, verdict)
                return JudgeOutcome(verdict, attempts=attempts)
        raise AssertionError("unreachable")

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
        return payload

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (retry - 1))
        delay = base * (0.5 + random.random() / 2)  # jitter: spread synchronized retries
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay

    async def _complete(self, http: httpx.AsyncClient, messages: list[dict]) -> tuple[str, int]:
        """The judge's answer text and the number of HTTP attempts; raises ``_Retryable``/``_Fatal``."""
        payload = self._payload(messages)
        last: _Retryable | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.add("retries")
                await asyncio.sleep(self._backoff(attempt, last.retry_after if last else None))
            self.stats.add("calls")
            try:
                return await self._attempt(http, payload), attempt + 1
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

    async def _attempt(self, http: httpx.AsyncClient, payload: dict[str, Any]) -> str:
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
            raise _Retryable(f"http_{status}", _retry_after(resp))
        if status >= 400:
            log.warning("judge endpoint %s answered HTTP %d: %s", self._scrub(self.base_url), status,
                        self._scrub(resp.text[:200]))
            raise _Fatal(f"http_{status}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("bad_response") from None
        if not isinstance(content, str):
            raise _Retryable("bad_response")
        return content


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None
