"""Options and construction shared by the evaluations that sample a policy (gpqa, healthbench)."""

from __future__ import annotations

from rvpo.cli import UserError


def add_policy_args(p, seed_help: str = "sampling seed") -> None:
    """Add the policy option group (a local model, or an OpenAI-compatible endpoint) to parser ``p``."""
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
    g.add_argument("--seed", type=int, default=0, help=seed_help)


def build_policy(args):
    """The policy the options describe; a bad ``--model`` fails here, before any run directory exists."""
    from rvpo.evals.policy import LocalPolicy, PolicyError, make_policy

    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    try:
        policy = make_policy(args.model, args.policy_base_url, args.policy_model, args.policy_api_key_env,
                             args.max_new_tokens, args.batch_size, args.temperature, args.seed,
                             args.policy_concurrency)
        if isinstance(policy, LocalPolicy):
            policy.load()
    except (ValueError, PolicyError) as e:
        raise UserError(f"policy: {e}") from None
    return policy
