"""Reading files a user names (configs, experiment files, answers): one-line errors, never a hang.

    check_regular_file(path, "--responses")          # -> Path, or ValueError naming the path
    read_user_yaml(path, "config file", ConfigError)  # YAML with duplicate keys refused (file:line)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from rvpo.runs import _exists


def check_regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a readable regular file; else ``ValueError("<what> <path>: ...")``.

    Checked without opening it, so a FIFO or a device never blocks (a read would wait forever).
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{what} {path}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path}: not a regular file (a FIFO, socket or device); expected a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{what} {path}: cannot read: permission denied")
    return path


class _DuplicateKeyError(ValueError):
    pass


def _strict_yaml_loader() -> type:
    """A ``yaml.SafeLoader`` that refuses a mapping with a repeated key (YAML says keys are unique)."""

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
                hash(key)
            except Exception:  # noqa: BLE001 - the regular constructor reports odd keys
                continue
            if key in seen and key != "<<":
                raise _DuplicateKeyError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                         f"(first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def read_user_yaml(path: str | os.PathLike, what: str = "config file", error: type[Exception] = ValueError) -> Any:
    """Parse a user's YAML file; every problem raises ``error`` with one line naming the file (and line).

    Refused: a missing path, a folder, a FIFO or device (never opened, so never a hang), an
    unreadable or non-UTF-8 file, invalid YAML, and a mapping with a duplicate key (``name: 1``
    twice; plain YAML loaders keep the last one silently).
    """
    path = Path(path)
    if not _exists(path):
        raise error(f"{what} {str(path)!r} not found")
    try:
        check_regular_file(path, what)
        raw = path.read_bytes()
    except ValueError as e:
        raise error(f"{path}: {str(e).removeprefix(f'{what} {path}: ')}") from None
    except OSError as e:
        raise error(f"{what} {path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"{path}: not a UTF-8 text file (byte {e.start}, line {line}); expected YAML") from None
    if "\x00" in text:
        raise error(f"{path}: a binary file (NUL bytes), expected YAML")
    try:
        return yaml.load(text, Loader=_strict_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as e:
        raise error(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: invalid YAML: {e}".replace("\n", " ")) from None
