"""Options and construction shared by the evaluations that sample a policy (gpqa, healthbench).

Order of work in an eval command: :func:`build_policy` with ``load=False`` (checks every policy
option, builds nothing heavy), then the other inputs (data, judge), then :func:`load_policy`, then
the run directory: a bad input fails in well under a second, before any model loads or folder exists.
"""

from __future__ import annotations

import math

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
    g.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="local policy: model precision (auto: bf16 where the CPU has bf16 matrix units)")


def check_policy_args(args) -> None:
    """Raise :class:`UserError` naming the option for an out-of-range policy option (and ``--limit``)."""
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    for opt in ("max_new_tokens", "batch_size", "policy_concurrency"):
        if getattr(args, opt) < 1:
            raise UserError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UserError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.model is not None and not args.policy_base_url:
        from rvpo.model.loading import EMBEDDED_MODELS, ModelNotFoundError, resolve_model

        if args.model.strip().lower() not in EMBEDDED_MODELS:  # a folder or hub id: cheap to check now
            try:
                resolve_model(args.model)
            except ModelNotFoundError as e:
                raise UserError(f"--model: {e}") from None


def build_policy(args, load: bool = True):
    """The policy the options describe; bad options raise :class:`UserError` before anything loads.

    ``load=True`` also loads a local model now (a bad ``--model`` fails here, before any run
    directory exists); with ``load=False`` call :func:`load_policy` once the other inputs are checked.
    """
    from rvpo.evals.policy import PolicyError, make_policy

    check_policy_args(args)
    try:
        policy = make_policy(args.model, args.policy_base_url, args.policy_model, args.policy_api_key_env,
                             args.max_new_tokens, args.batch_size, args.temperature, args.seed,
                             args.policy_concurrency, precision=getattr(args, "precision", "auto"))
    except (ValueError, PolicyError) as e:
        raise UserError(f"policy: {e}") from None
    return load_policy(policy) if load else policy


def load_policy(policy):
    """Load a :class:`~rvpo.evals.policy.LocalPolicy`'s model now (endpoint policies: nothing to do)."""
    from rvpo.evals.policy import LocalPolicy, PolicyError

    if isinstance(policy, LocalPolicy):
        try:
            policy.load()
        except (ValueError, PolicyError) as e:
            raise UserError(f"policy: {e}") from None
    return policy
