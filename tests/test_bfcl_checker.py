"""rvpo.tasks.toolcall.bfcl: BFCL's AST rules on hand-made cases, the BFCL golds, the eval summary.

Hand-made cases need nothing; the tests on the real entries need the bfcl-eval wheel's data
(``pip install --no-deps bfcl-eval``) and skip without it.
"""

from __future__ import annotations

import json

import pytest

from rvpo.cli import main
from rvpo.tasks.toolcall import bfcl
from rvpo.tasks.toolcall.bfcl import check, standardize, summarize
from rvpo.tasks.toolcall.eval import bfcl_table, score_toolcall
from rvpo.tasks.toolcall.loaders import BFCL_GROUPS, bfcl_data_dir, load_examples
from rvpo.tasks.toolcall.rewards import correctness_score, render_output

needs_wheel = pytest.mark.skipif(bfcl_data_dir() is None, reason="bfcl-eval is not installed (no bfcl_eval/data)")

F = [{"name": "f", "parameters": {"type": "dict", "required": ["a"], "properties": {
    "a": {"type": "integer"}, "x": {"type": "float"}, "s": {"type": "string"}, "b": {"type": "boolean"},
    "l": {"type": "array", "items": {"type": "string"}}, "d": {"type": "dict"},
    "ld": {"type": "array", "items": {"type": "dict"}}}}},
     {"name": "g", "parameters": {"type": "dict", "required": ["c"], "properties": {"c": {"type": "string"}}}}]
A = [{"f": {"a": [1], "x": [2.0, ""], "s": ["New York, NY", ""], "b": [False, ""], "l": [["Red", "blue"], ""],
            "d": [{"k": [1], "m": ["x y", ""]}, ""], "ld": [[{"k": [1]}, {"k": [2]}], ""]}}]


def ok(params, answer=A, cat="simple_python", name="f"):
    return check(F, [{"name": name, "parameters": params}], answer, cat).valid


def test_standardize_drops_spaces_and_punctuation_and_lowercases():
    assert standardize("New York, NY") == standardize("newyork,ny.") == "newyorkny"
    assert standardize("a-b_c*d^e/f") == "abcdef"
    assert standardize("It's") == 'it"s'
    assert standardize("a:b") == "a:b"  # ':' is kept, as in BFCL


@pytest.mark.parametrize("params,want", [
    ({"a": 1}, True),                      # optional parameters omitted ("" accepted)
    ({}, False),                           # required parameter missing
    ({"a": 1.0}, False),                   # a float for an integer: wrong type
    ({"a": True}, False),                  # a bool is not an int
    ({"a": 2}, False),                     # wrong value
    ({"a": 1, "x": 2}, True),              # an int stands for a float
    ({"a": 1, "x": 2.5}, False),
    ({"a": 1, "b": 0}, False),             # an int is not a bool
    ({"a": 1, "s": "new york ny"}, True),  # string standardisation
    ({"a": 1, "s": "Boston"}, False),
    ({"a": 1, "l": ["red", "Blue"]}, True),   # string items standardised, order kept
    ({"a": 1, "l": ["blue", "red"]}, False),
    ({"a": 1, "l": []}, True),             # "" accepted -> [] accepted (BFCL iterates "")
    ({"a": 1, "d": {"k": 1}}, True),       # dict key by key; "m" may be omitted
    ({"a": 1, "d": {"k": 1, "m": "X-Y"}}, True),
    ({"a": 1, "d": {"k": 2}}, False),
    ({"a": 1, "d": {"k": 1, "z": 1}}, False),   # unexpected dict key
    ({"a": 1, "ld": [{"k": 1}, {"k": 2}]}, True),
    ({"a": 1, "ld": [{"k": 2}, {"k": 1}]}, False),  # list of dicts: order matters
    ({"a": 1, "zz": 1}, False),            # unexpected parameter
])
def test_simple_rules(params, want):
    assert ok(params) is want


def test_variable_values_and_parameters_missing_from_the_answer():
    # A string accepted for an integer parameter (a variable name): a string is accepted, unstandardised.
    assert ok({"a": "n"}, [{"f": {"a": ["n"]}}]) is True
    assert ok({"a": "N"}, [{"f": {"a": ["n"]}}]) is False
    # An optional schema parameter absent from the answer may not be given.
    assert ok({"a": 1, "x": 2.0}, [{"f": {"a": [1]}}]) is False


def test_counts_and_function_names_by_category():
    call = {"name": "f", "parameters": {"a": 1}}
    assert check(F, [call, call], A, "simple_python").valid is False
    assert check(F, [call], A, "multiple").valid is True
    assert check(F, [{"name": "g", "parameters": {"c": "x"}}], A, "multiple").valid is False
    assert check(F, [{"name": "F", "parameters": {"a": 1}}], A, "live_simple").valid is False  # names exact


def test_parallel_is_order_free_and_greedy_like_bfcl():
    answer = [{"f": {"a": [1]}}, {"g": {"c": ["x"]}}]
    calls = [{"name": "g", "parameters": {"c": "X"}}, {"name": "f", "parameters": {"a": 1}}]
    assert check(F, calls, answer, "parallel_multiple").valid is True
    assert check(F, calls[:1], answer, "parallel_multiple").valid is False
    # Greedy: the first expected call claims the first passing call, even if a later expected call needed it.
    answer2 = [{"f": {"a": [1, 2]}}, {"f": {"a": [1]}}]
    assert check(F, [{"name": "f", "parameters": {"a": 1}}, {"name": "f", "parameters": {"a": 2}}],
                 answer2, "parallel").valid is False
    assert check(F, [{"name": "f", "parameters": {"a": 2}}, {"name": "f", "parameters": {"a": 1}}],
                 answer2, "parallel").valid is True


def test_java_and_javascript_are_refused():
    with pytest.raises(NotImplementedError, match="Java/JavaScript"):
        check(F, [], A, "simple_java")


def test_summary_weights_like_bfcl():
    s = summarize({"simple_python": (1, 2), "multiple": (1, 4), "live_simple": (3, 4), "live_multiple": (0, 12)})
    assert s["non_live_overall"] == pytest.approx((0.5 + 0.25) / 2)  # unweighted over groups
    assert s["live_overall"] == pytest.approx(3 / 16)                # weighted by count
    assert summarize({"parallel": (0, 0)})["non_live_overall"] is None


UNSATISFIABLE = {  # entries no call can pass in BFCL's own checker (answer keys the schema lacks or [] lists)
    "live_simple_106-63-0", "live_simple_112-68-0", "live_multiple_862-181-3", "live_multiple_964-207-0"}


@needs_wheel
def test_every_bfcl_gold_passes_the_checker_and_scores_3():
    rows = load_examples("bfcl:ast")
    assert len(rows) == 2351
    res = score_toolcall(rows, [r["ground_truth"] for r in rows])
    failed = {r["id"] for r in res["records"] if not r["bfcl_valid"]}
    assert failed == UNSATISFIABLE
    assert res["format_rate"] == 1.0 and res["exact_match_rate"] == 1.0
    assert res["bfcl"]["n"]["live_multiple"] == 1053
    assert "live overall" in bfcl_table(res)


@needs_wheel
def test_dict_valued_golds_are_plain_dicts_and_alternatives_score_3():
    rows = {r["id"]: r for r in load_examples("bfcl:simple_python")}
    r89 = rows["simple_python_89"]
    assert '"conditions": {"department": "Science", "school": "Bluebird High School"}' in r89["ground_truth"]
    alt = render_output([{"name": "db_fetch_records", "parameters": {
        "database_name": "StudentDB", "table_name": "students",
        "conditions": {"department": "Science", "school": "Bluebird HS"}}}], think="t")
    assert correctness_score(alt, r89["ground_truth"], accepted=r89["accepted"]) == 3.0
    assert score_toolcall([r89], [alt])["records"][0]["bfcl_valid"] is True
    # A schema-required parameter whose accepted list starts with "" takes its first real value.
    assert '"fuel_efficiency": 25.0' in rows["simple_python_200"]["ground_truth"]


@needs_wheel
def test_eval_records_decode_failures_and_irrelevance():
    rows = load_examples("bfcl:simple_python")[:2] + load_examples("bfcl:irrelevance")[:2]
    bad = "<think>t</think>\n<tool_call>\n{oops\n</tool_call>"
    res = score_toolcall(rows, [bad, rows[1]["ground_truth"], bad, rows[0]["ground_truth"]])
    valid = [r["bfcl_valid"] for r in res["records"]]
    assert valid == [False, True, True, False]  # irrelevance: no decodable call is a success
    assert res["records"][0]["bfcl_error"] == "ast_decoder:decoder_failed"
    assert res["bfcl"]["accuracy"] == {"simple_python": 0.5, "irrelevance": 0.5}
    assert json.loads(rows[0]["functions"])[0]["name"] in rows[0]["ground_truth"]


def test_cli_rejects_an_empty_bfcl_spec(capsys):
    assert main(["eval", "toolcall", "--data", "bfcl:", "--limit", "1"]) == 2
    assert "bfcl:" in capsys.readouterr().err
    assert set(BFCL_GROUPS["ast"]) == set(BFCL_GROUPS["live"]) | set(BFCL_GROUPS["non_live"])
    assert bfcl.language("simple_javascript") == "javascript"
