"""``rvpo screen``: predict, before any training, which channel each advantage estimator will neglect.

    rvpo screen --task constraints --prompts 64 --group-size 8 --max-new-tokens 48 --out runs/screen
    rvpo screen --task constraints --methods "gdpo,rvpo:k=2,rvpo:k=adaptive,hardmin"
    rvpo screen --samples runs/screen/samples.jsonl --group-size 8 --constraint constraint

Samples G completions per prompt from the base model (one batched generate, the train config's
model, precision and data, as ``rvpo train`` loads them), scores them with the task's reward
channels, and reports each method's predicted one-step push per channel (see docs/screen.md).
Writes ``screen.json``, ``screen.md`` and ``samples.jsonl`` (one line per completion: ``prompt_id``,
``completion``, ``rewards`` {channel: value or null}) to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("screen", help="predict which channel each estimator pushes down, from base samples",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source (one of)")
    src.add_argument("--task", help="sample from the base model on this task (as rvpo train --task)")
    src.add_argument("--samples", metavar="JSONL", help="screen scored samples instead (the samples.jsonl format)")
    p.add_argument("--config", metavar="YAML", help="a train config (model, data, task options, advantage fields)")
    p.add_argument("--task-option", action="append", default=[], metavar="K=V",
                   help="a task option (task_options.K), repeatable")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a train config field, e.g. --set model=PATH (repeatable)")
    p.add_argument("--prompts", type=int, default=64, help="prompts to sample (the first of the train data)")
    p.add_argument("--group-size", "-G", type=int, default=8, help="completions per prompt (G)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="tokens per completion")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (> 0)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per generate call")
    p.add_argument("--methods", default="", help="comma list of estimator[:field=value...], e.g. "
                   "'gdpo,rvpo:k=2,rvpo:k=adaptive,hardmin' (default: gdpo, rvpo k 0.5/1.25/2/4/adaptive, hardmin)")
    p.add_argument("--constraint", default=None, help="comma list of constraint channels (default: the task's "
                   "constraint_channels)")
    p.add_argument("--monitor", default=None, help="comma list of monitor-only channels (weight 0; default: the "
                   "task's monitor_channels)")
    p.add_argument("--easy", default=None, help="comma list of easy channels (default: the task's easy_channels, "
                   "else every trained non-constraint channel)")
    p.add_argument("--out", default=None, help="output folder (default with --task: runs/screen-<time>; with "
                   "--samples: print only)")
    p.add_argument("--verbose", action="store_true", help="show transformers warnings")
    p.set_defaults(func=run)


def _names(value: str | None, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default or ())
    return [v.strip() for v in value.split(",") if v.strip()]


def method_specs(text: str, base: dict | None = None) -> list[tuple[str, dict]]:
    """``--methods`` (or the defaults) merged over ``base`` (the train config's advantage fields other than
    estimator, k and beta, so eps / whiten / noise_floor match training)."""
    from rvpo.screen import DEFAULT_METHODS, parse_methods

    methods = parse_methods(text) if text.strip() else [(lab, dict(d)) for lab, d in DEFAULT_METHODS]
    keep = {k: v for k, v in (base or {}).items() if k not in ("estimator", "k", "beta", "weights")}
    return [(lab, {**keep, **{k: v for k, v in d.items() if k != "weights"}}) for lab, d in methods]


def run(args) -> int:
    from rvpo.experiment.sampling import read_samples, sample_and_score  # torch: loaded only when run (start-up time)
    from rvpo.runs import JsonRecordError, atomic_write_text, make_run_dir, write_json
    from rvpo.screen import screen

    if bool(args.task) == bool(args.samples):
        raise UserError("give one of --task NAME (sample from the base model) or --samples FILE.jsonl")
    if args.group_size < 2:
        raise UserError(f"--group-size: must be >= 2, got {args.group_size}")
    for opt, v in (("--prompts", args.prompts), ("--max-new-tokens", args.max_new_tokens),
                   ("--batch-size", args.batch_size)):
        if v < 1:
            raise UserError(f"{opt}: must be >= 1, got {v}")
    if not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise UserError(f"--temperature: must be > 0 (the screen needs spread within groups), got {args.temperature}")
    out_dir = Path(args.out) if args.out else None
    timings: dict[str, float] = {}
    task = None
    base_adv: dict = {}
    if args.samples:
        try:
            ids, names, rewards = read_samples(args.samples, args.group_size)
        except (ValueError, JsonRecordError, OSError) as e:
            raise UserError(str(e)) from None
        weights = None
        samples = None
    else:
        from rvpo.cli.train import quiet
        from rvpo.model.loading import ModelNotFoundError
        from rvpo.train.config import ConfigError, build_config, parse_set

        try:
            over = parse_set(args.set)
            over.update({f"task_options.{k}": v for k, v in parse_set(args.task_option).items()})
            over["task"] = args.task
            over["seed"] = str(args.seed)
            cfg = build_config(args.config, string_overrides=over)
        except (ConfigError, FileNotFoundError) as e:
            raise UserError(str(e).replace("--set", "--set/--task-option")) from None
        if not args.verbose:
            quiet()
        out_dir = out_dir or make_run_dir("runs", "screen")
        out_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            s = sample_and_score(cfg, args.prompts, args.group_size, args.max_new_tokens, args.temperature, args.seed,
                                 args.batch_size, out_dir, log=lambda m: print(m, file=sys.stderr))
        except (ConfigError, ModelNotFoundError, FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
        task, names, rewards, weights = s["task"], s["names"], s["rewards"], s["weights"]
        timings = {**s["timings"], "total_s": round(time.perf_counter() - t0, 1)}
        base_adv = cfg.advantage.to_dict()
        ids = [str(row.get("id", i)) for i, row in enumerate(s["rows"]) for _ in range(args.group_size)]
        samples = [{"prompt_id": pid, "completion": text, "rewards": {n: (None if math.isnan(v) else v)
                                                                      for n, v in zip(names, r, strict=True)}}
                   for pid, text, r in zip(ids, s["texts"], rewards, strict=True)]
    cons = _names(args.constraint, getattr(task, "constraint_channels", ()))
    mon = _names(args.monitor, getattr(task, "monitor_channels", ()))
    easy = _names(args.easy, getattr(task, "easy_channels", ())) or None
    try:
        methods = method_specs(args.methods, base_adv)
        res = screen(rewards, args.group_size, methods, names, cons, weights=weights, monitor_channels=mon,
                     easy_channels=easy)
    except ValueError as e:
        raise UserError(str(e)) from None
    md = res.markdown()
    print(md)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = {**res.to_dict(), "source": {"task": args.task, "samples": args.samples, "prompts": res.prompts,
                                               "group_size": args.group_size, "max_new_tokens": args.max_new_tokens,
                                               "temperature": args.temperature, "seed": args.seed},
                   "timings": timings}
        write_json(out_dir / "screen.json", payload)
        head = f"# rvpo screen: {args.task or args.samples}\n\n"
        if timings:
            head += f"Wall time: {timings['total_s']:.0f} s (generate {timings['generate_s']:.0f} s).\n\n"
        atomic_write_text(out_dir / "screen.md", head + md)
        if samples is not None:
            from rvpo.runs import to_json

            atomic_write_text(out_dir / "samples.jsonl", "".join(to_json(r, indent=None) + "\n" for r in samples))
        print(f"wrote {out_dir}/screen.json, screen.md" + (", samples.jsonl" if samples is not None else ""),
              file=sys.stderr)
    return 0
