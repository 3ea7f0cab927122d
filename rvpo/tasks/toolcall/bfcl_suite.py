"""A seeded suite of candidate call lists for BFCL entries, and BFCL's own checker as an oracle.

Used by ``tests/test_bfcl_oracle.py`` (a sample) and ``benchmarks/bfcl_agreement.py`` (all
entries): for each entry, accepted answers (the gold, and random other accepted values) and single
edits of them: wrong value, wrong type, int<->float, bool<->int, string case/spacing/punctuation,
an omitted parameter, an extra parameter, a dict key or list item changed, swapped call order,
a wrong function name, a call dropped or duplicated.

``reference_checker()`` imports ``bfcl_eval``'s ``ast_checker`` (installed ``--no-deps``): its
``constants.model_config`` module imports every vendor SDK, so it is replaced by a stub whose
models all keep dots in function names (``underscore_to_dot=False``), the case of a model that
writes the name itself.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

from rvpo.runs import iter_json_records
from rvpo.tasks.toolcall.bfcl import check, is_irrelevance, language
from rvpo.tasks.toolcall.loaders import _bfcl_gold, resolve_bfcl_file
from rvpo.tasks.toolcall.rewards import parse_output, render_output

Call = dict[str, Any]
Entry = tuple[str, list[dict[str, Any]], list[dict[str, Any]]]  # (id, functions, possible answer)


class _KeepDots:
    underscore_to_dot = False


class _AnyModel(dict):
    def __getitem__(self, key: str) -> _KeepDots:
        return _KeepDots()


def reference_checker() -> tuple[Callable[..., bool] | None, str]:
    """``(fn(functions, calls, answer, category) -> bool, "")`` from bfcl-eval, or ``(None, reason)``."""
    name = "bfcl_eval.constants.model_config"
    stub = types.ModuleType(name)
    stub.MODEL_CONFIG_MAPPING = _AnyModel()
    saved = sys.modules.get(name)
    sys.modules[name] = stub
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    except ImportError as e:
        return None, f"bfcl_eval's ast_checker is not importable ({e}); pip install --no-deps bfcl-eval==2026.3.23"
    finally:
        if saved is not None:
            sys.modules[name] = saved
        else:
            sys.modules.pop(name, None)
    langs = {"python": Language.PYTHON, "java": Language.JAVA, "javascript": Language.JAVASCRIPT}

    def check(functions: list, calls: list[Call], answer: list, category: str) -> bool:
        output = [{c["name"]: copy.deepcopy(c["parameters"])} for c in calls]
        res = ast_checker(copy.deepcopy(functions), output, copy.deepcopy(answer), langs[language(category)],
                          category, "rvpo-model")
        return bool(res["valid"])

    return check, ""


def rvpo_verdict(functions: list, calls: list[Call], answer: list, category: str) -> bool:
    """rvpo's verdict through a completion's path: render the calls, ``parse_output``, ``check``.

    An empty call list renders as an empty block, which does not parse (a blank line); BFCL's
    decoder gives ``[]`` for it, so that case is checked as ``[]`` directly.
    """
    if not calls:
        return check(functions, [], answer, category).valid
    parsed = parse_output(render_output(calls, think="t"))
    return parsed.ok and check(functions, parsed.tool_calls, answer, category).valid


def load_entries(category: str) -> list[Entry]:
    """The entries of a single-turn AST category from the installed bfcl-eval (id order)."""
    answers = {r.value["id"]: r.value["ground_truth"]
               for r in iter_json_records(resolve_bfcl_file(category, answers=True))}
    questions = [r.value for r in iter_json_records(resolve_bfcl_file(category))]
    return [(q["id"], q["function"], answers[q["id"]]) for q in questions]


# ----------------------------------------------------------------------------- edits of one value


def _string_variants(s: str, rng: random.Random) -> list[str]:
    out = [s.upper(), s.lower(), s.title(), f" {s}", s.replace(" ", ""), s.replace(" ", "-"), s.replace(" ", "_"),
           s + ".", s + "!", s.replace(",", ""), s.replace("'", '"'), s + "x", s[:-1] if len(s) > 1 else s + "y",
           f"'{s}'", s.replace("-", " ")]
    return [rng.choice(out) for _ in range(2)]


def _value_edits(v: Any, rng: random.Random) -> list[tuple[str, Any]]:
    """(label, edited value) pairs for one parameter value (some may still be accepted)."""
    if isinstance(v, bool):
        return [("bool->int", int(v)), ("bool_flip", not v), ("bool->str", str(v).lower())]
    if isinstance(v, int):
        return [("int->float", float(v)), ("wrong_value", v + rng.choice([1, -1, 10])), ("int->str", str(v))] + (
            [("int->bool", bool(v))] if v in (0, 1) else [])
    if isinstance(v, float):
        out = [("float->int", int(v)), ("wrong_value", v + 0.5), ("float->str", str(v))]
        return out
    if isinstance(v, str):
        return [(f"string_{i}", s) for i, s in enumerate(_string_variants(v, rng))] + [
            ("wrong_value", v + " extra"), ("str->int", 7)]
    if isinstance(v, list):
        out = [("list_reversed", v[::-1]), ("list->str", json.dumps(v))]
        if v:
            out.append(("list_drop", v[:-1]))
            i = rng.randrange(len(v))
            out += [(f"item_{lab}", v[:i] + [e] + v[i + 1:]) for lab, e in _value_edits(v[i], rng)[:2]]
        return out + [("list_add", v + [v[0] if v else 1])]
    if isinstance(v, dict):
        out = [("dict->str", json.dumps(v)), ("dict_extra_key", {**v, "extra_key": 1})]
        if v:
            k = rng.choice(list(v))
            out.append(("dict_drop_key", {x: y for x, y in v.items() if x != k}))
            out += [(f"dict_{lab}", {**v, k: e}) for lab, e in _value_edits(v[k], rng)[:2]]
        return out
    return [("none->str", "None")]


# ----------------------------------------------------------------------------- candidates


def _pick(values: list[Any], rng: random.Random, required: bool) -> Any:
    choices = [v for v in values if not (required and v == "")] or values
    return rng.choice(choices)


def _random_accepted(answer: list, functions: list, rng: random.Random) -> list[Call]:
    """One accepted answer with random choices among the accepted values (dict keys too)."""
    schemas = {f["name"]: f for f in functions}
    calls = []
    for entry in answer:
        (name, params), = entry.items()
        req = set((schemas.get(name, {}).get("parameters") or {}).get("required") or [])
        out = {}
        for k, vals in params.items():
            v = _pick(vals, rng, k in req) if vals else ""
            if isinstance(v, dict):
                v = {dk: rng.choice(dv) for dk, dv in v.items() if isinstance(dv, list) and dv}
                v = {dk: dv for dk, dv in v.items() if dv != ""}
            if v == "" and k not in req:
                continue
            out[k] = v
        calls.append({"name": name, "parameters": out})
    return calls


def candidates(functions: list, answer: list, rng: random.Random, n_edits: int = 12) -> Iterator[tuple[str, list[Call]]]:
    """``(label, calls)`` candidates for one entry: accepted answers and up to ``n_edits`` single edits."""
    gold, _ = _bfcl_gold(answer, "candidates", functions)
    yield "gold", gold
    alt = _random_accepted(answer, functions, rng)
    yield "accepted_random", alt
    edits: list[tuple[str, list[Call]]] = []
    base = rng.choice([gold, alt])
    i = rng.randrange(len(base))
    call = base[i]

    def with_call(new: Call) -> list[Call]:
        return base[:i] + [new] + base[i + 1:]

    params = call["parameters"]
    for k, v in params.items():
        for lab, e in _value_edits(v, rng):
            edits.append((lab, with_call({"name": call["name"], "parameters": {**params, k: e}})))
        edits.append(("omit_param", with_call({"name": call["name"], "parameters": {x: y for x, y in params.items() if x != k}})))
    schema = next((f for f in functions if f["name"] == call["name"]), {})
    props = (schema.get("parameters") or {}).get("properties") or {}
    for k in props:
        if k not in params:  # an optional parameter the gold leaves out, given a plausible value
            default = props[k].get("default", "x") if isinstance(props[k], dict) else "x"
            edits.append(("add_schema_param", with_call({"name": call["name"], "parameters": {**params, k: default}})))
    edits.append(("extra_param", with_call({"name": call["name"], "parameters": {**params, "extra_param": 1}})))
    others = [f["name"] for f in functions if f["name"] != call["name"]]
    edits.append(("wrong_function", with_call({"name": rng.choice(others) if others else call["name"] + "_x",
                                               "parameters": params})))
    edits.append(("function_case", with_call({"name": call["name"].upper(), "parameters": params})))
    if len(base) > 1:
        edits.append(("swapped_order", base[::-1]))
        shuffled = base[:]
        rng.shuffle(shuffled)
        edits.append(("shuffled_order", shuffled))
        edits.append(("drop_call", base[:i] + base[i + 1:]))
    edits.append(("duplicate_call", base + [call]))
    edits.append(("no_calls", []))
    rng.shuffle(edits)
    yield from edits[:n_edits]


def suite(categories: list[str], seed: int = 0, per_category: int | None = None,
          n_edits: int = 12) -> Iterator[tuple[str, str, str, list, list, list[Call]]]:
    """``(category, entry id, label, functions, answer, calls)`` over the categories' entries.

    ``per_category`` keeps a seeded sample of that many entries per category (None = all).
    """
    for cat in categories:
        if is_irrelevance(cat) or language(cat) != "python":
            continue
        rng = random.Random(f"bfcl-suite-{seed}-{cat}")
        entries = load_entries(cat)
        if per_category is not None and per_category < len(entries):
            entries = rng.sample(entries, per_category)
        for eid, functions, answer in entries:
            for label, calls in candidates(functions, answer, rng, n_edits):
                yield cat, eid, label, functions, answer, copy.deepcopy(calls)
