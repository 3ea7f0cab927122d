"""``rvpo eval constraints``: IFEval's four numbers (prompt/instruction level, strict/loose) and more.

    rvpo eval constraints                                        # embedded model, held-out split
    rvpo eval constraints --data ifeval --limit 100 --max-new-tokens 256 --precision auto
    rvpo eval constraints --data ifeval:../shared/data/ifeval/input_data.jsonl --responses answers.jsonl --json
    rvpo eval constraints --model runs/train-20261201-1500 --json

``--responses FILE`` scores given answers without a model: JSONL rows ``{"key"|"id", "response"}``
(matched to ``--data``) or IFEval rows plus ``"response"`` (scored on their own instructions).
Writes a run directory (``--out``) with ``config.json``, ``results.json`` and ``examples.jsonl``
(per prompt: instructions, strict/loose verdicts, response). All 25 IFEval instruction types are
checked (three need ``langdetect``, as the reference does: without it the command stops with an
install hint). An instruction id rvpo does not know counts as not followed (never dropped) and is
reported (``n_unsupported``); if no instruction at all is known, the command fails.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("constraints", help="IFEval-style eval: prompt/instruction accuracy, strict and loose",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="builtin:test",
                   help="builtin:test (held-out split), builtin:train, ifeval (../shared/data/ifeval), "
                        "ifeval:PATH, or a JSONL of IFEval rows / task rows")
    p.add_argument("--responses", default=None,
                   help="score these answers instead of generating: JSONL of {key|id, response} or IFEval row + response")
    p.add_argument("--model", default=None, help="the embedded model (default), a model folder or a run directory")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N prompts (0 = all)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="generation budget per prompt (the task trains at 48)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="model precision (auto: bf16 where the CPU has bf16 matrix units)")
    p.add_argument("--task-options", default="{}", help='JSON dict of task options, e.g. \'{"n_test": 256}\'')
    p.add_argument("--out", default="runs", help="root folder for the eval's run directory")
    p.add_argument("--json", action="store_true", help="print the four numbers and per-row verdicts as JSON")
    p.set_defaults(func=run)


def read_responses(path: str, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Rows and responses from ``path`` (see the module docstring); errors name the file and line."""
    from rvpo.tasks.constraints.eval import ifeval_row

    p = _readable_file(path)
    by_key = {}
    for r in rows:
        by_key[str(r.get("key"))] = r
        by_key[str(r.get("id"))] = r
    out_rows, out_resp = [], []
    from rvpo.runs import iter_json_records

    try:
        records = [(r.value, r.where) for r in iter_json_records(p, where=f"--responses {p}")]
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"--responses {p}: cannot read: {e.strerror or e}") from None
    for obj, where in records:
        if not isinstance(obj.get("response"), str):
            raise UserError(f"{where}: expected an object with a string 'response'")
        if "instruction_id_list" in obj:
            try:
                out_rows.append(ifeval_row(obj, where))
            except ValueError as e:
                raise UserError(str(e)) from None
        else:
            key = obj.get("key", obj.get("id"))
            if key is None:
                raise UserError(f"{where}: needs 'key' or 'id' (or a full IFEval row)")
            if str(key) not in by_key:
                raise UserError(f"{where}: key {key!r} is not in --data")
            out_rows.append(by_key[str(key)])
        out_resp.append(obj["response"])
    if not out_rows:
        raise UserError(f"--responses {p}: no rows")
    return out_rows, out_resp


def _readable_file(path: str) -> Path:
    """``--responses`` as a readable regular file (a folder, FIFO or unreadable file is a UserError)."""
    from rvpo.userfiles import check_regular_file

    try:
        return check_regular_file(Path(path).expanduser(), "--responses")
    except ValueError as e:
        raise UserError(str(e)) from None


def _rows(args, task) -> list[dict]:
    if args.responses:
        p = _readable_file(args.responses)
        try:
            with p.open("rb") as f:
                head = f.read(1 << 20).decode("utf-8", errors="replace")
        except OSError as e:
            raise UserError(f"--responses {p}: cannot read: {e.strerror or e}") from None
        first = next((ln for ln in head.splitlines() if ln.strip()), "")
        if "instruction_id_list" in first:
            return []  # self-contained IFEval rows: --data is not needed
    try:
        return task.load(args.data, "eval")
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"--data {args.data!r}: {e}") from None


def run(args) -> int:
    """Scores given answers (``--responses``), or a front over the task's own eval (``ConstraintsTask.evaluate``:
    greedy answers, IFEval's strict and loose checks), printed and saved with this command's table and keys."""
    from rvpo.cli.eval_task import load_model
    from rvpo.runs import check_run_root, new_run_dir, write_eval_outputs
    from rvpo.tasks.constraints.eval import score_responses
    from rvpo.tasks.constraints.task import make_task

    if args.limit < 0 or args.max_new_tokens < 1 or args.batch_size < 1:
        raise UserError("--limit >= 0, --max-new-tokens >= 1 and --batch-size >= 1 expected")
    try:
        task = make_task(**json.loads(args.task_options))
    except (json.JSONDecodeError, TypeError) as e:
        raise UserError(f"--task-options: {e}") from None
    rows = _rows(args, task)
    check_run_root(args.out)
    t0 = time.perf_counter()
    if args.responses:
        rows, responses = read_responses(args.responses, rows)
        rows, responses = (rows[: args.limit], responses[: args.limit]) if args.limit else (rows, responses)
        _require_langdetect(rows)
        model_name = None
    else:
        rows = rows[: args.limit] if args.limit else rows
        if not rows:
            raise UserError(f"--data {args.data!r}: no prompts")
        _require_langdetect(rows)
        model, tok, model_name = load_model(args.model, args.precision)
    from rvpo.tasks.constraints.instructions import MissingDependencyError

    try:
        res = score_responses(rows, responses) if args.responses else task.evaluate(
            model, tok, rows, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    except (ValueError, MissingDependencyError) as e:
        raise UserError(str(e)) from None
    if res["n_unsupported"] and res["n_unsupported"] == res["n_instructions"]:
        raise UserError(f"--data/--responses: none of the {res['n_instructions']} instructions is of a type rvpo "
                        f"checks (ids: {', '.join(res['unsupported_ids'][:5])}); nothing to score")
    if res["n_unsupported"]:
        print(f"rvpo eval constraints: warning: {res['n_unsupported']} instruction(s) of unknown type counted as "
              f"not followed ({', '.join(res['unsupported_ids'][:5])})", file=sys.stderr)
    head = {"model": model_name, "data": args.data, "responses": args.responses, "n": res["n"],
            "metrics": res["metrics"], "ci95": res["ci95"], "worst_type_name": res["worst_type_name"],
            "per_type_n": res["per_type_n"], "n_instructions": res["n_instructions"],
            "n_unsupported": res["n_unsupported"], "unsupported_ids": res["unsupported_ids"],
            "n_dropped_prompts": res["n_dropped_prompts"], "max_new_tokens": args.max_new_tokens,
            "total_seconds": round(time.perf_counter() - t0, 2)}
    with new_run_dir(args.out, "eval-constraints") as run_dir:
        head["run_dir"] = str(run_dir)
        write_eval_outputs(run_dir, {k: v for k, v in vars(args).items() if k != "func"}, res["records"], head)
    if args.json:
        from rvpo.runs import to_json

        verdicts = [{k: r.get(k) for k in ("id", "key", "types", "strict", "loose", "follow_all_strict",
                                           "follow_all_loose", "unsupported")} for r in res["records"]]
        print(to_json({**head, "records": verdicts}))
    else:
        _print_table(head)
        print(f"run dir: {run_dir}", file=sys.stderr)
    return 0


def _require_langdetect(rows: list[dict]) -> None:
    """Fail before any model loads when rows use IFEval's language checks and langdetect is missing."""
    import importlib.util

    from rvpo.tasks.constraints.instructions import LANGDETECT_HINT, NEEDS_LANGDETECT

    def types(row: dict) -> set:
        raw = row.get("instructions") or "[]"
        try:
            return {it.get("type") for it in (json.loads(raw) if isinstance(raw, str) else raw)}
        except (ValueError, AttributeError):
            return set()

    if any(types(r) & NEEDS_LANGDETECT for r in rows) and importlib.util.find_spec("langdetect") is None:
        raise UserError("rvpo eval constraints needs langdetect for IFEval's language checks "
                        f"(response_language, english_lowercase, english_capital): {LANGDETECT_HINT}")


def _print_table(head: dict) -> None:
    m, ci = head["metrics"], head["ci95"]
    print(f"n = {head['n']} prompts, {head['n_instructions']} instructions"
          f" ({head['n_unsupported']} of unknown type, counted as not followed)")
    print("| metric | value [95% CI] |\n| --- | --- |")
    names = ["prompt_strict", "prompt_loose", "inst_strict", "inst_loose", "worst_type", "quality"]
    names += sorted(k for k in m if k.startswith("type/"))
    for k in names:
        v = m.get(k)
        label = f"worst_type ({head['worst_type_name']})" if k == "worst_type" else k
        print(f"| {label} | " + ("n/a" if v is None else f"{v:.3f} [{ci[k][0]:.2f}, {ci[k][1]:.2f}]") + " |")
