"""The one settings layer: how every rvpo settings object is documented, read, checked and listed.

A settings object is a (usually frozen) dataclass: ``TrainConfig`` and its sections, ``AdvantageSpec``,
each task's ``Options``, ``JudgeConfig``, ``SimConfig`` and the parts of an experiment YAML. This
module holds what they share, so that a knob has one default, one doc and one way to fail:

- :func:`field_docs`: a field's doc is the string literal right under it (read from the source with
  ``ast``) or its ``metadata["help"]``; :func:`iter_fields` walks nested sections as dotted leaves.
- :func:`coerce`: a YAML value or command-line string becomes the field's type, or
  :class:`ConfigError` names the field; :func:`load_settings` builds a dataclass from a mapping
  (unknown keys refused, values coerced, then the class's own ``__post_init__`` checks).
- :func:`unknown_key_error`: the one "did you mean" (difflib) for every unknown key or name.
- :func:`check_rules` with :func:`integer`, :func:`number`, :func:`optional`: range rules
  ``name -> (what is expected, predicate)``, failing as ``<field>: expected <what>, got <value>``.
- :func:`format_help`: the one Markdown help table (field, type, default, meaning), for
  ``rvpo train --help-config`` and every task's options.
- :func:`borrow`: a field whose default and doc come from another settings class (the rubric task's
  judge options are :class:`rvpo.judge.JudgeConfig` fields).

This module imports nothing from rvpo: every layer may use it.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, fields
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad settings value or key; the message names the field (and the file, for YAML)."""


def config_field(name: str) -> str:
    """How ``rvpo train`` errors name a field: ``config field 'lora.r'`` (the default ``label``)."""
    return f"config field {name!r}"


# ----------------------------------------------------------------------------- did you mean


def closest(key: str, names: Iterable[str]) -> str | None:
    """The name in ``names`` closest to ``key`` (difflib, ratio >= 0.6), or None."""
    near = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return near[0] if near else None


def unknown_key_error(kind: str, key: str, known: Sequence[str], *, where: str = "", also: Sequence[str] = (),
                      spell: Mapping[str, str] | None = None, error: type[Exception] = ConfigError) -> Exception:
    """The error for an unknown ``key`` among the ``known`` names, with the closest one when there is one.

    ``{where}unknown {kind} 'key' (did you mean 'near'?)``, or, when nothing is close,
    ``{where}unknown {kind} 'key'; known {kind}s: a, b`` (``(none)`` for no names). ``also``: more names
    matched but not listed (aliases); ``spell``: how the caller's layer writes a name (the message
    shows ``spell.get(name, name)``, matching is on the names themselves); ``error``: the class raised.
    """
    show = (lambda n: spell.get(n, n)) if spell else (lambda n: n)
    near = closest(key, [*known, *also])
    hint = (f" (did you mean {show(near)!r}?)" if near
            else f"; known {kind}s: {', '.join(show(n) for n in known) or '(none)'}")
    return error(f"{where}unknown {kind} {show(key)!r}{hint}")


def check_keys(kind: str, keys: Iterable[Any], known: Sequence[str], **how: Any) -> None:
    """Raise :func:`unknown_key_error` (``how``: its keywords) for the first of ``keys`` not in ``known``."""
    for key in keys:
        if key not in known:
            raise unknown_key_error(kind, str(key), known, **how)


# ----------------------------------------------------------------------------- field docs


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field_name: doc}`` of dataclass ``cls``: a field's ``metadata["help"]``, else the string literal
    under the field in ``cls``'s source (whitespace collapsed); fields with neither are left out."""
    docs = {f.name: " ".join(f.metadata["help"].split()) for f in fields(cls) if "help" in f.metadata}
    if len(docs) == len(fields(cls)):
        return docs  # no source needed (it may not exist: classes made at run time)
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, nxt in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs.setdefault(node.target.id, " ".join(nxt.value.value.split()))
    return docs


def field_default(f: dataclasses.Field) -> Any:
    """The default of field ``f`` (its factory called), or ``MISSING``."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def iter_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any, str]]:
    """``(dotted_name, type, default, doc)`` for every leaf field of the dataclass tree ``cls``
    (a field whose type is a dataclass is a section: its fields follow as ``section.name``)."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, field_default(f), docs.get(f.name, "")


def dotted_get(obj: Any, name: str) -> Any:
    """The value of dotted field ``name`` (``"lora.r"``) of a settings tree."""
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- coercion


def describe_type(tp: Any) -> str:
    """A field type in words, as help tables and errors show it (``an int or null``, ``a list of a string``)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        return " or ".join([describe_type(a) for a in args if a is not type(None)] + ["null"] * _optional(tp))
    if origin is tuple:
        return f"a list of {describe_type(args[0])}"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    return {bool: "true or false", int: "an int", float: "a number", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))


def _optional(tp: Any) -> bool:
    return type(None) in get_args(tp)


def _inner(tp: Any) -> Any:
    """``X`` of ``X | None`` (the first arm that is not None)."""
    return next(a for a in get_args(tp) if a is not type(None))


class _Mismatch(Exception):
    """A value that does not fit a type (turned into a :class:`ConfigError` naming the field)."""


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _to_bool(value: Any, from_string: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_string and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise _Mismatch


def _number(value: Any, from_string: bool, cast: Callable[[Any], Any]) -> Any:
    """``cast(value)`` for a real number, or a string (from the command line, or YAML's ``1e-4``)."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or (from_string and isinstance(value, str))):
        raise _Mismatch
    try:
        return cast(value)
    except ValueError:
        raise _Mismatch from None


def _to_int(value: Any, from_string: bool) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise _Mismatch
    return _number(value, from_string, int)


def _to_float(value: Any, from_string: bool) -> float:
    return _number(value, True, float)  # YAML reads "1e-4" as a string: always parsed


def _to_str(value: Any, from_string: bool) -> str:
    if not isinstance(value, str):
        raise _Mismatch
    return value


def _to_dict(value: Any, from_string: bool) -> dict:
    if from_string and isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError:
            raise _Mismatch from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _Mismatch
    return dict(value)


_CONVERT: dict[Any, Callable[[Any, bool], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str,
                                                    dict: _to_dict}
"""Converters of the plain field types; other types (``Any``, unions of several types) pass unchanged,
left to the class's own checks."""


def coerce(name: str, tp: Any, value: Any, from_string: bool = False, what: str | None = None,
           label: Callable[[str], str] = config_field) -> Any:
    """``value`` as field type ``tp``: ``bool``, ``int``, ``float``, ``str``, ``dict``, ``Literal``,
    ``tuple[X, ...]`` and ``X | None``; other types pass unchanged.

    ``from_string``: the value came from the command line (``"8"``, ``"true"``, ``"a,b"``, ``"null"``
    are parsed). A mismatch raises :class:`ConfigError` ``"{label(name)}: expected {what}, got {value!r}"``
    (``what`` defaults to :func:`describe_type`; an item of a list is named by its own type).
    """
    what = what or describe_type(tp)
    if _optional(tp):
        if value is None or (from_string and str(value).strip().lower() in ("none", "null", "")):
            return None
        return coerce(name, _inner(tp), value, from_string, what, label)
    origin, args = get_origin(tp), get_args(tp)
    try:
        if origin is Literal:
            if value not in args:
                raise _Mismatch
            return value
        if origin is tuple:
            if from_string and isinstance(value, str):
                value = [v for v in (s.strip() for s in value.split(",")) if v]
            if not isinstance(value, (list, tuple)):
                raise _Mismatch
            return tuple(coerce(name, args[0], v, from_string, label=label) for v in value)
        convert = _CONVERT.get(tp)
        return value if convert is None else convert(value, from_string)
    except _Mismatch:
        raise ConfigError(f"{label(name)}: expected {what}, got {value!r}") from None


def load_settings(cls: type[T], values: Mapping[str, Any], *, kind: str = "field", where: str = "",
                  label: Callable[[str], str] = config_field, from_string: bool = False,
                  error: type[Exception] = ConfigError) -> T:
    """``cls(**values)`` for settings dataclass ``cls``, each value coerced to its field's type.

    An unknown key raises :func:`unknown_key_error` (``kind``, ``where``, ``error``); a value of the
    wrong type raises :class:`ConfigError` named by ``label``; ``cls``'s own checks then run as usual.
    """
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.init]
    check_keys(kind, values, known, where=where, error=error)
    return cls(**{k: coerce(k, hints[k], v, from_string, label=label) for k, v in values.items()})


# ----------------------------------------------------------------------------- range rules

Rule = tuple[str, Callable[[Any], bool]]
"""``(what is expected, predicate)``: a range rule; the predicate is False for a value of another type."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(lo: int, hi: int | None = None) -> Rule:
    """An int ``>= lo`` (and ``<= hi``): ``"an int >= 1"``, ``"an int in [0, 20]"``."""
    what = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"
    return what, lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi)


def number(lo: float = -math.inf, hi: float = math.inf, *, above: bool = False, below: bool = False) -> Rule:
    """A finite real in ``[lo, hi]`` (``above``/``below``: the bound itself excluded): ``"a finite number
    > 0"``, ``"a number in [0, 1)"``."""
    if math.isfinite(hi):
        what = f"a number in {'(' if above else '['}{lo:g}, {hi:g}{')' if below else ']'}"
    else:
        what = f"a finite number {'>' if above else '>='} {lo:g}"

    def ok(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > lo if above else v >= lo) and (v < hi if below else v <= hi))

    return what, ok


def optional(rule: Rule) -> Rule:
    """``rule``, or None."""
    what, ok = rule
    return f"{what} or None", lambda v: v is None or ok(v)


def check_rules(obj: Any, rules: Mapping[str, Rule], label: Callable[[str], str] = config_field) -> None:
    """Raise :class:`ConfigError` ``"{label(name)}: expected {what}, got {value!r}"`` for the first
    dotted field ``name`` of ``obj`` that breaks its rule (tuples shown as lists)."""
    for name, (what, ok) in rules.items():
        value = dotted_get(obj, name)
        if not ok(value):
            raise ConfigError(f"{label(name)}: expected {what}, got {_plain(value)!r}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ----------------------------------------------------------------------------- help and borrowed fields


def format_help(cls: type, prefix: str = "") -> str:
    """A Markdown table of the leaf fields of ``cls``: ``| field | type | default | meaning |`` with
    ``prefix`` before each name (``task_options.``); empty when ``cls`` has no fields."""
    rows = [f"| `{name}` | {describe_type(tp)} | `{_plain(default)}` | {_cell(doc)} |"
            for name, tp, default, doc in iter_fields(cls, prefix)]
    return "\n".join(["| field | type | default | meaning |", "| --- | --- | --- | --- |", *rows]) if rows else ""


def _cell(text: str) -> str:
    r"""``text`` safe in a Markdown table cell (``|`` written ``\|``)."""
    return text.replace("|", "\\|")


def borrow(source: type, name: str, default: Any = MISSING, *, why: str = "", note: str = "") -> Any:
    """A dataclass field that is field ``name`` of settings class ``source`` under another name: its
    doc (then ``note``, what it also does here) and default come from ``source`` (one definition). A
    different ``default`` needs its reason ``why``, which the doc then states. Read the values back
    with :func:`borrowed_values`; the borrowing class declares the field's type (a test compares)."""
    f = next(f for f in fields(source) if f.name == name)
    doc = " ".join(filter(None, (field_docs(source).get(name, ""), note)))
    if default is MISSING:
        default = field_default(f)
    elif not why:
        raise TypeError(f"borrow: a default other than {source.__name__}.{name}'s needs its reason (why=...)")
    else:
        doc += f" Default here {default!r} ({source.__name__}'s: {field_default(f)!r}): {why}."
    return dataclasses.field(default=default, metadata={"help": doc, "borrowed": (source, name)})


def borrowed_values(obj: Any, source: type) -> dict[str, Any]:
    """``{source field name: value}`` of the fields of dataclass ``obj`` borrowed from ``source``."""
    return {f.metadata["borrowed"][1]: getattr(obj, f.name) for f in fields(obj)
            if f.metadata.get("borrowed", (None,))[0] is source}
