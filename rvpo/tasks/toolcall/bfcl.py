"""BFCL's single-turn AST check of parsed tool calls, and BFCL-style summaries.

Written from the rules of BFCL's ``ast_checker`` (``bfcl-eval`` 2026.3.23,
``bfcl_eval/eval_checker/ast_eval/ast_checker.py``; read, not copied), and checked against it by
``tests/test_bfcl_oracle.py`` and ``benchmarks/bfcl_agreement.py``. The input is the call list of
:func:`rvpo.tasks.toolcall.rewards.parse_output` (``[{"name": str, "parameters": dict}]``), the
same structure the ToolRL training reward reads.

A BFCL possible answer is ``[{function name: {param: [accepted values]}}]``. Rules, per call:

- the function name must equal the expected one; every schema-required parameter must be given;
  every given parameter must be in the schema and in the answer; every answer parameter that is
  not given must list ``""`` among its accepted values ("may be omitted");
- types are strict (``type(v) is T``: a bool is not an int, a float is not an int) with BFCL's
  exceptions: an int given for a ``float`` parameter counts as that float; a value of the type of
  the first non-``""`` accepted value counts (BFCL's "variable" case, e.g. a variable name given as
  a string for an integer parameter), and is then compared with ``==``, unstandardised;
- values: strings (``string`` and ``any``) are compared after BFCL's standardisation (spaces and
  ``,./-_*^`` removed, lowercase, ``'`` -> ``"``); lists element-wise, standardising string
  elements; dicts key by key against per-key accepted lists (one level); lists of dicts dict by
  dict, same length and order; other values with ``==`` against the accepted list (so ``1 ==
  1.0``; in dicts and lists ``True == 1`` too, as in BFCL);
- ``parallel*`` categories: same number of calls, order-free, each expected call (in order)
  claims the first unclaimed call that passes (BFCL's greedy matching); ``multiple``: exactly one
  call, checked against the one expected; the rest (``simple_*``, ``live_simple``): exactly one
  call, checked against the first function schema.

Deliberate differences (see docs/toolcall.md, "BFCL"): function names are compared as written
(BFCL rewrites ``.`` to ``_`` for some API models, whose APIs forbid dots; an rvpo model writes the
name itself); inputs on which BFCL's checker raises (a non-dict item where a list of dicts is
expected) are invalid here; Java and JavaScript are refused (their values are source-code literals
that BFCL converts with its own parsers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Call = dict[str, Any]

PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool,
                                 "array": list, "tuple": list, "dict": dict, "any": str}
"""BFCL's Python type names -> the Python type a JSON-parsed value must have."""

NON_LIVE = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple")
LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
CATEGORIES = NON_LIVE + LIVE + IRRELEVANCE
"""The single-turn categories (AST and irrelevance) of the bfcl-eval wheel."""

_STD_RE = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class Verdict:
    """One BFCL check: ``valid``, and for a failure a message and BFCL's error type."""

    valid: bool
    error: str = ""
    kind: str = ""


_OK = Verdict(True)


def standardize(s: str) -> str:
    """BFCL's string standardisation: drop spaces and ``,./-_*^``, lowercase, ``'`` -> ``"``."""
    return _STD_RE.sub("", s).lower().replace("'", '"')


def _std(v: Any) -> Any:
    return standardize(v) if type(v) is str else v


def language(category: str) -> str:
    """``"java"``, ``"javascript"`` or ``"python"`` for a BFCL category name."""
    if "javascript" in category:
        return "javascript"
    return "java" if "java" in category else "python"


def is_irrelevance(category: str) -> bool:
    """True for the relevance-detection categories (success = no call made)."""
    return "irrelevance" in category


def _answer_type(accepted: Sequence[Any]) -> type | None:
    # The type of the first accepted value that is not "" (the "may be omitted" marker).
    for a in accepted:
        if a != "":
            return type(a)
    return None


def _items_typed(value: list, accepted: Sequence[Any], item_type: type) -> bool:
    """BFCL's one-level nested type check: some accepted value that is not a list, or a list
    under which every item has ``item_type`` or the type of that list's first non-"" item."""
    for a in accepted:
        if type(a) is not list:
            return True
        a_type = _answer_type(a)
        if all(type(x) is item_type or (a_type is not None and type(x) is a_type) for x in value):
            return True
    return False


def _dict_ok(value: Any, accepted: Sequence[Any]) -> bool:
    # Each accepted dict maps keys to accepted-value lists; one must take every given key
    # (standardised strings) and every key not given must accept "".
    if not isinstance(value, dict):
        return False
    for a in accepted:
        if a == "" or not isinstance(a, dict):
            continue
        if all(k in a and _std(v) in [_std(x) for x in a[k]] for k, v in value.items()) and \
                all(k in value or "" in vals for k, vals in a.items()):
            return True
    return False


def _list_dict_ok(value: list, accepted: Sequence[Any]) -> bool:
    for a in accepted:
        # "" (optional) has length 0, so it accepts the empty list, as in BFCL.
        if len(value) == len(a) and all(_dict_ok(v, [d]) for v, d in zip(value, a, strict=True)):
            return True
    return False


def _list_ok(value: list, accepted: Sequence[Any]) -> bool:
    # An accepted "" becomes [] here (BFCL iterates it as an empty sequence).
    return [_std(x) for x in value] in [[_std(y) for y in a] for a in accepted]


def check_value(param: str, value: Any, accepted: Sequence[Any], schema: Mapping[str, Any]) -> Verdict:
    """BFCL's type and value check of one Python parameter (``schema``: its JSON-schema entry)."""
    type_name = schema.get("type")
    if type_name not in PYTHON_TYPES:
        return Verdict(False, f"parameter {param!r}: unknown BFCL type {type_name!r}", "type_error:unknown")
    want = PYTHON_TYPES[type_name]
    item_type = None
    if type_name in ("array", "tuple"):
        item_type = PYTHON_TYPES.get((schema.get("items") or {}).get("type"))
    if type_name == "float" and type(value) is int:
        value = float(value)  # BFCL lets an int stand for a float (not the reverse)
    a_type = _answer_type(accepted)
    variable = a_type is not None and a_type is not want
    if type(value) is want:
        if item_type is not None and not _items_typed(value, accepted, item_type):
            return Verdict(False, f"parameter {param!r}: items of {value!r} are not all {item_type.__name__}",
                           "type_error:nested")
    elif a_type is not None and type(value) is a_type:
        variable = True
    else:
        return Verdict(False, f"parameter {param!r}: expected type {type_name}, got {type(value).__name__} "
                       f"({value!r})", "type_error:simple")
    if not variable:
        if want is dict:
            ok, kind = _dict_ok(value, accepted), "value_error:dict"
        elif want is list and item_type is dict:
            ok, kind = _list_dict_ok(value, accepted), "value_error:list_dict"
        elif want is str:
            ok, kind = standardize(value) in [standardize(a) for a in accepted if type(a) is str], "value_error:string"
        elif want is list:
            ok, kind = _list_ok(value, accepted), "value_error:list/tuple"
        else:
            ok, kind = value in accepted, "value_error:others"
    else:
        ok, kind = value in accepted, "value_error:others"
    if not ok:
        return Verdict(False, f"parameter {param!r}: {value!r} is not one of {list(accepted)!r}", kind)
    return _OK


def check_call(schema: Mapping[str, Any], call: Call, name: str, accepted: Mapping[str, Sequence[Any]]) -> Verdict:
    """One predicted call against one expected call ``name`` with ``accepted`` values per parameter."""
    if call["name"] != name:
        return Verdict(False, f"function {name!r} not called (got {call['name']!r})", "wrong_func_name")
    params = call["parameters"]
    spec = schema.get("parameters") or {}
    props = spec.get("properties") or {}
    for p in spec.get("required") or []:
        if p not in params:
            return Verdict(False, f"missing required parameter {p!r}", "missing_required")
    for p, v in params.items():
        if p not in props or p not in accepted:
            return Verdict(False, f"unexpected parameter {p!r}", "unexpected_param")
        verdict = check_value(p, v, accepted[p], props[p])
        if not verdict.valid:
            return verdict
    for p, vals in accepted.items():
        if p not in params and "" not in vals:
            return Verdict(False, f"parameter {p!r} not given and not optional", "missing_optional")
    return _OK


def _schema(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for f in functions:
        if f.get("name") == name:
            return f
    raise ValueError(f"BFCL entry: expected function {name!r} is not among the offered functions")


def check(functions: Sequence[Mapping[str, Any]], calls: Sequence[Call],
          answer: Sequence[Mapping[str, Mapping[str, Sequence[Any]]]], category: str) -> Verdict:
    """BFCL's AST verdict for the parsed ``calls`` of one entry of ``category``.

    Args:
        functions: the entry's function schemas (BFCL ``function``).
        calls: ``C`` parsed calls ``{"name", "parameters"}``.
        answer: BFCL's possible answer, ``E`` one-key dicts ``{name: {param: [accepted]}}``.
        category: e.g. ``"simple_python"``, ``"live_parallel_multiple"``.
    Raises NotImplementedError for Java/JavaScript categories.
    """
    if language(category) != "python":
        raise NotImplementedError(f"BFCL category {category!r}: Java/JavaScript values are source literals "
                                  "converted by BFCL's own parsers; rvpo checks Python categories only")
    expected = [next(iter(a.items())) for a in answer]
    if "parallel" in category:
        if len(calls) != len(expected):
            return Verdict(False, f"{len(calls)} calls, expected {len(expected)}", "wrong_count")
        claimed: set[int] = set()
        for i, (name, acc) in enumerate(expected):
            schema = _schema(functions, name)
            hit = next((j for j, c in enumerate(calls)
                        if j not in claimed and check_call(schema, c, name, acc).valid), None)
            if hit is None:
                return Verdict(False, f"no call matches expected call {i} ({name})", "cannot_find_match")
            claimed.add(hit)
        return _OK
    n_want = len(expected) if "multiple" in category else 1
    if len(calls) != n_want:
        return Verdict(False, f"{len(calls)} calls, expected {n_want}", "wrong_count")
    name, acc = expected[0]
    schema = _schema(functions, name) if "multiple" in category else functions[0]
    return check_call(schema, calls[0], name, acc)


def answer_from_accepted(accepted: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """rvpo's ``accepted`` column (``[{"name", "parameters"}]``) -> BFCL's possible-answer list."""
    return [{a["name"]: a["parameters"]} for a in accepted]


# ----------------------------------------------------------------------------- summaries


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(per_category: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """BFCL-style overall numbers from ``{category: (n_correct, n)}``.

    As BFCL's leaderboard: non-live simple = unweighted mean of simple_python/java/javascript
    present; non-live overall = unweighted mean of simple, multiple, parallel, parallel_multiple
    present; live overall = count-weighted mean of the live AST categories present; irrelevance
    per category. A group with none of its categories is None. BFCL counts a missing category as
    0 in its overall; here only the categories run are averaged (say which in the report).
    """
    acc = {c: h / n for c, (h, n) in per_category.items() if n}
    simple = _mean([acc[c] for c in ("simple_python", "simple_java", "simple_javascript") if c in acc])
    parts = [x for x in [simple] + [acc.get(c) for c in ("multiple", "parallel", "parallel_multiple")] if x is not None]
    live = [(per_category[c][0], per_category[c][1]) for c in LIVE if c in acc]
    return {
        "accuracy": acc,
        "non_live_simple": simple,
        "non_live_overall": _mean(parts),
        "live_overall": (sum(h for h, _ in live) / sum(n for _, n in live)) if live else None,
        "categories": sorted(acc),
    }
