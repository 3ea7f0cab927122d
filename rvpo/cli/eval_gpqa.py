"""``rvpo eval gpqa``: GPQA-style multiple choice (shuffled options, letter extraction, Wilson CI)."""

from __future__ import annotations

import json

from rvpo.cli import UserError
from rvpo.cli._policy import add_policy_args, build_policy


def register(sub) -> None:
    """Add the subcommand's parser to ``rvpo eval``'s subparsers."""
    from rvpo.evals.gpqa import DEFAULT_ZIP_PASSWORD

    p = sub.add_parser("gpqa", help="GPQA-style multiple-choice accuracy with a 95% Wilson interval",
                       description="Ask each question with its options shuffled (fixed seed), extract the "
                                   "answer letter, report accuracy with a 95% Wilson CI. Reads a CSV with "
                                   "the GPQA columns, or a password-protected zip holding one, in memory; "
                                   "never prints or stores question text.")
    p.add_argument("--data", required=True, help="GPQA .csv, or a .zip holding one (e.g. gpqa_diamond.zip)")
    p.add_argument("--zip-password", default=DEFAULT_ZIP_PASSWORD,
                   help="password of the zip (default: the one the GPQA authors publish)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N questions")
    add_policy_args(p, seed_help="option-shuffle seed (question i uses seed + i) and sampling seed")
    p.add_argument("--out", default="runs", help="folder under which the run directory is created")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the evaluation; print the report; return the exit code."""
    from rvpo.evals.gpqa import GPQADataError, format_report, load_gpqa, run_gpqa
    from rvpo.evals.policy import PolicyError
    from rvpo.runs import make_run_dir

    policy = build_policy(args)
    try:
        questions = load_gpqa(args.data, args.zip_password, limit=args.limit)
    except GPQADataError as e:
        raise UserError(str(e)) from None
    run_dir = make_run_dir(args.out, "gpqa")
    config = {"benchmark": "gpqa", "data": str(args.data), "n_questions": len(questions), "seed": args.seed,
              "policy": policy.describe()}
    try:
        result = run_gpqa(questions, policy, seed=args.seed, out_dir=run_dir, config=config)
    except PolicyError as e:
        raise UserError(str(e)) from None
    print(json.dumps(result.summary(), indent=2) if args.json else format_report(result))
    return 0
