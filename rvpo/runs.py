"""Run directories: atomic writes, JSONL appends, resolved configs. Nothing here loses data on a crash.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl``, results and plots. Files are
written to a temporary sibling and renamed into place, so a crash or Ctrl-C leaves either the old
or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# whole key names only: "api_key", "openai_api_key", "hf_token", "client_secret" are secrets;
# "max_new_tokens", "api_key_env" (the NAME of a variable) and "api_key_set" are not
_SECRET_KEYS = re.compile(
    r"^(?:\w*_)?(?:api[_-]?key|token|access[_-]?token|secret|password|passwd|authorization|bearer)$", re.I
)


def make_run_dir(root: str | os.PathLike = "runs", name: str = "run") -> Path:
    """Create and return a fresh ``root/<name>-<YYYYmmdd-HHMMSS>[-n]`` folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = root / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {root}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def redact(obj: Any) -> Any:
    """Copy of ``obj`` with the values of secret-looking keys (api_key, token, ...) replaced."""
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEYS.search(str(k)) and v else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (secret-looking keys redacted)."""
    atomic_write_text(path, json.dumps(redact(obj), indent=2, default=str) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as YAML (secret-looking keys redacted)."""
    atomic_write_text(path, yaml.safe_dump(redact(obj), sort_keys=False))


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Atomically write ``records`` as JSON Lines (secret-looking keys redacted)."""
    atomic_write_text(path, "".join(json.dumps(redact(r), default=str) + "\n" for r in records))


def write_eval_outputs(out_dir: str | os.PathLike, config: dict, records: list[dict], summary: dict) -> None:
    """An evaluation's run directory: ``config.json``, ``examples.jsonl`` (per example), ``results.json``."""
    out = Path(out_dir)
    write_json(out / "config.json", config)
    write_jsonl(out / "examples.jsonl", records)
    write_json(out / "results.json", summary)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the line being written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(redact(record), default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a torn last line (crash mid-write) is ignored, any other bad line raises."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i}: invalid JSON: {e}") from None
    return out
