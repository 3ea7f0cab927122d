"""rvpo's BFCL checker against BFCL's own ``ast_checker`` on a seeded perturbation suite.

Needs ``bfcl-eval`` installed (``pip install --no-deps bfcl-eval==2026.3.23``); its vendor-SDK
config module is stubbed by :func:`rvpo.tasks.toolcall.bfcl_suite.reference_checker`. The full
suite (every entry) is ``benchmarks/bfcl_agreement.py``.
"""

from __future__ import annotations

import collections

import pytest

from rvpo.tasks.toolcall.bfcl_suite import reference_checker, rvpo_verdict, suite
from rvpo.tasks.toolcall.loaders import BFCL_GROUPS

REF, WHY = reference_checker()
pytestmark = pytest.mark.skipif(REF is None, reason=WHY or "bfcl_eval not importable")

EDITS = ("gold", "accepted_random", "int->float", "float->int", "bool->int", "string_0", "omit_param",
         "extra_param", "add_schema_param", "swapped_order", "wrong_function", "wrong_value", "str->int")


def test_agrees_with_bfcl_on_every_candidate():
    """~11k candidates over the 8 Python AST categories: the verdicts are identical, none raises."""
    n = collections.Counter()
    valid = collections.Counter()
    labels = collections.Counter()
    diffs = []
    for cat, eid, label, functions, answer, calls in suite(list(BFCL_GROUPS["ast"]), seed=1, per_category=120):
        theirs = REF(functions, calls, answer, cat)
        mine = rvpo_verdict(functions, calls, answer, cat)
        n[cat] += 1
        valid[cat] += theirs
        labels[label] += 1
        if mine != theirs:
            diffs.append((cat, eid, label, theirs, calls))
    assert not diffs, f"{len(diffs)} disagreements, first: {diffs[:3]}"
    assert sum(n.values()) > 8000
    for cat in BFCL_GROUPS["ast"]:  # every category, with both verdicts well represented
        assert n[cat] >= 200 and 0.15 < valid[cat] / n[cat] < 0.6, (cat, n[cat], valid[cat])
    for label in EDITS:
        assert labels[label] >= 30, label


def test_int_float_bool_and_string_rules_match_on_one_entry():
    """One hand-made entry: strict int, int-for-float, bool vs int, string standardisation."""
    funcs = [{"name": "f", "parameters": {"type": "dict", "required": ["n"], "properties": {
        "n": {"type": "integer"}, "x": {"type": "float"}, "b": {"type": "boolean"}, "s": {"type": "string"}}}}]
    answer = [{"f": {"n": [3], "x": [1.0, ""], "b": [True, ""], "s": ["New York, NY", ""]}}]
    for params, want in [({"n": 3}, True), ({"n": 3.0}, False), ({"n": 3, "x": 1}, True), ({"n": True}, False),
                         ({"n": 3, "b": 1}, False), ({"n": 3, "s": "new york ny"}, True),
                         ({"n": 3, "s": "NewYork,NY."}, True), ({"n": 3, "s": "New York"}, False)]:
        calls = [{"name": "f", "parameters": params}]
        assert REF(funcs, calls, answer, "simple_python") is want, params
        assert rvpo_verdict(funcs, calls, answer, "simple_python") is want, params
