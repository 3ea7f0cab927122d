"""Persistent verdict cache: sqlite in WAL mode, one row per successful judgement.

Key (version 2): ``"v2:" + sha256(canonical JSON of {judge model, rendered prompt messages (the
grader template is their system message), criterion, settings})`` where ``settings`` holds every
request setting that can change a verdict (temperature, top_p, max_tokens, JSON mode, seed, the
re-ask message): changing any of them misses the cache. Version-1 keys (bare hex, from
``[model, messages, criterion]`` only) stay in old files and can still be read
(:func:`cache_key_v1`; the client uses them only with ``JudgeConfig.cache_read_v1``). Only successful
verdicts are stored (an abstention is retried on the next run). Several processes may read and
write one file at once: each holds its own connection, writes are single-statement transactions
(``INSERT OR REPLACE``) and a busy database is waited on (``busy_timeout``). A process killed
mid-write leaves the file readable: sqlite rolls the torn transaction back on the next open.
Nothing secret is stored: the API key is not an input of the key or of any column.

Schema version 2 adds the column ``p_met`` (REAL, NULL for a hard verdict): the judge's probability of
"met" (:attr:`rvpo.judge.parse.Verdict.p_met`). A version-1 file gains the column on open (its rows read
back as hard verdicts); an older rvpo still reads a version-2 file (it names its columns).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from rvpo.judge.parse import Verdict

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    criteria_met INTEGER NOT NULL,
    explanation TEXT NOT NULL,
    created REAL NOT NULL,
    p_met REAL
)
"""


def _verdict(met: int, explanation: str, p: float | None) -> Verdict:
    return Verdict(criteria_met=bool(met), explanation=explanation, p_met=None if p is None else float(p))


KEY_VERSION = 2


def _digest(obj: object) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cache_key(model: str, messages: list[dict], criterion: str, settings: dict | None = None) -> str:
    """``"v2:<hex sha256>"`` of model, messages, criterion and the verdict-changing ``settings`` (canonical JSON).

    ``settings``: e.g. :meth:`rvpo.judge.JudgeConfig.verdict_settings`; ``None`` is the same as ``{}``.
    """
    return f"v{KEY_VERSION}:" + _digest({"v": KEY_VERSION, "model": model, "messages": messages,
                                          "criterion": criterion, "settings": dict(settings or {})})


def cache_key_v1(model: str, messages: list[dict], criterion: str) -> str:
    """The version-1 key (rvpo before the settings were keyed): hex sha256 of ``[model, messages, criterion]``."""
    return _digest([model, messages, criterion])


class VerdictCache:
    """sqlite-backed ``key -> Verdict`` map, safe across threads (one lock) and processes (sqlite)."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RuntimeError(f"judge cache {self.path}: cannot create its folder ({e.strerror or e})") from None
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s,
                                         check_same_thread=False, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._migrate()
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise RuntimeError(f"judge cache {self.path}: cannot open ({e}); delete the file to reset it") from e

    def _migrate(self) -> None:
        """Add ``p_met`` to a version-1 table (several processes may race: a duplicate column is fine)."""
        cols = {row[1] for row in self._conn.execute("PRAGMA table_info(verdicts)")}
        if "p_met" not in cols:
            try:
                self._conn.execute("ALTER TABLE verdicts ADD COLUMN p_met REAL")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e).lower():
                    raise

    def get(self, key: str) -> Verdict | None:
        """The stored verdict for ``key`` (with its ``p_met``, ``None`` for a hard one), or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT criteria_met, explanation, p_met FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if row is None else _verdict(*row)

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        """Stored verdicts for those of ``keys`` that are present."""
        out: dict[str, Verdict] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):  # stay under sqlite's variable limit
                chunk = unique[i:i + 500]
                rows = self._conn.execute(
                    f"SELECT key, criteria_met, explanation, p_met FROM verdicts WHERE key IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall()
                out.update({k: _verdict(m, e, p) for k, m, e, p in rows})
        return out

    def put(self, key: str, model: str, verdict: Verdict) -> None:
        """Store one successful verdict (atomic; last writer wins for the same key)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO verdicts (key, model, criteria_met, explanation, created, p_met) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, int(verdict.criteria_met), verdict.explanation, time.time(), verdict.p_met))

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
