"""``rvpo eval task NAME``: any task's held-out evaluation (``Task.evaluate``), one model or a run's checkpoints.

    rvpo eval task neglect                                      # the embedded model on the task's held-out split
    rvpo eval task neglect --model runs/train-20261205-1100     # a trained run (LoRA merged into its base)
    rvpo eval task neglect --checkpoints runs/train-20261205-1100   # base, every checkpoint and final/
    rvpo eval task constraints --task-option families=[no_comma,title] --limit 16
    rvpo eval task my_pkg.tasks:make_task --data held_out.jsonl   # your own task (docs/tasks.md)
    rvpo eval task toolcall --responses answers.jsonl           # score given answers, no model (Task.score)

The numbers are the ones ``rvpo train`` puts in its before/after table for the same task, data and
generation settings. ``rvpo eval toolcall`` and ``rvpo eval constraints`` run the same ``Task.evaluate``
(:func:`task_rows`, :func:`load_model`) and print it as their benchmark (BFCL's categories, IFEval's four
numbers; constraints also scores given answers); ``rvpo eval healthbench|gpqa`` answer with any policy,
an endpoint included, and grade with the judge their flags name.

``--responses FILE`` scores answers that are already written, without a model: a JSONL file (or a JSON
array) of objects with a string ``"response"``, one per held-out row; with ``"id"`` on every line, matched
to the rows' ids (any order), else taken in row order. It runs ``Task.score`` (a task that has none is an
error) inside the task's session (the rubric task's judge), and writes the same run directory.

Writes a run directory (``--out``, default ``runs/``) with ``config.json``, ``results.json`` (n, every
metric with its 95% CI) and ``examples.jsonl`` (the task's records); with ``--checkpoints``, one such
folder per model plus ``sweep.json``, ``sweep.md`` and ``sweep.png`` of the task's target metric.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("task", help="any task's held-out eval (Task.evaluate): a model, or a run's checkpoints",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("task", metavar="NAME", help="a built-in task, pkg.module:factory or path/to/task.py:factory")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option (YAML value; repeatable); `rvpo train --help-config --task NAME` lists them")
    p.add_argument("--model", default=None,
                   help="the embedded model name (default), a model folder, a run directory or a checkpoint")
    p.add_argument("--checkpoints", default=None, metavar="RUN_DIR",
                   help="evaluate the base model, every checkpoint and final/ of an rvpo train run directory")
    p.add_argument("--responses", default=None, metavar="FILE",
                   help="score these answers instead of generating (Task.score): JSONL of {\"response\"[, \"id\"]}, "
                        "one per row; no --model or --checkpoints")
    p.add_argument("--no-base", action="store_true", help="with --checkpoints: skip the base model (step 0)")
    p.add_argument("--data", default="", help="held-out rows (a spec the task reads); empty: the task's default")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N rows (0 = all)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generation budget per prompt")
    p.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy; above 0, sampled (tasks whose evaluate() takes it)")
    p.add_argument("--samples", type=int, default=1, help="completions scored per prompt (with --temperature > 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="weights' dtype for inference (auto: chosen per device by rvpo.model.precision)")
    p.add_argument("--out", default="runs", help="root folder for the eval's run directory")
    p.add_argument("--json", action="store_true", help="print the headline numbers as JSON on stdout")
    p.set_defaults(func=run)


def task_rows(task: Any, data: str, limit: int, seed: int = 0, what: str = "rows") -> list[dict]:
    """The first ``limit`` (0: all) of the task's held-out rows for ``--data`` (empty: the task's default
    held-out split); :class:`UserError` names ``--data`` for a missing, bad or empty one."""
    spec = data or task.default_eval_data
    try:
        rows = list(task.load(spec, "eval", seed=seed))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"--data {spec!r}: {e}") from None
    rows = rows[:limit] if limit else rows
    if not rows:
        raise UserError(f"--data {spec!r}: no {what}")
    return rows


def load_model(name: str | None, precision: str) -> tuple[Any, Any, str]:
    """``(model, tokenizer, label)``: the policy ``--model`` names (LoRA merged into its base; None: the
    embedded default, which ``label`` then names); :class:`UserError` for one that cannot be loaded."""
    from rvpo.model.loading import DEFAULT_MODEL, ModelNotFoundError
    from rvpo.model.policy import load_policy

    try:
        model, tok = load_policy(name, precision=precision)
    except (FileNotFoundError, ModelNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    return model, tok, name or DEFAULT_MODEL


def _task_and_rows(args) -> tuple[Any, list[dict]]:
    from rvpo.tasks.base import get_task
    from rvpo.train.config import ConfigError, parse_set

    try:
        raw = parse_set(args.task_option)
    except ConfigError as e:
        raise UserError(str(e).replace("--set", "--task-option")) from None
    try:
        options = {k: yaml.safe_load(v) for k, v in raw.items()}
        task = get_task(args.task, options)
    except (ValueError, yaml.YAMLError) as e:
        raise UserError(str(e)) from None
    return task, task_rows(task, args.data, args.limit, seed=args.seed)


def read_responses(path: str, rows: list[dict]) -> list[str]:
    """One response per row from ``--responses`` ``path`` (see the module docstring), in row order.

    :class:`UserError` naming the file (and line) for an unreadable file, a bad line, a missing
    ``"response"``, ids on some lines only, an id that is not a row's (or given twice), a row left without
    a response, or a count that differs from the rows'.
    """
    from rvpo.runs import iter_json_records
    from rvpo.userfiles import check_regular_file

    try:
        p = check_regular_file(Path(path).expanduser(), "--responses")
    except ValueError as e:
        raise UserError(str(e)) from None
    name = f"--responses {p}"
    try:
        records = [(r.value, r.where) for r in iter_json_records(p, where=name)]
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{name}: cannot read: {e.strerror or e}") from None
    if not records:
        raise UserError(f"{name}: no responses")
    for obj, where in records:
        if not isinstance(obj.get("response"), str):
            raise UserError(f"{where}: expected an object with a string 'response'")
    with_id = [where for obj, where in records if "id" in obj]
    if not with_id:
        if len(records) != len(rows):
            where = records[len(rows)][1] if len(records) > len(rows) else name
            raise UserError(f"{where}: {len(records)} responses for {len(rows)} rows (without ids, one response per "
                            "row in row order; check --data and --limit)")
        return [obj["response"] for obj, _ in records]
    if len(with_id) != len(records):
        where = next(w for obj, w in records if "id" not in obj)
        raise UserError(f"{where}: no 'id' while other lines have one (give every line an id, or none)")
    index = {str(r.get("id")): i for i, r in enumerate(rows) if r.get("id") is not None}
    if len(index) != len(rows):
        raise UserError(f"{name}: the rows of --data carry no unique ids to match; give the responses in row "
                        "order without 'id'")
    out: list[str | None] = [None] * len(rows)
    for obj, where in records:
        key = str(obj["id"])
        if key not in index:
            raise UserError(f"{where}: id {obj['id']!r} is not among the {len(rows)} rows (check --data and --limit)")
        if out[index[key]] is not None:
            raise UserError(f"{where}: id {obj['id']!r} given twice")
        out[index[key]] = obj["response"]
    missing = [str(rows[i].get("id")) for i, v in enumerate(out) if v is None]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{name}: {len(records)} responses for {len(rows)} rows: no response for id {shown}")
    return [str(v) for v in out]


def _score(args, task: Any, rows: list[dict], responses: list[str], run_dir) -> dict:
    """``--responses``: ``task.score`` on the given answers (in the task's session) and the eval's run folder."""
    from rvpo.runs import write_eval_outputs

    t0 = time.perf_counter()
    try:
        with task.session(run_dir):
            res = task.score(rows, responses)
    except NotImplementedError as e:
        raise UserError(str(e) or f"task {task.name or args.task!r} cannot score given responses") from None
    except ValueError as e:  # e.g. a response the task's checker refuses
        raise UserError(f"--responses {args.responses}: {e}") from None
    head = {"task": task.name or args.task, "model": None, "responses": args.responses, "data": args.data,
            "n": res.get("n", len(rows)), "metrics": res.get("metrics", {}), "ci95": res.get("ci95", {}),
            "total_seconds": round(time.perf_counter() - t0, 2), "run_dir": str(run_dir)}
    config = {k: v for k, v in vars(args).items() if k != "func"}
    write_eval_outputs(run_dir, config, list(res.get("records", [])), head)
    return head


def _evaluate(args, task: Any, rows: list[dict], model_name: str | None, run_dir) -> dict:
    """Load ``model_name`` (merged), run ``task.evaluate`` on ``rows`` and write the eval's run folder."""
    from rvpo.runs import write_eval_outputs
    from rvpo.tasks.base import accepts_keyword

    t0 = time.perf_counter()
    model, tok, label = load_model(model_name, args.precision)
    wanted = {"temperature": args.temperature, "samples": args.samples, "seed": args.seed}
    kw = {k: v for k, v in wanted.items() if accepts_keyword(task.evaluate, k)}
    if (args.temperature != 0 or args.samples != 1) and "temperature" not in kw:
        print(f"note: task {task.name or args.task!r} evaluates greedily (its evaluate() takes no temperature)",
              file=sys.stderr)
    with task.session(run_dir):
        res = task.evaluate(model, tok, rows, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, **kw)
    head = {"task": task.name or args.task, "model": label, "data": args.data,
            "n": res.get("n", len(rows)), "metrics": res.get("metrics", {}), "ci95": res.get("ci95", {}),
            "total_seconds": round(time.perf_counter() - t0, 2), "run_dir": str(run_dir)}
    config = {k: v for k, v in vars(args).items() if k != "func"}
    write_eval_outputs(run_dir, config, list(res.get("records", [])), head)
    return head


def run(args) -> int:
    from rvpo.cli.eval_healthbench import sweep_targets_or_error
    from rvpo.runs import check_run_root, new_run_dir, to_json
    from rvpo.tasks.base import can_score, markdown_table

    if args.limit < 0:
        raise UserError(f"--limit: expected an int >= 0, got {args.limit}")
    if args.max_new_tokens < 1 or args.batch_size < 1 or args.samples < 1:
        raise UserError("--max-new-tokens, --batch-size and --samples: expected ints >= 1")
    if args.responses is not None and (args.model is not None or args.checkpoints):
        raise UserError("--responses scores given answers without a model: leave out --model and --checkpoints")
    targets = sweep_targets_or_error(args) if args.checkpoints else None  # also refuses --model with it
    task, rows = _task_and_rows(args)
    if args.responses is not None and not can_score(task):
        raise UserError(f"--responses: task {task.name or args.task!r} cannot score given responses (it has no "
                        "score(); only a model can be evaluated on it)")
    responses = read_responses(args.responses, rows) if args.responses is not None else None
    check_run_root(args.out)
    label = (task.name or args.task).replace("/", "_").replace(":", "_")
    if targets is not None:
        return _sweep(args, task, rows, label, targets)
    with new_run_dir(args.out, f"eval-{label}") as run_dir:
        if responses is not None:
            head = _score(args, task, rows, responses, run_dir)
        else:
            head = _evaluate(args, task, rows, args.model, run_dir)
    if args.json:
        print(to_json(head))
    else:
        print(markdown_table(task, [(head["model"] or f"responses: {args.responses}", head)]))
        if task.describe_eval():
            print("\n" + task.describe_eval())
        print(f"run dir: {run_dir}", file=sys.stderr)
    return 0


def _sweep(args, task: Any, rows: list[dict], label: str, targets: list) -> int:
    """``--checkpoints``: the task's eval of each model of the run; the target metric across steps."""
    from rvpo.cli.eval_healthbench import report_sweep

    metric = task.target_metric or (list(task.eval_metrics) or [""])[0]
    if not metric:
        raise UserError(f"task {args.task!r} names no target_metric or eval_metrics: nothing to sweep")

    def evaluate(target, out_dir) -> dict:
        head = _evaluate(args, task, rows, target.model, out_dir)
        return {"score": head["metrics"].get(metric), "ci95": head["ci95"].get(metric), "n": head["n"]}

    config = {"task": args.task, "task_options": args.task_option, "limit": args.limit,
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "samples": args.samples}
    return report_sweep(args, label, config, targets, evaluate, metric, label)
