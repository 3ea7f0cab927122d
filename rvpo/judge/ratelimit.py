"""Client-side rate limit for hosted judge APIs: requests and tokens per rolling minute, and Retry-After.

Hosted APIs (OpenAI, Anthropic-compatible gateways, ...) limit requests per minute (RPM) and tokens
per minute (TPM); going over gets HTTP 429s, which cost retries and, past the retry budget,
abstentions. :class:`RateLimiter` keeps a log of the HTTP attempts of the last ``window_s`` seconds
(one entry ``[time, tokens]`` per attempt) and makes an attempt wait until it fits under both limits.
A token count is booked before the call (an estimate: prompt characters / 4 + ``max_tokens``, which
is how hosted APIs count a request against TPM up front) and corrected to the reply's ``usage``
afterwards (:meth:`RateLimiter.settle`). A ``Retry-After`` from the server pauses *every* attempt of
the client until it has passed (:meth:`RateLimiter.pause`), not only the one that received it.

Thread- and loop-safe: state is guarded by a ``threading.Lock`` and waiting is ``asyncio.sleep``, so
one limiter serves every ``judge_many`` call of a client, whichever thread or event loop it runs in.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Rolling-window limits on attempts (``requests_per_minute``) and tokens (``tokens_per_minute``).

    Either limit may be ``None`` (unlimited). A single attempt larger than the token limit is let
    through once the window is empty (otherwise it could never run). ``clock`` is for tests.
    """

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.rpm = None if requests_per_minute is None else max(1, int(math.floor(requests_per_minute)))
        self.tpm = tokens_per_minute
        self.window_s = float(window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._log: deque[list[float]] = deque()  # [time, tokens] per booked attempt, oldest first
        self._paused_until = 0.0

    def _delay(self, tokens: float, now: float) -> float:
        """Seconds until an attempt of ``tokens`` fits (0: it fits now). Call under the lock."""
        while self._log and self._log[0][0] <= now - self.window_s:
            self._log.popleft()
        wait = max(0.0, self._paused_until - now)
        if self.rpm is not None and len(self._log) >= self.rpm:
            oldest_to_expire = self._log[len(self._log) - self.rpm][0]
            wait = max(wait, oldest_to_expire + self.window_s - now)
        if self.tpm is not None and self._log:
            excess = sum(e[1] for e in self._log) + tokens - self.tpm
            if excess > 0:
                freed, t_free = 0.0, self._log[-1][0]
                for t, n in self._log:  # expire entries oldest first until the attempt fits
                    freed += n
                    t_free = t
                    if freed >= excess:
                        break
                wait = max(wait, t_free + self.window_s - now)
        return wait

    async def acquire(self, tokens: float = 0.0) -> tuple[list[float], float]:
        """Wait until an attempt of ``tokens`` fits, book it; return ``(ticket, seconds waited)``."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(tokens, now)
                if delay <= 0:
                    ticket = [now, float(tokens)]
                    self._log.append(ticket)
                    return ticket, waited
            delay = min(delay, self.window_s) + 1e-3
            await asyncio.sleep(delay)
            waited += delay

    def settle(self, ticket: list[float], tokens: float) -> None:
        """Replace a booked attempt's token estimate with the tokens the reply reports it used."""
        with self._lock:
            ticket[1] = float(tokens)

    def pause(self, seconds: float) -> None:
        """Hold every attempt for ``seconds`` from now (a server's ``Retry-After``); pauses only lengthen."""
        if seconds > 0:
            with self._lock:
                self._paused_until = max(self._paused_until, self._clock() + seconds)

    def in_window(self) -> tuple[int, float]:
        """``(attempts, tokens)`` booked in the current window."""
        with self._lock:
            self._delay(0.0, self._clock())
            return len(self._log), sum(e[1] for e in self._log)
