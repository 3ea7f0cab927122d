"""``rvpo eval gpqa``: GPQA-style multiple choice (shuffled options, letter extraction, Wilson CI)."""

from __future__ import annotations

import json

from rvpo.cli import UserError


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
    p.add_argument("--seed", type=int, default=0, help="option-shuffle seed (question i uses seed + i)")
    g = p.add_argument_group("policy (a local model, or an OpenAI-compatible endpoint)")
    g.add_argument("--model", default=None, help="local policy: a model folder, 'smollm2-135m-instruct' or a hub id "
                                                 "(default: the embedded SmolLM2 when no --policy-base-url)")
    g.add_argument("--policy-base-url", default=None, help="endpoint policy: server root including /v1")
    g.add_argument("--policy-model", default=None, help="endpoint policy: model name")
    g.add_argument("--policy-api-key-env", default="RVPO_POLICY_API_KEY",
                   help="environment variable holding the policy endpoint's API key")
    g.add_argument("--max-new-tokens", type=int, default=512, help="answer length limit (tokens)")
    g.add_argument("--batch-size", type=int, default=8, help="local policy: prompts per generate call")
    g.add_argument("--policy-concurrency", type=int, default=8, help="endpoint policy: requests in flight")
    g.add_argument("--temperature", type=float, default=0.0, help="policy sampling temperature (0 = greedy)")
    p.add_argument("--out", default="runs", help="folder under which the run directory is created")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the evaluation; print the report; return the exit code."""
    from rvpo.evals.gpqa import GPQADataError, format_report, load_gpqa, run_gpqa
    from rvpo.evals.policy import LocalPolicy, PolicyError, make_policy
    from rvpo.runs import make_run_dir

    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    try:
        questions = load_gpqa(args.data, args.zip_password, limit=args.limit)
    except GPQADataError as e:
        raise UserError(str(e)) from None
    try:
        policy = make_policy(args.model, args.policy_base_url, args.policy_model, args.policy_api_key_env,
                             args.max_new_tokens, args.batch_size, args.temperature, args.seed,
                             args.policy_concurrency)
        if isinstance(policy, LocalPolicy):
            policy.load()  # a bad --model fails here, before a run directory is made
    except (ValueError, PolicyError) as e:
        raise UserError(f"policy: {e}") from None
    run_dir = make_run_dir(args.out, "gpqa")
    config = {"benchmark": "gpqa", "data": str(args.data), "n_questions": len(questions), "seed": args.seed,
              "policy": policy.describe()}
    try:
        result = run_gpqa(questions, policy, seed=args.seed, out_dir=run_dir, config=config)
    except PolicyError as e:
        raise UserError(str(e)) from None
    print(json.dumps(result.summary(), indent=2) if args.json else format_report(result))
    return 0
