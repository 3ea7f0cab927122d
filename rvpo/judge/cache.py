"""Persistent verdict cache: sqlite in WAL mode, one row per successful judgement.

Key: ``sha256(canonical JSON of [judge model, rendered prompt messages, criterion])``. Only successful
verdicts are stored (an abstention is retried on the next run). Several processes may read and
write one file at once: each holds its own connection, writes are single-statement transactions
(``INSERT OR REPLACE``) and a busy database is waited on (``busy_timeout``). A process killed
mid-write leaves the file readable: sqlite rolls the torn transaction back on the next open.
Nothing secret is stored: the API key is not an input of the key or of any column.
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

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    criteria_met INTEGER NOT NULL,
    explanation TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(model: str, messages: list[dict], criterion: str) -> str:
    """Hex sha256 of ``[model, messages, criterion]`` in canonical JSON."""
    blob = json.dumps([model, messages, criterion], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class VerdictCache:
    """sqlite-backed ``key -> Verdict`` map, safe across threads (one lock) and processes (sqlite)."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s,
                                         check_same_thread=False, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise RuntimeError(f"judge cache {self.path}: cannot open ({e}); delete the file to reset it") from e

    def get(self, key: str) -> Verdict | None:
        """The stored verdict for ``key``, or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT criteria_met, explanation FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if row is None else Verdict(criteria_met=bool(row[0]), explanation=row[1])

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        """Stored verdicts for those of ``keys`` that are present."""
        out: dict[str, Verdict] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), 500):  # stay under sqlite's variable limit
                chunk = unique[i:i + 500]
                rows = self._conn.execute(
                    f"SELECT key, criteria_met, explanation FROM verdicts WHERE key IN "
                    f"({','.join('?' * len(chunk))})", chunk).fetchall()
                out.update({k: Verdict(criteria_met=bool(m), explanation=e) for k, m, e in rows})
        return out

    def put(self, key: str, model: str, verdict: Verdict) -> None:
        """Store one successful verdict (atomic; last writer wins for the same key)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO verdicts (key, model, criteria_met, explanation, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, model, int(verdict.criteria_met), verdict.explanation, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
