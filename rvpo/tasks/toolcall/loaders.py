"""Loaders that turn real tool-calling data into rvpo's example schema.

Formats:
- ToolRL RL data (verl parquet): ``prompt`` [system, user], ``reward_model.ground_truth``, ``extra_info``.
- ToolRL SFT data (JSON array or JSON Lines): ``{instruction, input, output}``.
- BFCL (JSON Lines despite ``.json``): questions ``{id, question: [[messages]], function: [schemas]}``
  and possible answers ``{id, ground_truth: [{func_name: {param: [accepted values]}}]}``.
- rvpo examples (JSON array or JSON Lines of ``{prompt, ground_truth, id, source}``).

JSON and JSON Lines files are read by :func:`rvpo.runs.iter_json_records` (records must be objects).
Every malformed row raises ValueError naming the file and the line (row for parquet).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rvpo.runs import JsonRecordError, iter_json_records
from rvpo.tasks.toolcall.generate import builtin_splits
from rvpo.tasks.toolcall.rewards import parse_gold_calls, render_output
from rvpo.tasks.toolcall.schemas import bfcl_compact_signature, system_prompt

Example = dict[str, Any]
PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------
# validation and the oracle
# ---------------------------------------------------------------------------------------------


def _read_parquet(path: Path, schema_only: bool = False):
    """A Parquet table (or its schema); a garbage or truncated file raises ``ValueError`` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path) if schema_only else pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:160]})") from None


def validate_example(row: Any, where: str) -> Example:
    """Check one example row; raise ValueError starting with ``where`` (e.g. "file.json line 3")."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    for key in ("prompt", "ground_truth", "id", "source"):
        if key not in row:
            raise ValueError(f"{where}: missing field {key!r}")
    prompt = row["prompt"]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"{where}: 'prompt' must be a non-empty list of messages")
    for j, m in enumerate(prompt):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"{where}: prompt[{j}] must be {{'role': str, 'content': str}}")
    gt = row["ground_truth"]
    if not isinstance(gt, str) or "<think>" not in gt:
        raise ValueError(f"{where}: 'ground_truth' must be a ToolRL output string starting with <think>")
    if "<tool_call>" not in gt and "<response>" not in gt:
        raise ValueError(f"{where}: 'ground_truth' has neither <tool_call> nor <response>")
    try:
        parse_gold_calls(gt)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(row["id"], str) or not isinstance(row["source"], str):
        raise ValueError(f"{where}: 'id' and 'source' must be strings")
    return row


def gold_completion(example: Example) -> str:
    """The oracle completion of an example: its gold output (scores format 1, correctness 3)."""
    return example["ground_truth"]


# ---------------------------------------------------------------------------------------------
# file reading with line numbers
# ---------------------------------------------------------------------------------------------


def _records(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, object)`` of a JSON array or JSON Lines file (:func:`rvpo.runs.iter_json_records`).

    Errors are ``ValueError("PATH line N: ...")``, worded like every other message here.
    """
    try:
        for rec in iter_json_records(path):
            yield rec.line, rec.value
    except JsonRecordError as e:
        raise ValueError(str(e) if e.line is None else f"{e.file} line {e.line}: {e.why}") from None


def _first_record(path: PathLike) -> dict[str, Any]:
    for _, obj in _records(path):
        return obj
    raise ValueError(f"{path}: no records")


# ---------------------------------------------------------------------------------------------
# ToolRL
# ---------------------------------------------------------------------------------------------


def _toolrl_row(prompt: Any, gt: Any, row_id: str, source: str, where: str) -> Example:
    return validate_example({"prompt": prompt, "ground_truth": gt, "id": row_id, "source": source}, where)


def load_toolrl_parquet(path: PathLike) -> list[Example]:
    """ToolRL's verl parquet (``dataset/rlla_4k/*.parquet``) -> examples (source "toolrl")."""
    rows = _read_parquet(path).to_pylist()
    out = []
    for i, row in enumerate(rows, start=1):
        where = f"{path} row {i}"
        if not isinstance(row.get("reward_model"), dict) or "ground_truth" not in row["reward_model"]:
            raise ValueError(f"{where}: missing reward_model.ground_truth")
        prompt = [{"role": m.get("role"), "content": m.get("content")}
                  for m in (row.get("prompt") or []) if isinstance(m, dict)]
        index = (row.get("extra_info") or {}).get("index", i - 1)
        out.append(_toolrl_row(prompt, row["reward_model"]["ground_truth"], f"toolrl-{index}", "toolrl", where))
    return out


def load_toolrl_sft(path: PathLike) -> list[Example]:
    """ToolRL's SFT JSON (array or JSON Lines of ``{instruction, input, output}``) -> examples."""
    out = []
    for n, (line, rec) in enumerate(_records(path)):
        where = f"{path} line {line}"
        for key in ("instruction", "input", "output"):
            if not isinstance(rec.get(key), str):
                raise ValueError(f"{where}: field {key!r} must be a string")
        prompt = [{"role": "system", "content": rec["instruction"]}, {"role": "user", "content": rec["input"]}]
        out.append(_toolrl_row(prompt, rec["output"], f"toolrl_sft-{n}", "toolrl_sft", where))
    return out


# ---------------------------------------------------------------------------------------------
# BFCL
# ---------------------------------------------------------------------------------------------


def bfcl_data_dir() -> Path | None:
    """The ``data`` folder of the installed ``bfcl-eval`` wheel (found without importing it), or None."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.origin:
        return None
    d = Path(spec.origin).parent / "data"
    return d if d.is_dir() else None


def resolve_bfcl_file(name: PathLike, answers: bool = False) -> Path:
    """A BFCL file path from a path or a category name resolved inside the installed bfcl-eval.

    ``name``: an existing path, or "simple_python", "BFCL_v4_simple_python" or
    "BFCL_v4_simple_python.json". ``answers=True`` picks ``data/possible_answer/<file>``.
    """
    p = Path(name)
    if p.is_file():
        return p
    stem = p.name
    if not stem.endswith(".json"):
        stem += ".json"
    if not stem.startswith("BFCL_"):
        stem = "BFCL_v4_" + stem
    d = bfcl_data_dir()
    if d is None:
        raise ValueError(f"BFCL file {str(name)!r} not found, and bfcl-eval is not installed "
                         "(pip install --no-deps bfcl-eval) to resolve it by name")
    cand = (d / "possible_answer" / stem) if answers else (d / stem)
    if not cand.is_file():
        raise ValueError(f"BFCL file {str(name)!r} not found (looked for {cand})")
    return cand


def bfcl_category(path: PathLike) -> str:
    """The BFCL category of a file name: ``BFCL_v4_live_simple.json`` -> ``"live_simple"``."""
    stem = Path(path).name.removesuffix(".json")
    for prefix in ("possible_answer_", "BFCL_v4_", "BFCL_v3_"):
        stem = stem.removeprefix(prefix)
    return stem


def _bfcl_answers_next_to(questions: Path) -> Path:
    d = questions.parent
    for cand in (d / f"possible_answer_{questions.name}", d / "possible_answer" / questions.name):
        if cand.is_file():
            return cand
    raise ValueError(f"{questions}: no answers file given and none found next to it "
                     f"(tried possible_answer_{questions.name} and possible_answer/{questions.name})")


def _first_accepted(values: list[Any], required: bool) -> Any:
    # "" marks "may be omitted"; a schema-required parameter takes its first real value instead.
    for v in values:
        if not (required and v == ""):
            return v
    return ""


def _collapse_dict(value: Any) -> Any:
    # BFCL gives a dict value as per-key accepted lists: {key: [values]} -> {key: first value}.
    if not isinstance(value, dict) or not all(isinstance(v, list) for v in value.values()):
        return value
    return {k: v[0] for k, v in value.items() if v and v[0] != ""}


def _gold_value(value: Any, schema: dict[str, Any]) -> Any:
    """The gold form of one accepted value: dicts (and lists of dicts) lose their per-key lists."""
    kind = schema.get("type")
    items = (schema.get("items") or {}).get("type") if isinstance(schema.get("items"), dict) else None
    if kind == "dict":
        return _collapse_dict(value)
    if kind in ("array", "tuple") and items == "dict" and isinstance(value, list):
        return [_collapse_dict(v) for v in value]
    return value


def _bfcl_gold(answer: Any, where: str, functions: list[dict[str, Any]] | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """BFCL possible answer -> (gold calls, accepted lists per call).

    The gold takes each parameter's first accepted value and leaves the parameter out when that
    value is "" (BFCL's "may be omitted"), except a schema-required one, which takes its first
    value that is not "". Dict values (and lists of dicts) are given by BFCL as per-key accepted
    lists; the gold takes the first value of each key (leaving out keys whose first is "").
    An optional answer parameter that the schema lacks is left out. Every gold passes BFCL's
    checker except on 4 entries no call can pass (tests/test_bfcl_checker.py).
    """
    if not isinstance(answer, list) or not answer:
        raise ValueError(f"{where}: 'ground_truth' must be a non-empty list of {{function: {{param: [values]}}}}")
    schemas = {f.get("name"): f for f in functions or []}
    calls, accepted = [], []
    for entry in answer:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"{where}: each ground_truth entry must be a one-key object {{function: params}}")
        (name, params), = entry.items()
        if not isinstance(params, dict) or not all(isinstance(v, list) for v in params.values()):
            raise ValueError(f"{where}: parameters of {name!r} must map names to lists of accepted values")
        spec = (schemas.get(name) or {}).get("parameters") or {}
        props, required = spec.get("properties") or {}, set(spec.get("required") or [])
        gold = {}
        for k, v in params.items():
            if k not in props and props and "" in v:
                continue  # an answer key the schema lacks (parallel_multiple_26): BFCL rejects it if given
            first = _first_accepted(v, k in required) if v else ""
            if first != "" or (k in required and v):
                gold[k] = _gold_value(first, props.get(k) or {})
        calls.append({"name": name, "parameters": gold})
        accepted.append({"name": name, "parameters": params})
    return calls, accepted


BFCL_NO_CALL_RESPONSE = "I cannot do this with the available tools."


def load_bfcl(questions_path: PathLike, answers_path: PathLike | None = None) -> list[Example]:
    """BFCL questions + possible answers -> examples (source "bfcl"), joined on ``id``.

    ``questions_path`` may be a path or a category name resolved in the installed bfcl-eval
    ("simple_python"); ``answers_path`` defaults to the matching possible-answer file (next to a
    path, or in bfcl-eval). Only single-turn entries are supported. Each row adds ``"accepted"``:
    JSON text of ``[{"name", "parameters": {param: [accepted values]}}]`` (BFCL's answer lists),
    ``"functions"``: JSON text of the entry's function schemas, and ``"category"`` (from the file
    name, e.g. "live_simple"); :mod:`rvpo.tasks.toolcall.bfcl` scores with them.
    Irrelevance categories (file name contains "irrelevance", no answers file) become no-call
    examples: the gold is a ``<response>`` and ``accepted`` is "[]".
    """
    qpath = resolve_bfcl_file(questions_path)
    category = bfcl_category(qpath)
    no_call = answers_path is None and "irrelevance" in qpath.name
    if no_call:
        apath = None
    elif answers_path is not None:
        apath = resolve_bfcl_file(answers_path, answers=True)
    elif Path(questions_path).is_file():
        apath = _bfcl_answers_next_to(qpath)
    else:
        apath = resolve_bfcl_file(questions_path, answers=True)
    answers: dict[str, tuple[str, Any]] = {}
    for line, rec in _records(apath) if apath else ():
        if not isinstance(rec.get("id"), str) or "ground_truth" not in rec:
            raise ValueError(f"{apath} line {line}: expected {{'id': str, 'ground_truth': [...]}}")
        answers[rec["id"]] = (f"{apath} line {line}", rec["ground_truth"])
    out = []
    for line, rec in _records(qpath):
        where = f"{qpath} line {line}"
        if not isinstance(rec.get("id"), str):
            raise ValueError(f"{where}: expected an object with a string 'id'")
        turns, functions = rec.get("question"), rec.get("function")
        if not isinstance(turns, list) or len(turns) != 1 or not isinstance(turns[0], list):
            raise ValueError(f"{where}: 'question' must hold exactly one turn (multi-turn BFCL is not supported)")
        if not isinstance(functions, list) or not all(isinstance(f, dict) and "name" in f for f in functions):
            raise ValueError(f"{where}: 'function' must be a list of function schemas with a 'name'")
        if no_call:
            calls, accepted = [], []
        elif rec["id"] not in answers:
            raise ValueError(f"{where}: id {rec['id']!r} has no possible answer in {apath}")
        else:
            awhere, answer = answers[rec["id"]]
            calls, accepted = _bfcl_gold(answer, awhere, functions)
        extra_system = [m["content"] for m in turns[0] if isinstance(m, dict) and m.get("role") == "system"]
        messages = [m for m in turns[0] if isinstance(m, dict) and m.get("role") != "system"]
        system = "\n".join(extra_system + [system_prompt([bfcl_compact_signature(f) for f in functions])])
        if calls:
            think = "I call " + ", ".join(dict.fromkeys(c["name"] for c in calls)) + " with the values from the request."
            gold = render_output(calls, think=think)
        else:
            gold = render_output(None, think="None of the available tools fits this request.",
                                 response=BFCL_NO_CALL_RESPONSE)
        prompt = [{"role": "system", "content": system}]
        prompt += [{"role": m.get("role"), "content": m.get("content")} for m in messages]
        row = {"prompt": prompt,
               "ground_truth": gold, "id": rec["id"], "source": "bfcl",
               "accepted": json.dumps(accepted, ensure_ascii=False),
               "functions": json.dumps(functions, ensure_ascii=False), "category": category}
        out.append(validate_example(row, where))
    return out


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def _load_rvpo_examples(path: PathLike) -> list[Example]:
    return [validate_example(rec, f"{path} line {line}") for line, rec in _records(path)]


BFCL_GROUPS: dict[str, tuple[str, ...]] = {
    "ast": ("simple_python", "multiple", "parallel", "parallel_multiple",
            "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
    "non_live": ("simple_python", "multiple", "parallel", "parallel_multiple"),
    "live": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple"),
}
"""``bfcl:GROUP`` names: the Python AST categories BFCL's checker scores here."""


def load_examples(spec: str) -> list[Example]:
    """Examples from a spec: "builtin" (= "builtin:train"), "builtin:test", "builtin:train:SEED",
    "bfcl:CATEGORY", "bfcl:CAT1,CAT2" or "bfcl:GROUP" (``BFCL_GROUPS``; resolved in the installed
    bfcl-eval), or a file path dispatched by extension
    and contents (.parquet: ToolRL verl or rvpo examples; .json/.jsonl: ToolRL SFT, BFCL questions
    (answers next to them), or rvpo examples).
    """
    if spec == "builtin" or spec.startswith("builtin:"):
        parts = spec.split(":")
        split = parts[1] if len(parts) > 1 and parts[1] else "train"
        try:
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ValueError(f"bad spec {spec!r}: the seed in builtin:SPLIT:SEED must be an integer") from None
        splits = builtin_splits(seed=seed)
        if split not in splits or len(parts) > 3:
            raise ValueError(f"bad spec {spec!r}: use builtin, builtin:train, builtin:test or builtin:SPLIT:SEED")
        return splits[split]
    if spec.startswith("bfcl:"):
        names = spec[len("bfcl:"):]
        cats = list(BFCL_GROUPS[names]) if names in BFCL_GROUPS else [c for c in names.split(",") if c]
        if not cats:
            raise ValueError(f"bad spec {spec!r}: name a category, e.g. bfcl:simple_python, bfcl:live_simple,multiple "
                             f"or a group ({', '.join(sorted(BFCL_GROUPS))})")
        return [row for c in cats for row in load_bfcl(c)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"no such file: {spec!r} (or use 'builtin', 'builtin:test', 'bfcl:simple_python')")
    if path.suffix == ".parquet":
        if "reward_model" not in _read_parquet(path, schema_only=True).names:  # rvpo rows saved as parquet
            rows = _read_parquet(path).to_pylist()
            return [validate_example(r, f"{path} row {i}") for i, r in enumerate(rows, start=1)]
        return load_toolrl_parquet(path)
    if path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: unknown extension {path.suffix!r} (expected .parquet, .json or .jsonl)")
    first = _first_record(path)
    if {"instruction", "input", "output"} <= first.keys():
        return load_toolrl_sft(path)
    if {"question", "function"} <= first.keys():
        return load_bfcl(path)
    if {"prompt", "ground_truth"} <= first.keys():
        return _load_rvpo_examples(path)
    if "ground_truth" in first and "id" in first:
        raise ValueError(f"{path}: this looks like a BFCL possible-answer file; pass the questions file instead")
    raise ValueError(f"{path}: unrecognised records (keys {sorted(first)[:8]}); expected ToolRL SFT, BFCL or rvpo examples")
