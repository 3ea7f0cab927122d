"""rvpo.runs.iter_json_records: the one reader of JSON array / JSON Lines inputs, and its callers."""

from __future__ import annotations

import json

import pytest

from rvpo.runs import JsonRecordError, iter_json_records

ROWS = [{"id": "a", "x": [1, 2]}, {"id": "b", "nested": {"k": "v"}}, {"id": "c"}]


def _lines_of(recs):
    return [(r.line, r.position, r.value) for r in recs]


def test_json_array_gives_the_line_each_element_starts_on(tmp_path):
    p = tmp_path / "rows.json"
    p.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    starts = [i for i, s in enumerate(p.read_text().splitlines(), 1) if s == "  {"]
    recs = list(iter_json_records(p))
    assert [r.line for r in recs] == starts and len(set(starts)) == 3
    assert [r.position for r in recs] == [1, 2, 3] and [r.value for r in recs] == ROWS
    assert [r.where for r in recs] == [f"{p}:{n}" for n in starts] and all(r.error is None for r in recs)


def test_one_line_array_and_many_elements_keep_exact_lines(tmp_path):
    p = tmp_path / "flat.json"
    p.write_text(json.dumps(ROWS), encoding="utf-8")
    assert _lines_of(iter_json_records(p)) == [(1, 1, ROWS[0]), (1, 2, ROWS[1]), (1, 3, ROWS[2])]
    # uneven layout: 1-4 lines per element, commas on their own lines, blank lines between
    parts, line, expect = ["[\n"], 2, []
    for i in range(300):
        body = json.dumps({"i": i, "t": "x" * (i % 5)}, indent=None if i % 3 else 1)
        expect.append(line)
        parts.append(body + ("\n,\n\n" if i % 2 else ",\n") if i < 299 else body + "\n]\n")
        line += body.count("\n") + (3 if i % 2 else 1)
    p.write_text("".join(parts), encoding="utf-8")
    recs = list(iter_json_records(p))
    assert [r.value["i"] for r in recs] == list(range(300)) and [r.line for r in recs] == expect


def test_jsonl_with_blank_lines_crlf_and_a_bom(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a"}\r\n\r\n   \n{"id": "b"}\r\n\n{"id": "c"}')
    assert _lines_of(iter_json_records(p)) == [(1, 1, {"id": "a"}), (4, 4, {"id": "b"}), (6, 6, {"id": "c"})]


def test_jsonl_splits_on_newline_only(tmp_path):
    p = tmp_path / "u.jsonl"
    p.write_text('{"t": "a\u2028b\u0085c"}\n{"t": 2}\n', encoding="utf-8")  # JSON allows U+2028 raw
    assert [(r.line, r.value["t"]) for r in iter_json_records(p)] == [(1, "a\u2028b\u0085c"), (2, 2)]


def test_empty_inputs_yield_nothing(tmp_path):
    for text in ("", "\n\n  \n", "[]", " [ \n ] \n"):
        (tmp_path / "e.json").write_text(text, encoding="utf-8")
        assert list(iter_json_records(tmp_path / "e.json")) == []


def test_bad_line_raises_naming_file_line_and_column(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1}\n\n{"id": 2,}\n{"id": 3}\n', encoding="utf-8")
    with pytest.raises(JsonRecordError) as e:
        list(iter_json_records(p))
    assert isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"{p}:3: invalid JSON (") and "column 10" in str(e.value)
    assert (e.value.file, e.value.line, e.value.reason) == (str(p), 3, JsonRecordError.INVALID_JSON)
    with pytest.raises(ValueError, match=r"^--data bad\.jsonl:3: invalid JSON"):
        list(iter_json_records(p, where="--data bad.jsonl"))


def test_records_before_the_bad_line_are_yielded_first(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": 1}\n{oops\n', encoding="utf-8")
    it = iter_json_records(p)
    assert next(it).value == {"id": 1}
    with pytest.raises(JsonRecordError, match=r":2: invalid JSON"):
        next(it)


def test_on_error_yield_lets_a_caller_skip_and_count(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"id": 1}\n{oops\n[1, 2]\n\n{"id": 4}\n"text"\n', encoding="utf-8")
    recs = list(iter_json_records(p, on_error="yield"))
    good = [r.value for r in recs if r.error is None]
    bad = [(r.line, r.error.reason, r.value) for r in recs if r.error is not None]
    assert good == [{"id": 1}, {"id": 4}]
    assert bad == [(2, JsonRecordError.INVALID_JSON, None), (3, JsonRecordError.NOT_AN_OBJECT, None),
                   (6, JsonRecordError.NOT_AN_OBJECT, None)]
    assert str(recs[2].error) == f"{p}:3: expected a JSON object (got list)" and recs[2].where == f"{p}:3"
    assert recs[4].error.why == "expected a JSON object (got str)"


def test_non_object_rows_pass_with_objects_false(tmp_path):
    p = tmp_path / "vals.jsonl"
    p.write_text('"s"\n[1, 2]\n3\nnull\n', encoding="utf-8")
    assert [r.value for r in iter_json_records(p, objects=False)] == ["s", [1, 2], 3, None]
    with pytest.raises(JsonRecordError, match=r"vals\.jsonl:1: expected a JSON object \(got str\)"):
        list(iter_json_records(p))
    arr = tmp_path / "vals.json"
    arr.write_text('[\n{"a": 1},\n7,\n{"a": 2}\n]\n', encoding="utf-8")
    recs = list(iter_json_records(arr, on_error="yield"))  # an element's type is skippable in an array too
    assert [(r.line, r.position, r.error is None) for r in recs] == [(2, 1, True), (3, 2, False), (4, 3, True)]


def test_utf8_error_names_file_byte_and_line_and_always_raises(tmp_path):
    p = tmp_path / "bin.jsonl"
    p.write_bytes(b'{"id": 1}\n{"id": "caf\xe9"}\n')
    for mode in ("raise", "yield"):
        with pytest.raises(JsonRecordError) as e:
            list(iter_json_records(p, on_error=mode))
        assert str(e.value) == f"{p}: not UTF-8 text (byte 21, line 2)"
        assert e.value.reason == JsonRecordError.NOT_UTF8 and e.value.line is None


@pytest.mark.parametrize("text,line,reason,part", [
    ('[\n{"a": 1},\n{"a": }\n]', 3, JsonRecordError.INVALID_JSON, "column 7"),
    ('[\n{"a": 1},\n{"a": 2}\n', 4, JsonRecordError.BAD_ARRAY, "closing ']'"),
    ('[\n{"a": 1}\n{"a": 2}\n]', 3, JsonRecordError.BAD_ARRAY, "expected ',' or ']' after element 1"),
    ('[\n{"a": 1},\n]', 3, JsonRecordError.BAD_ARRAY, "trailing ','"),
    ('[{"a": 1}]\n\n{"b": 2}\n', 3, JsonRecordError.BAD_ARRAY, "text after the closing ']'; a file that starts"),
    ("[", 1, JsonRecordError.BAD_ARRAY, "closing ']'"),
])
def test_broken_array_raises_with_its_line_even_when_yielding(tmp_path, text, line, reason, part):
    p = tmp_path / "arr.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(JsonRecordError) as e:
        list(iter_json_records(p, on_error="yield"))
    assert (e.value.line, e.value.reason) == (line, reason) and part in str(e.value)
    assert str(e.value).startswith(f"{p}:{line}: {reason}")


def test_bad_arguments_and_missing_file_fail_at_the_call(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        iter_json_records(tmp_path / "x.jsonl", on_error="skip")
    with pytest.raises(FileNotFoundError):
        iter_json_records(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------ the callers' wording


def test_where_replaces_the_file_in_records_and_errors(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n\n{"b": 2}\n{\n', encoding="utf-8")
    it = iter_json_records(p, where="--responses r.jsonl")
    assert [(r.line, r.value, r.where) for r in (next(it), next(it))] == [
        (1, {"a": 1}, "--responses r.jsonl:1"), (3, {"b": 2}, "--responses r.jsonl:3")]
    with pytest.raises(ValueError, match=r"^--responses r\.jsonl:4: invalid JSON \(.* at column 2\)$"):
        next(it)


def test_toolcall_loaders_word_reader_errors_as_path_line_n(tmp_path):
    from rvpo.tasks.toolcall.loaders import load_toolrl_sft

    p = tmp_path / "sft.json"
    good = {"instruction": "a", "input": "b", "output": "<think>x</think>\n<response>y</response>"}
    p.write_text("[\n" + json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{p} line 3: bad JSON array \(the file ends"):
        load_toolrl_sft(p)
    p.write_text(json.dumps(good) + "\n[1]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{p} line 2: expected a JSON object \(got list\)"):
        load_toolrl_sft(p)


def test_rubric_json_list_ids_use_positions_and_errors_true_lines(tmp_path):
    from rvpo.tasks.rubric.data import RubricDataError, load_rubric_file

    row = {"question": "Q?", "rubric": [{"title": "t", "weight": 5}]}
    p = tmp_path / "rar.json"
    p.write_text("[\n" + json.dumps(row) + ",\n\n" + json.dumps({"question": "Q?"}) + ",\n" + json.dumps(row) + "\n]",
                 encoding="utf-8")
    ds = load_rubric_file(p, on_error="skip")
    assert [ex.id for ex in ds] == ["rar:1", "rar:3"]  # element numbers: ids do not move with the layout
    assert [line for line, _ in ds.skipped] == [4] and "unknown schema" in ds.skipped[0][1]
    with pytest.raises(RubricDataError, match=rf"^{p}:4: unknown schema"):
        load_rubric_file(p)
    p.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(RubricDataError, match=r"not UTF-8 text \(byte 0, line 1\); expected JSONL"):
        load_rubric_file(p, on_error="skip")
    p.write_text('[\n{"question": "Q?",\n"rubric": ]\n]', encoding="utf-8")
    with pytest.raises(RubricDataError, match=rf"^{p}:3: invalid JSON"):
        load_rubric_file(p, on_error="skip")
