"""Typed-dataclass plumbing for configs: field docstrings, dotted leaf fields, value coercion.

Field docstrings are the string literals right under each field (the convention of
``rvpo.core.AdvantageParams``), read from the source with ``ast``, or a field's
``metadata["help"]`` (``rvpo.core.AdvantageSpec``), so help text and
docs have a single source. Coercion turns YAML values or command-line strings into the field's
type and raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A bad config value or key; the message names the field (and the file, for YAML)."""


# ----------------------------------------------------------------------------- field docs


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field_name: docstring}`` from the string literal under each field in ``cls``'s source, or
    from the field's ``metadata["help"]`` (the convention of :class:`rvpo.core.AdvantageSpec`)."""
    helps = {f.name: " ".join(f.metadata["help"].split()) for f in fields(cls) if "help" in f.metadata}
    if helps:
        return helps
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def iter_fields(cls: type, prefix: str = ""):
    """Yield ``(dotted_name, type, default, doc)`` for every leaf field of the tree."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        yield f"{prefix}{f.name}", tp, default, docs.get(f.name, "")


# ----------------------------------------------------------------------------- coercion


def type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def coerce(name: str, tp: Any, value: Any, from_string: bool, what: str | None = None) -> Any:
    """Convert ``value`` to the field type ``tp`` (strings from the command line are parsed)."""
    origin, args = get_origin(tp), get_args(tp)
    what = what or describe_type(tp)
    bad = ConfigError(f"config field {name!r}: expected {what}, got {value!r}")
    if type(None) in args:  # Optional[X]
        if value is None or (from_string and str(value).strip().lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(name, inner[0], value, from_string, what)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config field {name!r}: expected {type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if from_string and isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise bad
        return tuple(coerce(name, args[0], v, from_string) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_string and isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if from_string and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is dict:
        if from_string and isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError:
                raise bad from None
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad
        return dict(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def describe_type(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if type(None) in args:
        return describe_type([a for a in args if a is not type(None)][0]) + " or null"
    if origin is tuple:
        return f"a list of {describe_type(args[0])}"
    if origin is Literal:
        return type_name(tp)
    return {bool: "true or false", int: "an int", float: "a number", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))
