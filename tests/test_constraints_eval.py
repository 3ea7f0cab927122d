"""Held-out evaluation of the constraints task: IFEval's numbers, strict JSON, ``rvpo eval constraints --responses``."""

import json
import math
from pathlib import Path

import pytest

from rvpo.cli import main
from rvpo.tasks.constraints import ifeval_row, load_jsonl_rows, score_responses

IFEVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval" / "input_data.jsonl"

FIXTURE = [
    {"key": 1, "prompt": "Write about cats. Do not use any commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 2, "prompt": "Write in French with a title.",
     "instruction_id_list": ["language:response_language", "detectable_format:title"],
     "kwargs": [{"language": "fr"}, {}]},
    {"key": 3, "prompt": "Repeat this.", "instruction_id_list": ["combination:repeat_prompt", "length_constraints:number_words"],
     "kwargs": [{"prompt_to_repeat": "Repeat this."}, {"relation": "less than", "num_words": 10, "num_bullets": None}]},
    {"key": 4, "prompt": "Only French.", "instruction_id_list": ["language:response_language"], "kwargs": [{"language": "fr"}]},
]
RESPONSES = {1: "Sure, here:\ncats are great", 2: "<<Titre>> Bonjour, je suis très heureux de vous voir.",
             3: "Repeat this. ok", 4: "bonjour"}


def _write(path, objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_four_numbers_by_hand():
    rows = [ifeval_row(o) for o in FIXTURE]
    res = score_responses(rows, [RESPONSES[o["key"]] for o in FIXTURE])
    m = res["metrics"]
    # key 1: no_comma fails strict (comma on line 1), passes loose (first line removed)
    # key 2: title passes and langdetect says French; key 3: repeat + < 10 words both pass
    # key 4: langdetect (seeded) reads the lone word "bonjour" as Croatian: fails, and is not dropped
    assert res["n"] == 4 and res["n_unsupported"] == 0 and res["n_dropped_prompts"] == 0
    assert m["prompt_strict"] == pytest.approx(2 / 4) and m["prompt_loose"] == pytest.approx(3 / 4)
    assert m["inst_strict"] == pytest.approx(4 / 6) and m["inst_loose"] == pytest.approx(5 / 6)
    assert m["type/no_comma"] == 0.0 and m["type_loose/no_comma"] == 1.0
    assert m["type/language"] == 0.5
    assert m["quality"] is None  # IFEval rows carry no topic words
    for k in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose", "worst_type"):
        lo, hi = res["ci95"][k]
        assert 0.0 <= lo <= (m[k] or 0.0) <= hi <= 1.0, k
    json.dumps(res, allow_nan=False)  # strict JSON: no NaN anywhere


def test_builtin_rows_report_quality_and_per_type_rates():
    from rvpo.tasks.constraints import make_task

    task = make_task(n_test=20)
    rows = task.load("builtin:test", "eval")
    res = score_responses(rows, ["<<Title>> Trees and green leaves line the quiet forest path."] * len(rows))
    assert 0.0 < res["metrics"]["quality"] <= 1.0
    assert res["metrics"]["type/title"] == 1.0
    assert all(k in res["metrics"] for k in task.eval_metrics)
    assert all(v is None or math.isfinite(v) for v in res["metrics"].values())
    assert res["worst_type_name"] in res["per_type_n"]


def test_empty_responses_and_mismatched_lengths():
    rows = [ifeval_row(FIXTURE[0])]
    res = score_responses(rows, [""])
    assert res["metrics"]["prompt_loose"] == 0.0
    with pytest.raises(ValueError, match="1 rows but 2 responses"):
        score_responses(rows, ["a", "b"])


def test_cli_responses_self_contained_ifeval_rows(tmp_path, capsys):
    f = _write(tmp_path / "r.jsonl", [{**o, "response": RESPONSES[o["key"]]} for o in FIXTURE])
    assert main(["eval", "constraints", "--responses", str(f), "--out", str(tmp_path / "runs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 4 and out["n_unsupported"] == 0
    assert out["metrics"]["prompt_strict"] == pytest.approx(2 / 4)
    assert [r["key"] for r in out["records"]] == [1, 2, 3, 4]
    assert out["records"][0]["strict"] == [False] and out["records"][0]["loose"] == [True]
    run_dir = Path(out["run_dir"])
    json.loads((run_dir / "results.json").read_text())
    assert len((run_dir / "examples.jsonl").read_text().splitlines()) == 4


def test_cli_with_a_model_is_the_tasks_own_eval(tmp_path, tiny_llama_dir, capsys, monkeypatch):
    """``rvpo eval constraints --model`` runs ConstraintsTask.evaluate (greedy answers, then the same scoring)."""
    from rvpo.tasks.constraints.task import ConstraintsTask

    calls = []
    real = ConstraintsTask.evaluate
    monkeypatch.setattr(ConstraintsTask, "evaluate", lambda self, *a, **kw: calls.append(kw) or real(self, *a, **kw))
    assert main(["eval", "constraints", "--model", tiny_llama_dir, "--limit", "2", "--max-new-tokens", "4",
                 "--out", str(tmp_path / "runs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == [{"max_new_tokens": 4, "batch_size": 16}]
    assert out["n"] == 2 and out["model"] == tiny_llama_dir and out["responses"] is None
    assert set(out["metrics"]) >= {"prompt_strict", "prompt_loose", "inst_strict", "inst_loose"}
    assert len(out["records"]) == 2 and len((Path(out["run_dir"]) / "examples.jsonl").read_text().splitlines()) == 2


def test_cli_responses_matched_by_key_to_data(tmp_path, capsys):
    data = _write(tmp_path / "data.jsonl", FIXTURE)
    resp = _write(tmp_path / "r.jsonl", [{"key": 3, "response": "Repeat this. ok"}])
    assert main(["eval", "constraints", "--data", f"ifeval:{data}", "--responses", str(resp),
                 "--out", str(tmp_path / "runs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 1 and out["metrics"]["prompt_strict"] == 1.0


@pytest.mark.parametrize("lines,msg", [
    (['{"key": 99, "response": "x"}'], r"r.jsonl:1: key 99 is not in --data"),
    (['{"key": 1, "response": "x"}', "not json"], r"r.jsonl:2: invalid JSON"),
    (['{"key": 1}'], r"r.jsonl:1: expected an object with a string 'response'"),
])
def test_cli_bad_responses_name_file_and_line(tmp_path, capsys, lines, msg):
    import re

    data = _write(tmp_path / "data.jsonl", FIXTURE)
    resp = tmp_path / "r.jsonl"
    resp.write_text("\n".join(lines) + "\n")
    assert main(["eval", "constraints", "--data", str(data), "--responses", str(resp), "--out", str(tmp_path)]) == 2
    assert re.search(msg, capsys.readouterr().err)


def test_bad_data_file_names_the_line(tmp_path):
    bad = tmp_path / "d.jsonl"
    bad.write_text(json.dumps(FIXTURE[0]) + "\n{\n")
    with pytest.raises(ValueError, match=r"d.jsonl:2: invalid JSON"):
        load_jsonl_rows(bad)
    bad.write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:1: expected an IFEval row"):
        load_jsonl_rows(bad)


def test_real_ifeval_file_loads_with_every_type_supported():
    if not IFEVAL.is_file():
        pytest.skip(f"needs {IFEVAL.parent} (the shared IFEval prompts)")
    rows = load_jsonl_rows(IFEVAL)
    assert len(rows) == 541
    res = score_responses(rows, ["placeholder answer"] * len(rows))
    assert res["n"] == 541 and res["n_dropped_prompts"] == 0  # the official denominator: every prompt
    assert res["n_unsupported"] == 0 and res["unsupported_ids"] == []
    assert res["n_instructions"] == 834 and res["per_type_n"]["language"] == 31
    assert len(res["per_type_n"]) == 25
