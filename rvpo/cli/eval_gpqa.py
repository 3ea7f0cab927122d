"""``rvpo eval gpqa``: GPQA multiple choice with simple-evals' protocol (prompt, option order, answer pattern).

    rvpo eval gpqa --data ../shared/data/gpqa/gpqa_diamond.zip                 # simple-evals, 1 repeat
    rvpo eval gpqa --data ../shared/data/gpqa/gpqa_diamond.zip --repeats 4     # simple-evals' default n_repeats
    rvpo eval gpqa --data ... --extractor lenient      # rvpo's lenient letter extraction (reported as such)
"""

from __future__ import annotations

from rvpo.cli import UserError
from rvpo.cli._policy import add_policy_args, build_policy, load_policy


def register(sub) -> None:
    """Add the subcommand's parser to ``rvpo eval``'s subparsers."""
    from rvpo.evals.gpqa import DEFAULT_ZIP_PASSWORD

    p = sub.add_parser("gpqa", help="GPQA multiple-choice accuracy (simple-evals' protocol) with a 95%% Wilson CI",
                       description="Ask each question with simple-evals' prompt and option order (seed 0 = "
                                   "simple-evals'), extract the letter with its answer pattern (first match), "
                                   "report accuracy with a 95% Wilson CI. Reads a CSV with the GPQA columns, or "
                                   "a password-protected zip holding one, in memory; never prints or stores "
                                   "question text.")
    p.add_argument("--data", required=True, help="GPQA .csv, or a .zip holding one (e.g. gpqa_diamond.zip)")
    p.add_argument("--zip-password", default=DEFAULT_ZIP_PASSWORD,
                   help="password of the zip (default: the one the GPQA authors publish)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N questions")
    p.add_argument("--repeats", type=int, default=1,
                   help="ask every question this many times with fresh option orders (simple-evals' n_repeats: 4)")
    p.add_argument("--extractor", default="simple-evals", choices=("simple-evals", "lenient"),
                   help="answer extraction: simple-evals' pattern (default) or rvpo's lenient one (not comparable "
                        "with published numbers)")
    add_policy_args(p, seed_help="option-order seed (0 = simple-evals' order) and sampling seed")
    from rvpo.cli.eval_healthbench import add_checkpoint_args

    add_checkpoint_args(p)
    p.add_argument("--out", default="runs", help="folder under which the run directory is created")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the evaluation; print the report; return the exit code."""
    from rvpo.evals.gpqa import GPQADataError, format_report, load_gpqa, run_gpqa
    from rvpo.evals.policy import PolicyError
    from rvpo.runs import check_run_root, new_run_dir, to_json

    if args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    from rvpo.cli.eval_healthbench import sweep_targets_or_error

    targets = sweep_targets_or_error(args) if args.checkpoints else None
    policy = build_policy(args, load=False)
    try:
        questions = load_gpqa(args.data, args.zip_password, limit=args.limit)
    except GPQADataError as e:
        raise UserError(str(e)) from None
    check_run_root(args.out)
    if targets is not None:
        return _sweep(args, targets, questions)
    load_policy(policy)
    config = {"benchmark": "gpqa", "data": str(args.data), "n_questions": len(questions), "seed": args.seed,
              "repeats": args.repeats, "extractor": args.extractor, "policy": policy.describe()}
    with new_run_dir(args.out, "gpqa") as run_dir:
        try:
            result = run_gpqa(questions, policy, seed=args.seed, out_dir=run_dir, config=config,
                              repeats=args.repeats, extractor=args.extractor)
        except PolicyError as e:
            raise UserError(str(e)) from None
    print(to_json(result.summary()) if args.json else format_report(result))
    return 0


def _sweep(args, targets, questions) -> int:
    """``--checkpoints``: one GPQA eval per model of the run, then the table and the plot."""
    from rvpo.cli.eval_healthbench import report_sweep, sweep_policy
    from rvpo.evals.gpqa import run_gpqa
    from rvpo.evals.policy import PolicyError

    def evaluate(target, out_dir):
        policy = load_policy(sweep_policy(args, target))
        config = {"benchmark": "gpqa", "data": str(args.data), "n_questions": len(questions), "seed": args.seed,
                  "repeats": args.repeats, "extractor": args.extractor, "step": target.step,
                  "checkpoint": target.label, "policy": policy.describe()}
        try:
            res = run_gpqa(questions, policy, seed=args.seed, out_dir=out_dir, config=config, repeats=args.repeats,
                           extractor=args.extractor)
        except PolicyError as e:
            raise UserError(str(e)) from None
        return {"score": res.accuracy, "ci95": [res.ci_low, res.ci_high], "n": res.n, "n_unparsed": res.n_unparsed}

    return report_sweep(args, "gpqa", {"repeats": args.repeats, "extractor": args.extractor}, targets, evaluate,
                        "accuracy", "GPQA")
