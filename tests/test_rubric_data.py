"""Rubric loaders: the real HealthBench files, Rubrics-as-Rewards fixtures, malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvpo.tasks.rubric import (
    RubricDataError,
    RubricItem,
    examples_from_rows,
    load_rubric_file,
    rubric_from_column,
    rubric_to_json,
)

HB = Path(__file__).resolve().parents[2] / "shared" / "data" / "healthbench"
HARD = HB / "healthbench_hard_sample50.jsonl"
CONSENSUS = HB / "healthbench_consensus_context_seeking104.jsonl"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


RAR_ROW = {
    "question": "A 30-year-old presents with chest pain. Next step?",
    "rubric": [
        {"title": "Essential Criteria", "description": "Recommends an ECG.", "weight": 5},
        {"title": "Optional Criteria", "description": "Mentions troponin.", "weight": 1},
        {"title": "Pitfall Criteria", "description": "Recommends discharge without workup.", "weight": -2},
    ],
}


@pytest.mark.needs_shared("healthbench")
def test_real_healthbench_files_load_every_row_with_its_rubric():
    hard = load_rubric_file(HARD)
    cons = load_rubric_file(CONSENSUS)
    assert (len(hard), len(cons)) == (50, 104)
    assert hard.skipped == [] and cons.skipped == []
    raw = [json.loads(line) for line in HARD.read_text(encoding="utf-8").splitlines()]
    for ex, row in zip(hard, raw, strict=True):
        assert ex.id == row["prompt_id"]
        assert ex.conversation == [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        assert [it.points for it in ex.items] == [float(r["points"]) for r in row["rubrics"]]
        assert [it.tags for it in ex.items] == [tuple(r["tags"]) for r in row["rubrics"]]
        assert ex.example_tags == tuple(row["example_tags"])
    # hard has pitfalls (negative points) and varying M; the consensus file is 2 items each
    assert any(it.is_pitfall for ex in hard for it in ex.items)
    assert len({len(ex.items) for ex in hard}) > 5
    assert hard.max_items == max(len(r["rubrics"]) for r in raw)
    assert {len(ex.items) for ex in cons} == {2}
    assert all("theme:context_seeking" in ex.example_tags for ex in cons)


@pytest.mark.needs_shared("healthbench")
def test_limit_keeps_first_examples():
    ds = load_rubric_file(HARD, limit=3)
    assert [ex.id for ex in ds] == [ex.id for ex in load_rubric_file(HARD).examples[:3]]


def test_rar_rows_become_items_with_title_description_weight_and_class_tags(tmp_path):
    row2 = {"id": "q2", "question": "Q?", "rubric": json.dumps([{"description": "Only a description", "weight": 3}])}
    ds = load_rubric_file(_write_jsonl(tmp_path / "rar.jsonl", [RAR_ROW, row2]))
    a, b = ds.examples
    assert a.conversation == [{"role": "user", "content": RAR_ROW["question"]}]
    assert a.id == "rar:1"  # no id field: file stem and line
    assert [it.criterion for it in a.items] == [
        "Essential Criteria: Recommends an ECG.", "Optional Criteria: Mentions troponin.",
        "Pitfall Criteria: Recommends discharge without workup."]
    assert [it.points for it in a.items] == [5.0, 1.0, -2.0]
    assert [it.tags for it in a.items] == [("rar:essential",), ("rar:optional",), ("rar:pitfall",)]
    assert [it.is_pitfall for it in a.items] == [False, False, True]
    assert b.id == "q2" and b.items == [RubricItem("Only a description", 3.0, ("rar:important",))]


def test_json_list_and_parquet_files(tmp_path):
    p = tmp_path / "rar.json"
    p.write_text(json.dumps([RAR_ROW, RAR_ROW]), encoding="utf-8")
    assert len(load_rubric_file(p)) == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    q = tmp_path / "rar.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Q?", "rubric": json.dumps(RAR_ROW["rubric"])}]), q)
    (ex,) = load_rubric_file(q).examples
    assert [it.points for it in ex.items] == [5.0, 1.0, -2.0]


@pytest.mark.needs_shared("healthbench")
def test_mixed_schemas_in_one_file_are_detected_per_row(tmp_path):
    hb_row = json.loads(HARD.read_text(encoding="utf-8").splitlines()[0])
    ds = load_rubric_file(_write_jsonl(tmp_path / "mixed.jsonl", [hb_row, RAR_ROW]))
    assert ds.examples[0].id == hb_row["prompt_id"] and ds.examples[1].items[0].points == 5.0


BAD_ROWS = [
    ("{not json", "invalid JSON"),
    ({"question": "Q?"}, "unknown schema"),
    ({"question": "Q?", "rubric": []}, "non-empty list"),
    ({"question": "Q?", "rubric": [{"title": "t", "weight": "5"}]}, "rubric[0].weight must be a number"),
    ({"question": "Q?", "rubric": [{"weight": 5}]}, "rubric[0] needs a non-empty 'title' or 'description'"),
    ({"prompt": [{"role": "user"}], "rubrics": [{"criterion": "c", "points": 1}]}, "'prompt'[0] must be a message"),
    ({"prompt": "hi", "rubrics": [{"criterion": "c", "points": float("nan")}]}, "must be finite"),
    ({"prompt": "hi", "rubrics": [{"criterion": "c", "points": 1, "tags": "axis:x"}]}, "tags must be a list"),
    ({"prompt": "hi", "rubrics": [{"criterion": "", "points": 1}]}, "criterion must be a non-empty string"),
    ([1, 2], "must be a JSON object"),
]


@pytest.mark.parametrize("bad,reason", BAD_ROWS)
def test_malformed_row_raises_with_file_and_line(tmp_path, bad, reason):
    path = _write_jsonl(tmp_path / "bad.jsonl", [RAR_ROW, "", bad, RAR_ROW])  # the bad row is line 3
    with pytest.raises(RubricDataError) as e:
        load_rubric_file(path)
    assert str(e.value).startswith(f"{path}:3: ") and reason in str(e.value)


def test_skip_mode_counts_and_reports_bad_rows(tmp_path):
    rows = [RAR_ROW] + [b for b, _ in BAD_ROWS] + [RAR_ROW]
    ds = load_rubric_file(_write_jsonl(tmp_path / "bad.jsonl", rows), on_error="skip")
    assert len(ds) == 2
    assert [line for line, _ in ds.skipped] == list(range(2, 2 + len(BAD_ROWS)))
    assert all(reason in why for (_, why), (_, reason) in zip(ds.skipped, BAD_ROWS, strict=True))
    assert f"{len(BAD_ROWS)} rows skipped" in ds.summary()


def test_file_without_valid_rows_or_missing_file_is_an_error(tmp_path):
    with pytest.raises(RubricDataError, match="no valid rubric example"):
        load_rubric_file(_write_jsonl(tmp_path / "b.jsonl", ["{"]), on_error="skip")
    with pytest.raises(RubricDataError, match="no such file"):
        load_rubric_file(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        load_rubric_file(HARD, on_error="ignore")


def test_rows_in_memory_and_rubric_column_roundtrip():
    ds = examples_from_rows([RAR_ROW, {"x": 1}], on_error="skip")
    assert len(ds) == 1 and ds.skipped == [(2, ds.skipped[0][1])]
    items = ds.examples[0].items
    assert rubric_from_column(rubric_to_json(items)) == items
    assert rubric_from_column([it.to_dict() for it in items]) == items
    with pytest.raises(ValueError, match="rubric column"):
        rubric_from_column([{"points": 1}])
