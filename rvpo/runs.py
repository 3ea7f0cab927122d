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
import csv
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

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
    for part in root.parts:
        if len(os.fsencode(part)) > 255:
            raise RunDirError(f"cannot create a run directory under {str(root)[:80]}...: the path component "
                              f"{part[:40]}... is {len(os.fsencode(part))} bytes (at most 255)")
    probe = root
    while not _exists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    if _exists(probe) and not probe.is_dir():
        raise RunDirError(f"cannot create a run directory under {root}: {probe} is not a folder")
    if _exists(probe) and not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot create a run directory under {root}: {probe} is not writable")
    return root


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, what: str = "run directory") -> Iterator[Path]:
    """Hold an exclusive advisory lock (``fcntl.flock``) on ``<run_dir>/.rvpo.lock`` for the body.

    A second holder fails at once with :class:`RunDirError` ("in use by another process") instead of
    both writing the same run. The lock file stays (an empty marker); the lock dies with the process.
    """
    import fcntl  # deferred: POSIX only (absent on Windows; `import rvpo.cli` imports this module)

    path = Path(run_dir) / ".rvpo.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirError(f"{what} {run_dir}: cannot create the lock file: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{what} {run_dir} is in use by another rvpo process (lock {path.name}); "
                              "wait for it to finish") from None
        yield path
    finally:
        os.close(fd)


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``.

    The file gets the mode a plain ``open(path, "w")`` would give (``0666 & ~umask``, usually
    0644), not the 0600 of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def json_safe(obj: Any) -> Any:
    """Copy of ``obj`` with every non-finite float (NaN, +-inf) replaced by ``None``, recursively through
    dicts, lists and tuples (numpy / torch scalars become floats): the project's one NaN cleaner."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0 and getattr(obj, "dtype", None) is not None:
        return json_safe(obj.item())  # numpy / torch scalars
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj``: secrets redacted, NaN/inf written as ``null``, other objects as ``str``."""
    return json.dumps(json_safe(redact(obj)), indent=indent, default=str, allow_nan=False)


def csv_text(rows: list[dict]) -> str:
    """CSV text of ``rows`` with the union of their keys as columns, in first-seen order (None and
    non-finite floats as empty cells)."""
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


class JsonRecordError(ValueError):
    """A JSON or JSON Lines input that cannot be read; ``str()`` is ``"FILE:LINE: reason (detail)"``.

    Fields for callers that word their own messages: ``file`` (the name used in messages), ``line``
    (1-based; ``None`` for an error about the whole file, such as its encoding), ``reason`` (one of
    ``INVALID_JSON``, ``NOT_AN_OBJECT``, ``BAD_ARRAY``, ``NOT_UTF8``) and ``detail``.
    """

    INVALID_JSON = "invalid JSON"
    NOT_AN_OBJECT = "expected a JSON object"
    BAD_ARRAY = "bad JSON array"
    NOT_UTF8 = "not UTF-8 text"

    def __init__(self, file: str, line: int | None, reason: str, detail: str = ""):
        self.file, self.line, self.reason, self.detail = file, line, reason, detail
        super().__init__(f"{self.where}: {self.why}")

    @property
    def where(self) -> str:
        """``"FILE:LINE"`` (or ``"FILE"`` for a whole-file error)."""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @property
    def why(self) -> str:
        """The message without its place: ``"reason (detail)"``."""
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


class JsonRecord(NamedTuple):
    """One record of :func:`iter_json_records`.

    ``line``: the 1-based line where the record starts. ``position``: the record's place in the
    file, stable whatever the other records hold: its 1-based element number in a JSON array, its
    line number in JSON Lines (one record a line). ``value``: the decoded record (``None`` when
    ``error`` is set). ``where``: ``"FILE:LINE"``. ``error``: a :class:`JsonRecordError` for a record
    that could not be read (only with ``on_error="yield"``), else ``None``.
    """

    line: int
    position: int
    value: Any
    where: str
    error: JsonRecordError | None = None


_JSON_WS = " \t\r\n"


def iter_json_records(path: str | os.PathLike, *, where: str | None = None, objects: bool = True,
                      on_error: Literal["raise", "yield"] = "raise") -> Iterator[JsonRecord]:
    """The records of a JSON array file or a JSON Lines file, each with its true line number.

    A file whose first non-blank character is ``[`` is one JSON array (its elements may span lines);
    any other file is JSON Lines: one value per ``\\n``-separated line, blank lines skipped.
    ``where`` replaces the path in messages (e.g. ``"--responses r.jsonl"``); ``objects=True``
    requires every record to be a JSON object.

    ``on_error="raise"`` (default): the first bad record raises :class:`JsonRecordError` (a
    ``ValueError``) ``"FILE:LINE: invalid JSON (... at column C)"`` or ``"FILE:LINE: expected a JSON
    object (got list)"``. ``on_error="yield"``: a bad record is yielded with ``error`` set (and
    ``value=None``) and reading goes on, so that a caller can skip and count bad lines. Errors no
    record boundary survives always raise: text that is not UTF-8 (``"FILE: not UTF-8 text (byte B,
    line L)"``) and a broken array (a syntax error inside it, a missing ``]``, text after it).
    The file is read when this is called: a missing file raises ``OSError`` here.
    """
    if on_error not in ("raise", "yield"):
        raise ValueError(f"on_error must be 'raise' or 'yield', got {on_error!r}")
    path = Path(path)
    name = str(path) if where is None else where
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise JsonRecordError(name, None, JsonRecordError.NOT_UTF8, f"byte {e.start}, line {line}") from None
    text = text.removeprefix("\ufeff")
    records = _array_records(text, name) if text.lstrip(_JSON_WS).startswith("[") else _line_records(text, name)
    return _checked(records, name, objects, on_error == "raise")


def _checked(records: Iterator[JsonRecord], name: str, objects: bool, raise_: bool) -> Iterator[JsonRecord]:
    for rec in records:
        if rec.error is None and objects and not isinstance(rec.value, dict):
            err = JsonRecordError(name, rec.line, JsonRecordError.NOT_AN_OBJECT, f"got {type(rec.value).__name__}")
            rec = rec._replace(value=None, error=err)
        if rec.error is not None and raise_:
            raise rec.error
        yield rec


def _line_records(text: str, name: str) -> Iterator[JsonRecord]:
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield JsonRecord(i, i, json.loads(line), f"{name}:{i}")
        except json.JSONDecodeError as e:
            err = JsonRecordError(name, i, JsonRecordError.INVALID_JSON, f"{e.msg} at column {e.colno}")
            yield JsonRecord(i, i, None, err.where, err)


def _array_records(text: str, name: str) -> Iterator[JsonRecord]:
    decode = json.JSONDecoder().raw_decode
    n, line, counted = len(text), 1, 0  # line of offset `counted`, advanced incrementally (no rescans)

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line, counted = line + text.count("\n", counted, pos), pos
        return line

    def skip_ws(pos: int) -> int:
        while pos < n and text[pos] in _JSON_WS:
            pos += 1
        return pos

    def fail(pos: int, detail: str) -> JsonRecordError:
        return JsonRecordError(name, line_at(pos), JsonRecordError.BAD_ARRAY, detail)

    pos = skip_ws(skip_ws(0) + 1)
    position = 0
    if pos < n and text[pos] == "]":
        pos += 1
    else:
        while True:
            if pos >= n:
                raise fail(pos, "the file ends before its closing ']'")
            try:
                value, end = decode(text, pos)
            except json.JSONDecodeError as e:
                raise JsonRecordError(name, e.lineno, JsonRecordError.INVALID_JSON,
                                      f"{e.msg} at column {e.colno}") from None
            position += 1
            at = line_at(pos)
            yield JsonRecord(at, position, value, f"{name}:{at}")
            pos = skip_ws(end)
            if pos < n and text[pos] == "]":
                pos += 1
                break
            if pos < n and text[pos] != ",":
                raise fail(pos, f"expected ',' or ']' after element {position}")
            pos = skip_ws(pos + 1)
            if pos < n and text[pos] == "]":
                raise fail(pos, f"a trailing ',' after element {position}")
    pos = skip_ws(pos)
    if pos < n:
        raise fail(pos, "text after the closing ']'; a file that starts with '[' is one JSON array")


class CorruptFileError(ValueError):
    """A file rvpo wrote (metrics, checkpoint) cannot be read; the message names the file (and line)."""


_WARNED: set[tuple[str, int]] = set()


def read_jsonl(path: str | os.PathLike, warn: Any = None) -> list[dict]:
    """Read a JSONL file rvpo wrote. A torn last line (a crash mid-write) is skipped with a warning
    naming the file and line (once per file and line, through ``warn``, default stderr); any other
    bad line raises :class:`CorruptFileError` naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                if (str(path), i) not in _WARNED:
                    _WARNED.add((str(path), i))
                    msg = f"warning: {path}:{i}: skipping an unreadable last line (a write cut short?): {line[:60]!r}"
                    (warn or (lambda m: print(f"rvpo: {m}", file=__import__("sys").stderr)))(msg)
                break
            raise CorruptFileError(f"{path}:{i}: invalid JSON: {e}") from None
        if not isinstance(value, dict):
            raise CorruptFileError(f"{path}:{i}: expected a JSON object, got {type(value).__name__}")
        out.append(value)
    return out
