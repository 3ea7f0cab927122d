"""Run directories: atomic writes, JSONL appends, resolved configs. Nothing here loses data on a crash.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl``, results and plots. Files are
written to a temporary sibling and renamed into place, so a crash or Ctrl-C leaves either the old
or the new file, never half of one.

Every writer here is strict JSON (a NaN or infinity is written as ``null``; ``allow_nan=False``) and
redacts secrets: values of secret-looking keys, and the ``user:password@`` part of any URL.
A run that fails before it has produced anything leaves no folder behind: create the folder with
:func:`new_run_dir` (a context manager) once the inputs are validated.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

# whole key names only: "api_key", "openai_api_key", "hf_token", "client_secret" are secrets;
# "max_new_tokens", "api_key_env" (the NAME of a variable) and "api_key_set" are not
_SECRET_KEYS = re.compile(
    r"^(?:\w*_)?(?:api[_-]?key|token|access[_-]?token|secret|password|passwd|authorization|bearer)$", re.I
)


# the userinfo part of a URL, which may hold a key: "scheme://anything@host", or without a scheme
# (a mistyped URL) "user:password@host" at the start of a word (a colon, so that "me@example.com" stays)
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
_BARE_USERINFO = re.compile(r"(?<![\w.+:/-])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w\[])")

SETUP_FILES = ("config.yaml", "config.json")
"""Files a run writes before it starts; a folder holding only these is removed by :func:`new_run_dir`."""


class RunDirError(OSError):
    """The run directory cannot be created (a file in the way, no permission); names the path."""


def make_run_dir(root: str | os.PathLike = "runs", name: str = "run") -> Path:
    """Create and return a fresh ``root/<name>-<YYYYmmdd-HHMMSS>[-n]`` folder (:class:`RunDirError` if impossible)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create a run directory under {root}: {e.strerror or e}") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = root / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot create a run directory under {root}: {e.strerror or e}") from None
    raise RunDirError(f"could not create a run directory under {root}")


def check_run_root(root: str | os.PathLike) -> Path:
    """Raise :class:`RunDirError` now if run folders cannot be made under ``root`` (call it before heavy work).

    ``root`` may not exist yet; its nearest existing ancestor must be a writable folder.
    """
    root = Path(root)
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunDirError(f"cannot create a run directory under {root}: {probe} is not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot create a run directory under {root}: {probe} is not writable")
    return root


def remove_if_unstarted(path: str | os.PathLike, setup_files: tuple[str, ...] = SETUP_FILES) -> bool:
    """Delete run folder ``path`` if it holds nothing but ``setup_files``; return whether it was removed.

    Only those named files and the folder itself are deleted (never a tree): a folder with any other
    entry (metrics, a checkpoint, results) is a started run and is kept.
    """
    path = Path(path)
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    if any(e.name not in setup_files or not e.is_file() for e in entries):
        return False
    for e in entries:
        e.unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def new_run_dir(root: str | os.PathLike = "runs", name: str = "run",
                setup_files: tuple[str, ...] = SETUP_FILES) -> Iterator[Path]:
    """:func:`make_run_dir`, removed again if the body raises before the run produced anything.

    >>> with new_run_dir(args.out, "gpqa") as run_dir:      # doctest: +SKIP
    ...     write_json(run_dir / "config.json", config)      # a setup file: still removed on failure
    ...     result = run_gpqa(..., out_dir=run_dir)          # raises -> the folder is gone

    On any exception (``KeyboardInterrupt`` included) the folder is deleted when it holds nothing but
    ``setup_files`` (see :func:`remove_if_unstarted`); a run that has written anything else keeps
    its folder. The exception propagates unchanged.
    """
    path = make_run_dir(root, name)
    try:
        yield path
    except BaseException:
        remove_if_unstarted(path, setup_files)
        raise


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


def redact_url(text: Any) -> str:
    """``text`` with the userinfo of every URL in it replaced: ``http://u:KEY@h/v1`` -> ``http://***@h/v1``."""
    return _BARE_USERINFO.sub("***@", _URL_USERINFO.sub(r"\1***@", str(text)))


def redact(obj: Any) -> Any:
    """Copy of ``obj`` with the values of secret-looking keys (api_key, token, ...) and URL userinfo replaced."""
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEYS.search(str(k)) and v else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and "@" in obj:
        return redact_url(obj)
    return obj


def _finite(obj: Any) -> Any:
    """Copy of ``obj`` with every non-finite float (NaN, +-inf) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0 and getattr(obj, "dtype", None) is not None:
        return _finite(obj.item())  # numpy / torch scalars
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj``: secrets redacted, NaN/inf written as ``null``, other objects as ``str``."""
    return json.dumps(_finite(redact(obj)), indent=indent, default=str, allow_nan=False)


def csv_text(rows: list[dict]) -> str:
    """CSV text of ``rows`` with the union of their keys as columns, in first-seen order (None and
    non-finite floats as empty cells)."""
    import csv
    import io

    buf = io.StringIO()
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                    for k, v in r.items()})
    return buf.getvalue()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented strict JSON (see :func:`to_json`)."""
    atomic_write_text(path, to_json(obj) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as YAML (secrets redacted; YAML has ``.nan``, so NaN stays NaN)."""
    atomic_write_text(path, yaml.safe_dump(redact(obj), sort_keys=False))


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Atomically write ``records`` as strict JSON Lines (see :func:`to_json`)."""
    atomic_write_text(path, "".join(to_json(r, indent=None) + "\n" for r in records))


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
        f.write(to_json(record, indent=None) + "\n")
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | os.PathLike, where: str | None = None) -> Iterator[tuple[int, dict, str]]:
    """``(line_number, object, "FILE:LINE")`` for each non-blank line of a JSONL input file.

    Raises ``ValueError`` naming the file and line (``where`` replaces the file in messages) for a
    line that is not JSON or not a JSON object; for reading user data, where every line counts.
    """
    path = Path(path)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where or path}:{i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{at}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{at}: expected a JSON object")
        yield i, obj, at


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
