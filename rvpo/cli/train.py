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
from rvpo.tasks.base import TASKS


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="RL fine-tuning (RVPO/GDPO/GRPO advantages) on a task: " + ", ".join(sorted(TASKS))
                                          + ", or your own (pkg.mod:factory, path/to/task.py:factory)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="YAML", help="config file (fields: rvpo train --help-config)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run directory from its latest checkpoint")
    p.add_argument("--help-config", action="store_true",
                   help="print every config field with its default, then the task's options and training defaults "
                        "(--task or the config's), and exit")
    g = p.add_argument_group("overrides (applied after --config; help is the field's own, see --help-config)")
    docs, choices = _field_info()
    adv = p.add_argument_group("advantage settings (rvpo.core.AdvantageSpec; each field by its bare name)")
    for group, (flags, name) in [(g, f) for f in FLAGS] + [(adv, f) for f in advantage_flags()]:
        metavar = "{" + ",".join(choices[name]) + "}" if name in choices else name.split(".")[-1].upper()
        group.add_argument(*flags, dest=name, metavar=metavar,
                           help=f"{docs.get(name) or TASK_OPTIONS[name]} (field: {name})")
    g.add_argument("--lora", dest="lora.enabled", action="store_const", const="true",
                   help=f"{docs['lora.enabled']} (field: lora.enabled)")
    g.add_argument("--no-lora", dest="lora.enabled", action="store_const", const="false", help="full fine-tuning")
    g.add_argument("--no-eval", dest="eval.enabled", action="store_const", const="false",
                   help="skip the before/after evaluation (field: eval.enabled)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set lora.r=8 --set eval.examples=32 (repeatable)")
    g.add_argument("--verbose", action="store_true", help="show transformers/TRL warnings")
    p.set_defaults(func=run)


FLAGS: list[tuple[tuple[str, ...], str]] = [
    (("--model",), "model"), (("--task",), "task"), (("--data",), "data"), (("--eval-data",), "eval.data"),
    (("--judge-url",), "task_options.judge_url"), (("--judge-model",), "task_options.judge_model"),
    (("--kl-beta",), "kl_beta"), (("--steps",), "steps"),
    (("--group-size", "-G"), "group_size"), (("--prompts-per-step",), "prompts_per_step"),
    (("--max-completion-length",), "max_completion_length"), (("--learning-rate", "--lr"), "learning_rate"),
    (("--seed",), "seed"), (("--precision",), "precision"), (("--out",), "out"),
]
"""Command-line shortcuts for config fields; their help text is the field's docstring (one declaration).
Values are parsed and checked by the config layer, like ``--set`` values. The advantage section's flags
are not listed here: :func:`advantage_flags` makes them from the config's names for its fields."""


def advantage_flags() -> list[tuple[tuple[str, ...], str]]:
    """A flag for every ``advantage.*`` field, one for each name the config layer accepts for it
    (:data:`rvpo.train.config.ALIASES`: the bare field name, then an older flat name), e.g.
    ``(("--noise-floor",), "advantage.noise_floor")``. The values pass through as strings, like ``--set``."""
    from rvpo.train.config import ALIASES

    names: dict[str, list[str]] = {}
    for alias, name in ALIASES.items():
        if name.startswith("advantage."):
            names.setdefault(name, []).append("--" + alias.replace("_", "-"))
    return [(tuple(flags), name) for name, flags in names.items()]


def flags() -> list[tuple[tuple[str, ...], str]]:
    """Every named flag: :data:`FLAGS` and :func:`advantage_flags`."""
    return FLAGS + advantage_flags()

TASK_OPTIONS = {
    "task_options.judge_url": "rubric task: OpenAI-compatible judge endpoint incl. /v1 (default: the embedded judge)",
    "task_options.judge_model": "rubric task: the judge's model name",
}
"""Task options with a flag of their own (the rubric task documents the rest)."""


def _field_info() -> tuple[dict[str, str], dict[str, tuple]]:
    """``({field: docstring}, {field: Literal choices})`` of the config declaration."""
    from typing import Literal, get_args, get_origin

    from rvpo.train.config import iter_fields

    fields = list(iter_fields())
    return ({name: doc for name, _tp, _default, doc in fields},
            {name: get_args(tp) for name, tp, _default, _doc in fields if get_origin(tp) is Literal})


def describe_task_defaults(task: str) -> str:
    """A Markdown table of the fields task ``task``'s ``train_defaults`` change: the field, TrainConfig's
    default and the task's; a sentence when it declares none. Raises ``ConfigError`` for a bad declaration."""
    from rvpo.settings import dotted_get
    from rvpo.tasks.base import train_defaults
    from rvpo.train.config import TrainConfig, canonical, task_base, to_dict_value

    base, default = task_base(task), TrainConfig()
    names = [canonical(k) for k in train_defaults(task)]
    if not names:
        return f"Task {task!r} declares no training defaults: the defaults above apply."
    rows = [f"| `{n}` | `{to_dict_value(dotted_get(default, n))}` | `{to_dict_value(dotted_get(base, n))}` |"
            for n in names]
    return "\n".join([f"| field | default | task {task!r} |", "| --- | --- | --- |", *rows])


def overrides_from_args(args) -> dict[str, str]:
    """Dotted-field overrides from the command line (flags first, then ``--set``), as strings."""
    from rvpo.train.config import parse_set

    names = [name for _, name in flags()] + ["lora.enabled", "eval.enabled"]
    out = {name: str(getattr(args, name)) for name in names if getattr(args, name, None) is not None}
    out.update(parse_set(args.set))
    return out


def run(args) -> int:
    from rvpo.train.config import ConfigError, TrainConfig, build_config, describe_fields

    if args.help_config:
        print(describe_fields())
        from rvpo.tasks.base import describe_options

        try:
            name = args.task or (build_config(args.config).task if args.config else TrainConfig().task)
            options, defaults = describe_options(name), describe_task_defaults(name)
        except (ConfigError, FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
        print(f"\nOptions of task {name!r} (`task_options.NAME` in a config, `--set task_options.NAME=V`):\n")
        print(options)
        print(f"\nTraining defaults of task {name!r} (in place of the defaults above; a config file and the "
              "flags still win):\n")
        print(defaults)
        return 0
    if args.resume and args.config:
        raise UserError("--resume uses the run directory's config.yaml; pass overrides (e.g. --steps), not --config")
    try:
        base = None
        if args.resume:
            from rvpo.train.run import load_resume_config

            _check_resume_config(args.resume)
            base = load_resume_config(args.resume)
        cfg = build_config(args.config, string_overrides=overrides_from_args(args), base=base)
        if base is not None:
            _check_same_run(args.resume, base, cfg)
    except (ConfigError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    if not args.verbose:
        quiet()
    import contextlib

    from rvpo.model.loading import ModelNotFoundError
    from rvpo.runs import CorruptFileError, RunDirError, run_lock
    from rvpo.train.run import train

    try:
        with run_lock(args.resume, "--resume") if args.resume else contextlib.nullcontext():
            res = train(cfg, resume=args.resume)
    except (ConfigError, ModelNotFoundError, FileNotFoundError, CorruptFileError, RunDirError) as e:
        raise UserError(str(e)) from None
    return 130 if res.interrupted else 0


SAME_RUN_FIELDS = ("task", "task_options", "model", "data", "lora.enabled")
"""Fields a resumed run may not change: its checkpoints and metrics belong to the values it started with."""


def _check_resume_config(run_dir: str) -> None:
    """A run directory's ``config.yaml`` must hold a config: an empty one would start a default run there."""
    from pathlib import Path

    path = Path(run_dir) / "config.yaml"
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--resume {run_dir}: cannot read {path.name}: {e}") from None
    if text is not None and not text.strip():
        raise UserError(f"--resume {run_dir}: {path} is empty, so this is not a run rvpo train wrote "
                        "(refusing to start a default run in it)")


def _check_same_run(run_dir: str, base, cfg) -> None:
    """``--resume`` with an override of a field that defines the run (``--task``, ``--model`` ...) is an error."""
    from rvpo.settings import dotted_get

    for name in SAME_RUN_FIELDS:
        old, new = dotted_get(base, name), dotted_get(cfg, name)
        if old != new:
            raise UserError(f"--resume {run_dir}: config field {name!r} is {new!r} here but the run was started "
                            f"with {old!r}; a resumed run keeps its {name} (start a new run instead)")



def quiet() -> None:
    """Hide library warnings that do not concern the user (transformers/TRL info and deprecations)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("peft").setLevel(logging.ERROR)
