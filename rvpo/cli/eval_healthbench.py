"""``rvpo eval healthbench``: answer rubric examples with a policy, grade each item with an LLM judge."""

from __future__ import annotations

import argparse
import math
import sys

from rvpo.cli import UserError
from rvpo.cli._policy import add_policy_args, build_policy, load_policy


def register(sub) -> None:
    """Add the subcommand's parser to ``rvpo eval``'s subparsers."""
    p = sub.add_parser("healthbench", help="HealthBench-style rubric evaluation (policy answers, LLM judge grades)",
                       description="Answer every example of a HealthBench (or Rubrics-as-Rewards) file with the "
                                   "policy, grade every rubric item with an OpenAI-compatible judge, and report "
                                   "the HealthBench score (overall, per axis, per theme, bootstrap SE). The judge "
                                   "API key is read from RVPO_JUDGE_API_KEY (or OPENAI_API_KEY) only.")
    p.add_argument("--data", required=True, help="JSONL/JSON/Parquet file in the HealthBench or Rubrics-as-Rewards schema")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a malformed row: stop with file:line, or skip it and report the count")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    add_policy_args(p, seed_help="sampling seed and bootstrap seed")
    j = p.add_argument_group("judge (OpenAI-compatible; defaults from RVPO_JUDGE_* environment variables)")
    j.add_argument("--judge-url", default=None,
                   help="judge server root including /v1 (env RVPO_JUDGE_BASE_URL); the same flag as in rvpo train "
                   "and rvpo judge check")
    j.add_argument("--judge-base-url", dest="judge_url", default=None, help=argparse.SUPPRESS)  # its old name
    j.add_argument("--judge-model", default=None, help="judge model name (env RVPO_JUDGE_MODEL)")
    j.add_argument("--judge-concurrency", type=int, default=None, help="judge requests in flight (default: JudgeConfig's)")
    j.add_argument("--judge-timeout", type=float, default=None, help="judge per-attempt timeout in seconds")
    j.add_argument("--judge-json-mode", action="store_true",
                   help="ask the judge for JSON output (response_format json_object; constrained on `rvpo judge serve`)")
    j.add_argument("--judge-cache", default=None, help="verdict cache (sqlite) path; 'none' disables (env RVPO_JUDGE_CACHE)")
    j.add_argument("--judge-rpm", type=float, default=None,
                   help="client-side limit: judge HTTP attempts per minute (env RVPO_JUDGE_RPM; default none)")
    j.add_argument("--judge-tpm", type=float, default=None,
                   help="client-side limit: judge tokens per minute (env RVPO_JUDGE_TPM; default none)")
    add_checkpoint_args(p)
    p.add_argument("--out", default="runs", help="folder under which the run directory is created")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=run)


def add_checkpoint_args(p) -> None:
    """``--checkpoints RUN_DIR`` and ``--no-base`` (shared with ``rvpo eval gpqa``)."""
    p.add_argument("--checkpoints", default=None, metavar="RUN_DIR",
                   help="evaluate the base model, every checkpoint and final/ of an `rvpo train` run directory "
                        "(instead of --model); writes sweep.json, sweep.md and sweep.png (score against step)")
    p.add_argument("--no-base", action="store_true", help="with --checkpoints: skip the base model (step 0)")


def sweep_policy(args, target):
    """The local policy of one sweep target (a LoRA checkpoint is loaded onto its base and merged)."""
    from rvpo.evals.policy import make_policy

    return make_policy(target.model, None, None, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                       temperature=args.temperature, seed=args.seed, precision=getattr(args, "precision", "auto"))


def sweep_targets_or_error(args) -> list:
    """The sweep's models (:func:`rvpo.evals.checkpoints.sweep_targets`); :class:`UserError` for a bad folder."""
    from rvpo.evals.checkpoints import sweep_targets

    if getattr(args, "policy_base_url", None) or args.model:  # rvpo eval task has no --policy-base-url
        raise UserError("--checkpoints evaluates the run's own models: leave out --model and --policy-base-url")
    try:
        return sweep_targets(args.checkpoints, include_base=not args.no_base)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None


def _judge_config(args):
    """The judge settings the options and environment describe; :class:`UserError` if they are invalid."""
    from rvpo.judge import JudgeConfig

    overrides = {"base_url": args.judge_url, "model": args.judge_model, "concurrency": args.judge_concurrency,
                 "timeout_s": args.judge_timeout, "json_mode": args.judge_json_mode or None,
                 "requests_per_minute": args.judge_rpm, "tokens_per_minute": args.judge_tpm}
    if args.judge_cache is not None:
        overrides["cache_path"] = "" if args.judge_cache.lower() == "none" else args.judge_cache
    if args.judge_timeout is not None and not math.isfinite(args.judge_timeout):
        raise UserError(f"--judge-timeout must be a finite number of seconds > 0, got {args.judge_timeout}")
    for opt, v in (("--judge-rpm", args.judge_rpm), ("--judge-tpm", args.judge_tpm)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{opt} must be a finite number > 0, got {v}")
    try:
        cfg = JudgeConfig.from_env(**overrides)
    except (ValueError, TypeError) as e:
        raise UserError(f"judge: {e}") from None
    if not cfg.base_url:
        raise UserError("judge: no endpoint; pass --judge-url or set RVPO_JUDGE_BASE_URL "
                        "(a local one: `rvpo judge serve`)")
    return cfg


def run(args) -> int:
    """Run the evaluation; print the report; return the exit code (1 when the eval failed: no score).

    Every input is checked (options, judge settings, the data file, the model folder, ``--out``)
    before the policy model loads and before the run directory exists; a failure after that removes
    the folder again unless the run already wrote its results.
    """
    from rvpo.evals.policy import PolicyError
    from rvpo.judge import JudgeClient
    from rvpo.runs import check_run_root, new_run_dir, to_json
    from rvpo.tasks.rubric import RubricDataError, load_rubric_file
    from rvpo.tasks.rubric.healthbench import format_report, run_healthbench

    targets = sweep_targets_or_error(args) if args.checkpoints else None
    policy = build_policy(args, load=False)
    cfg = _judge_config(args)
    try:
        ds = load_rubric_file(args.data, on_error=args.on_error, limit=args.limit)
    except RubricDataError as e:
        raise UserError(f"--data: {e}") from None
    check_run_root(args.out)
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} malformed rows (first: line {ds.skipped[0][0]}: {ds.skipped[0][1]})",
              file=sys.stderr)
    try:
        judge = JudgeClient(cfg)
    except RuntimeError as e:  # an unreadable cache file
        raise UserError(f"--judge-cache: {e}") from None
    if targets is not None:
        try:
            return _sweep(args, targets, ds, cfg, judge)
        finally:
            judge.close()
    try:
        load_policy(policy)
        with new_run_dir(args.out, "healthbench") as run_dir:
            config = {"benchmark": "healthbench", "data": str(args.data), "n_examples": len(ds),
                      "skipped_rows": [list(s) for s in ds.skipped], "policy": policy.describe(),
                      "judge": cfg.as_dict(), "seed": args.seed}
            try:
                result = run_healthbench(ds.examples, policy, judge, out_dir=run_dir, config=config, seed=args.seed)
            except PolicyError as e:
                raise UserError(str(e)) from None
    finally:
        judge.close()
    print(to_json(result.summary()) if args.json else format_report(result))
    if result.failure:
        sys.stderr.write(f"rvpo eval: error: healthbench failed: {result.failure}; "
                         f"no score (run dir kept for inspection: {result.run_dir})\n")
        return 1
    return 0


def _sweep(args, targets, ds, cfg, judge) -> int:
    """``--checkpoints``: one HealthBench eval per model of the run, then the table and the plot."""
    from rvpo.evals.policy import PolicyError
    from rvpo.tasks.rubric.healthbench import run_healthbench

    def evaluate(target, out_dir):
        policy = load_policy(sweep_policy(args, target))
        config = {"benchmark": "healthbench", "data": str(args.data), "n_examples": len(ds), "step": target.step,
                  "checkpoint": target.label, "policy": policy.describe(), "judge": cfg.as_dict(), "seed": args.seed}
        try:
            res = run_healthbench(ds.examples, policy, judge, out_dir=out_dir, config=config, seed=args.seed)
        except PolicyError as e:
            raise UserError(str(e)) from None
        o = res.scores.overall
        ok = o.n > 0 and math.isfinite(o.mean) and not res.failure
        return {"score": o.mean if ok else None, "n": o.n,
                "ci95": [o.mean - 1.96 * o.bootstrap_se, o.mean + 1.96 * o.bootstrap_se] if ok else None,
                "n_abstained": res.scores.n_abstained, "n_items": res.scores.n_items, "failure": res.failure}

    return report_sweep(args, "healthbench", {"judge": cfg.as_dict()}, targets, evaluate, "overall", "HealthBench")


def report_sweep(args, benchmark: str, config: dict, targets, evaluate, metric: str, title: str) -> int:
    """Run a ``--checkpoints`` sweep in a new ``<benchmark>-sweep`` run folder and print its table (or JSON)."""
    from rvpo.evals.checkpoints import run_sweep
    from rvpo.runs import new_run_dir, to_json, write_json

    with new_run_dir(args.out, f"{benchmark}-sweep") as run_dir:
        write_json(run_dir / "config.json", {"benchmark": benchmark, "checkpoints": str(args.checkpoints),
                                              "data": str(args.data), "seed": args.seed, **config})
        rows = run_sweep(targets, evaluate, run_dir, metric, title=f"{title} across {args.checkpoints}",
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(to_json({"run_dir": str(run_dir), "rows": rows}))
    else:
        print((run_dir / "sweep.md").read_text(encoding="utf-8").rstrip())
        print(f"run dir  {run_dir}")
    return 0
