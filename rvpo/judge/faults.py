"""Server-side fault injection for the local judge server (seeded, drawn once per request).

Kinds (``FAULT_KINDS``):

- ``500``: HTTP 500 with an OpenAI-style error body.
- ``429``: HTTP 429 with ``Retry-After: <retry_after_s>`` (default 0).
- ``timeout``: hold the request for ``hang_s`` seconds (longer than any sane client timeout).
- ``slow``: wait ``slow_s`` seconds, then answer normally.
- ``malformed``: HTTP 200, a well-formed chat completion whose content is not a verdict JSON.
- ``badbody``: HTTP 200 whose body is not JSON at all.

``rate`` is the probability that a request gets a fault; the kind is then drawn uniformly from
``kinds``. A ``script`` (list of kinds or ``"ok"``) is consumed first, in arrival order, which makes
retry tests exact. Draws are serialised by a lock, so a seed gives the same fault sequence for the
same arrival order.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

FAULT_KINDS = ("500", "429", "timeout", "slow", "malformed", "badbody")
MALFORMED_CONTENT = "Sure! I think the answer meets the criterion, mostly. criteria_met: yes"


def parse_kinds(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"500,timeout"`` -> ``("500", "timeout")``; raises ``ValueError`` naming a bad kind."""
    kinds = [k.strip() for k in text.split(",")] if isinstance(text, str) else [str(k) for k in text]
    kinds = [k for k in kinds if k]
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise ValueError(f"fault kinds {bad or kinds!r} invalid; choose from {','.join(FAULT_KINDS)}")
    return tuple(kinds)


@dataclass
class FaultInjector:
    """Decides, per request, whether and how the server misbehaves."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    script: list[str] = field(default_factory=list)
    hang_s: float = 3600.0
    slow_s: float = 1.0
    retry_after_s: float = 0.0
    """the ``Retry-After`` header (seconds) a ``429`` fault carries"""

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be in [0, 1], got {self.rate}")
        if not self.retry_after_s >= 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        self.kinds = parse_kinds(self.kinds)
        for k in self.script:
            if k != "ok" and k not in FAULT_KINDS:
                raise ValueError(f"fault script entry {k!r} invalid; use 'ok' or one of {FAULT_KINDS}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._script = list(self.script)
        self.counts: Counter = Counter()

    def draw(self) -> str | None:
        """The fault for the next request, or ``None`` for a normal answer."""
        with self._lock:
            if self._script:
                kind = self._script.pop(0)
                kind = None if kind == "ok" else kind
            elif self.rate > 0 and self._rng.random() < self.rate:
                kind = self._rng.choice(self.kinds)
            else:
                kind = None
            self.counts[kind or "ok"] += 1
            return kind
