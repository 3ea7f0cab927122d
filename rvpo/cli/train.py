"""``rvpo train``: RL fine-tuning with RVPO advantages on a task (TRL GRPOTrainer).

    rvpo train                                    # embedded SmolLM2, built-in tool-call task, RVPO k 0.5->2.0
    rvpo train --task constraints                 # verifiable instructions (IFEval-style), variable M
    rvpo train --precision fp32                   # bf16 is chosen automatically where the CPU has bf16 units
    rvpo train --config configs/toolcall_smollm2.yaml --steps 50 --estimator gdpo
    rvpo train --set lora.r=8 --set eval.examples=32
    rvpo train --resume runs/train-20261126-150000   # continue after Ctrl-C (or with more --steps)
    rvpo train --help-config                      # every config field, its default and meaning

Ctrl-C finishes the current step, saves a checkpoint and exits with status 130.
"""

from __future__ import annotations

import argparse

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="RL fine-tuning (RVPO/GDPO/GRPO advantages) on a task (toolcall, constraints, ...)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="YAML", help="config file (fields: rvpo train --help-config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run directory from its latest checkpoint")
    p.add_argument("--help-config", action="store_true", help="print every config field with its default and exit")
    g = p.add_argument_group("overrides (applied after --config)")
    g.add_argument("--model", help="model: embedded name, local folder or hub id (field: model)")
    g.add_argument("--task", help="task: toolcall, constraints, or a dotted path pkg.mod:factory (field: task)")
    g.add_argument("--judge-url", help="rubric task: OpenAI-compatible judge endpoint incl. /v1 (default: the "
                                       "embedded judge; field: task_options.judge_url)")
    g.add_argument("--judge-model", help="rubric task: the judge's model name (field: task_options.judge_model)")
    g.add_argument("--data", help="training data, a spec the task reads (default: the task's own; field: data)")
    g.add_argument("--eval-data", help="held-out eval data (field: eval.data)")
    g.add_argument("--estimator", help="advantage estimator: grpo, gdpo, rvpo, rvpo_explicit, hardmin, or pkg.mod:fn")
    g.add_argument("--k", "--k-schedule", dest="k_schedule", metavar="SCHEDULE",
                   help="risk coefficient k: a number, linear:A:B, cosine:A:B or step:V1,V2 (field: k_schedule)")
    g.add_argument("--beta", type=str, help="variance penalty of rvpo_explicit (not the KL coefficient)")
    g.add_argument("--kl-beta", type=str, help="KL penalty towards the initial model (field: kl_beta)")
    g.add_argument("--steps", type=str, help="optimizer steps")
    g.add_argument("--group-size", "-G", dest="group_size", type=str, help="completions per prompt (G)")
    g.add_argument("--prompts-per-step", type=str, help="prompts per optimizer step")
    g.add_argument("--max-completion-length", type=str, help="max new tokens per sampled completion")
    g.add_argument("--learning-rate", "--lr", dest="learning_rate", type=str, help="learning rate")
    g.add_argument("--lora", dest="lora", action="store_true", default=None, help="train LoRA adapters")
    g.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tuning")
    g.add_argument("--seed", type=str, help="random seed")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="model precision (auto: bf16 where the CPU has bf16 units; field: precision)")
    g.add_argument("--out", help="root folder for the run directory (field: out)")
    g.add_argument("--no-eval", dest="eval", action="store_false", default=None,
                   help="skip the before/after evaluation (field: eval.enabled)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set lora.r=8 --set eval.examples=32 (repeatable)")
    g.add_argument("--verbose", action="store_true", help="show transformers/TRL warnings")
    p.set_defaults(func=run)


_FLAG_FIELDS = {
    "model": "model", "task": "task", "judge_url": "task_options.judge_url",
    "judge_model": "task_options.judge_model", "precision": "precision", "data": "data", "eval_data": "eval.data", "estimator": "estimator",
    "k_schedule": "k_schedule", "beta": "beta", "kl_beta": "kl_beta", "steps": "steps",
    "group_size": "group_size", "prompts_per_step": "prompts_per_step",
    "max_completion_length": "max_completion_length", "learning_rate": "learning_rate",
    "lora": "lora.enabled", "seed": "seed", "out": "out", "eval": "eval.enabled",
}


def overrides_from_args(args) -> dict[str, str]:
    """Dotted-field overrides from the command line (flags first, then ``--set``), as strings."""
    from rvpo.train.config import parse_set

    out = {field: str(getattr(args, dest)) for dest, field in _FLAG_FIELDS.items() if getattr(args, dest) is not None}
    out.update(parse_set(args.set))
    return out


def run(args) -> int:
    from rvpo.train.config import ConfigError, build_config, describe_fields

    if args.help_config:
        print(describe_fields())
        return 0
    if args.resume and args.config:
        raise UserError("--resume uses the run directory's config.yaml; pass overrides (e.g. --steps), not --config")
    try:
        base = None
        if args.resume:
            from rvpo.train.run import load_resume_config

            base = load_resume_config(args.resume)
        cfg = build_config(args.config, string_overrides=overrides_from_args(args), base=base)
    except (ConfigError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    if not args.verbose:
        quiet()
    from rvpo.models import ModelNotFoundError
    from rvpo.train.run import train

    try:
        res = train(cfg, resume=args.resume)
    except (ConfigError, ModelNotFoundError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    return 130 if res.interrupted else 0



def quiet() -> None:
    """Hide library warnings that do not concern the user (transformers/TRL info and deprecations)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("peft").setLevel(logging.ERROR)
