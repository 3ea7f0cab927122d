"""``rvpo eval toolcall``: format rate, exact-match rate and mean correctness on held-out prompts.

    rvpo eval toolcall                                   # embedded model, built-in test split
    rvpo eval toolcall --model runs/train-20261126-1500  # a trained run (LoRA merged into base)
    rvpo eval toolcall --data ../shared/data/toolrl/rlla_4k_test.parquet --limit 20 --json
    rvpo eval toolcall --data bfcl:live_simple           # + BFCL's AST check (needs bfcl-eval installed)
    rvpo eval toolcall --data bfcl:ast                   # the 8 Python AST categories: BFCL-style summary

BFCL rows are also scored by BFCL's AST rules (rvpo.tasks.toolcall.bfcl): per category, non-live
and live overall as on BFCL's leaderboard (over the categories run), and the format rate.

Writes a run directory (``--out``, default ``runs/``) with ``config.json``, ``results.json``
(headline numbers) and ``examples.jsonl`` (one record per prompt: completion, scores, parse errors).
"""

from __future__ import annotations

import sys
import time

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "toolcall",
        help="tool-call eval: format rate, exact match, mean correctness (ToolRL parsers)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--model", default=None,
                   help="the embedded model name (default), a model folder, a run directory or a checkpoint")
    p.add_argument("--data", default="builtin:test",
                   help="held-out examples: builtin:test, bfcl:CATEGORY[,CATEGORY...], bfcl:ast|non_live|live, "
                        "or a ToolRL parquet / SFT json / BFCL file")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N examples (0 = all)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generation budget per prompt")
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="weights' dtype for inference (auto: chosen per device by rvpo.model.precision)")
    p.add_argument("--out", default="runs", help="root folder for the eval's run directory")
    p.add_argument("--json", action="store_true", help="print the headline numbers as JSON on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    """A front over the tool-call task's own eval (``ToolCallTask.evaluate``: the scoring, BFCL's included),
    printed and saved with this command's tables and keys."""
    from rvpo.cli.eval_task import load_model, task_rows
    from rvpo.runs import check_run_root, new_run_dir, to_json, write_eval_outputs
    from rvpo.tasks.toolcall.eval import bfcl_table, markdown_table, summary_row
    from rvpo.tasks.toolcall.task import make_task

    if args.limit < 0:
        raise UserError(f"--limit: expected an int >= 0, got {args.limit}")
    if args.max_new_tokens < 1 or args.batch_size < 1:
        raise UserError("--max-new-tokens and --batch-size: expected ints >= 1")
    task = make_task()
    examples = task_rows(task, args.data, args.limit, what="examples")
    check_run_root(args.out)
    t0 = time.perf_counter()
    model, tok, label = load_model(args.model, args.precision)
    res = task.evaluate(model, tok, examples, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    for key in ("metrics", "ci95"):  # the task's summary of the numbers below, which keep their own keys here
        res.pop(key)
    res["model"] = label
    res["data"] = args.data
    res["total_seconds"] = round(time.perf_counter() - t0, 2)
    with new_run_dir(args.out, "eval-toolcall") as run_dir:
        head = summary_row(res)
        head["run_dir"] = str(run_dir)
        config = {k: v for k, v in vars(args).items() if k != "func"}
        write_eval_outputs(run_dir, config, res["records"], head)
    if args.json:
        print(to_json(head))
    else:
        print(markdown_table([(str(res["model"]), head)]))
        if res.get("bfcl"):
            print("\nBFCL (AST checker, % of entries):\n" + bfcl_table(res))
        if any(ex.get("category") and "bfcl_valid" not in r for ex, r in zip(examples, res["records"], strict=True)):
            print("note: Java/JavaScript BFCL rows are not checked by BFCL's rules here (format and "
                  "correctness only)", file=sys.stderr)
        print(f"run dir: {run_dir}", file=sys.stderr)
    return 0
