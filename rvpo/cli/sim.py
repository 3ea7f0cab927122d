"""``rvpo sim``: the constraint-neglect simulation (see :mod:`rvpo.sim` and docs/sim.md)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from rvpo.cli import UserError
from rvpo.core.estimators import DEFAULT_EPS

_DEFAULT_K = "0,0.25,0.5,1,2,4,8"
_DEFAULT_BETA = "0,0.1,0.25,0.5,1,2"
_DEFAULT_M = "1,2,4,8,16,32"


def _int(lo: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v
    return parse


def _seeds(s: str) -> tuple[int, int]:
    """``--seeds`` as ``rvpo experiment`` reads it ("0..4", "0,1,2"), as (first seed, count); the seeds must
    be consecutive, since a simulated run's seed is its index. A bare number is refused: it meant a count
    here once, and means one seed in ``rvpo experiment``."""
    from rvpo.experiment.spec import ExperimentError, parse_seeds

    if s.strip().isdigit():
        n = int(s)
        raise argparse.ArgumentTypeError(
            f"expected seeds like rvpo experiment's, '0..{max(n - 1, 0)}' or '0,1,2', got {s!r} "
            f"(a bare number is ambiguous: for {n} seeds write 0..{max(n - 1, 0)}, for seed {n} alone {n}..{n})")
    try:
        seeds = parse_seeds(s)
    except ExperimentError as e:
        raise argparse.ArgumentTypeError(str(e).replace("field 'seeds': ", "")) from None
    if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
        raise argparse.ArgumentTypeError(f"the simulation runs consecutive seeds (a range like 3..7), got {s!r}")
    return seeds[0], len(seeds)


def _float(lo: float = 0.0, hi: float = math.inf, open_lo: bool = False):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not math.isfinite(v) or v < lo or v > hi or (open_lo and v == lo):
            rng = f"in ({lo:g}, {hi:g}]" if open_lo else (f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}")
            raise argparse.ArgumentTypeError(f"must be a finite number {rng}, got {s!r}")
        return v
    return parse


def _floats(option: str, s: str, lo: float = 0.0) -> list[float]:
    try:
        vals = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated numbers, got {s!r}") from None
    if not vals or any(not math.isfinite(v) or v < lo for v in vals):
        raise UserError(f"{option}: expected one or more finite numbers >= {lo:g}, got {s!r}")
    return vals


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim", help="constraint-neglect simulation: gdpo vs rvpo on a softmax policy over response styles",
        description="Train a tabular softmax policy over 4 response styles (greedy, balanced, plain, sloppy) "
        "on M = m_easy + 1 reward channels with every advantage estimator of rvpo.core, several seeds each; "
        "print a table, write a run directory (config.yaml, results.json/csv, curves.csv, curves.png). "
        "See docs/sim.md.")
    env = p.add_argument_group("environment")
    env.add_argument("--m-easy", type=_int(1), default=8, help="number of easy channels (the constraint is one more)")
    env.add_argument("--easy-gap", type=_float(), default=0.3,
                     help="reward the balanced style gives up on each easy channel; with --noise sets how easy "
                     "the easy channels are (z-score methods only see the ratio gap/noise)")
    env.add_argument("--noise", type=_float(), default=0.5, help="std of the Gaussian noise on easy-channel rewards")
    env.add_argument("--p-sat", type=_float(0, 1), default=0.99,
                     help="probability that a constraint-keeping style satisfies the constraint")
    env.add_argument("--p-violate-sat", type=_float(0, 1), default=0.05,
                     help="probability that a violating style satisfies the constraint anyway")
    env.add_argument("--init-sat", type=_float(0, 1, open_lo=True), default=0.8,
                     help="initial policy mass on the constraint-keeping styles, in (0, 1): high models a base "
                     "model that mostly keeps the constraint (neglect), low one that must learn it")
    env.add_argument("--noisy", type=_int(0), default=0,
                     help="number of unreliable judge channels: binary verdicts on the constraint that answer "
                     "at random with probability --noisy-random (the paper's worry: soft-min binds on noise)")
    env.add_argument("--noisy-random", type=_float(0, 1), default=1.0,
                     help="probability that an unreliable judge answers at random (1 = pure noise)")
    tr = p.add_argument_group("training")
    tr.add_argument("--steps", type=_int(1), default=300, help="policy-gradient steps per run")
    tr.add_argument("--seeds", type=_seeds, default=(0, 5), metavar="A..B",
                    help="seeds of every method, as in rvpo experiment: a consecutive range like 0..4 (default) "
                    "or 3,4,5")
    tr.add_argument("--group-size", "-G", type=_int(2), default=8, help="samples per prompt (G)")
    tr.add_argument("--prompts", type=_int(1), default=8, help="prompts, each with its own softmax over styles")
    tr.add_argument("--batch-prompts", type=_int(1), default=8, help="prompts per step (B <= --prompts)")
    tr.add_argument("--lr", type=_float(0, open_lo=True), default=1.0, help="learning rate on the logits")
    tr.add_argument("--eps", type=_float(), default=DEFAULT_EPS,
                    help=f"epsilon added to every std in the advantage core (default {DEFAULT_EPS:g}, AdvantageSpec's)")
    tr.add_argument("--methods", default=argparse.SUPPRESS, metavar="LIST",
                    help="comma-separated methods: grpo, gdpo, hardmin, rvpo (linear 0.5->2.0), rvpo:K, "
                    "rvpo:linear:A:B or rvpo:adaptive[:TARGET[:KMIN:KMAX[:FORM]]] (any k schedule), rvpo_explicit:BETA; "
                    "append +floor to give the core the unreliable judges' noise floor (mitigation). Default: "
                    "grpo,gdpo,rvpo:1,rvpo:2,rvpo:linear:0.5:2.0,rvpo_explicit:0.5,hardmin "
                    "(with --sweep m_easy: gdpo,rvpo)")
    sw = p.add_argument_group("sweeps (the paper's figures 4 and 5)")
    sw.add_argument("--sweep", choices=("k", "beta", "m_easy"), default=None,
                    help="instead of comparing --methods, sweep rvpo's constant k, rvpo_explicit's beta, or the "
                    "number of easy channels (running --methods at each)")
    sw.add_argument("--k-values", default=_DEFAULT_K, metavar="LIST", help="k values for --sweep k (0 = mean of z-scores = gdpo)")
    sw.add_argument("--beta-values", default=_DEFAULT_BETA, metavar="LIST", help="beta values for --sweep beta (0 = gdpo)")
    sw.add_argument("--m-easy-values", default=_DEFAULT_M, metavar="LIST", help="numbers of easy channels for --sweep m_easy")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="runs", metavar="DIR", help="root folder of the run directory (runs/sim-<time>/)")
    out.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of a table")
    out.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    out.add_argument("--threads", type=_int(1), default=1,
                     help="torch CPU threads (the tensors are tiny: 1 is fastest)")
    p.set_defaults(func=main)


def _config(args):
    from rvpo.sim import SimConfig, parse_method

    methods = getattr(args, "methods", None)
    if methods is None:
        methods = "gdpo,rvpo" if args.sweep == "m_easy" else None
    cfg = SimConfig(
        m_easy=args.m_easy, easy_gap=args.easy_gap, noise=args.noise, p_sat=args.p_sat,
        p_violate_sat=args.p_violate_sat, init_sat=args.init_sat, noisy=args.noisy,
        noisy_random=args.noisy_random, prompts=args.prompts,
        batch_prompts=args.batch_prompts, group_size=args.group_size, steps=args.steps, lr=args.lr,
        seed_offset=args.seeds[0], seeds=args.seeds[1], eps=args.eps,
    )
    if methods is not None:
        cfg.methods = [m.strip() for m in methods.split(",") if m.strip()]
        if not cfg.methods:
            raise UserError(f"--methods: expected comma-separated method names, got {methods!r}")
    for spec in cfg.methods:
        try:
            parse_method(spec)
        except ValueError as e:
            raise UserError(f"--methods: {spec!r}: {e}") from None
    try:
        cfg.validate()
    except ValueError as e:
        msg = str(e)
        field, sep, rest = msg.partition(": ")
        if sep and field.isidentifier():
            raise UserError(f"--{field.replace('_', '-')}: {rest}") from None
        raise UserError(msg) from None
    return cfg


def main(args) -> int:
    import torch
    from tqdm import tqdm

    from rvpo.runs import make_run_dir, write_yaml
    from rvpo.sim import plots, report
    from rvpo.sim.run import run_methods, run_sweep, sweep_points

    if args.sweep in ("k", "beta") and hasattr(args, "methods"):
        raise UserError(f"--methods: not used by --sweep {args.sweep} (it sweeps "
                        f"{'rvpo' if args.sweep == 'k' else 'rvpo_explicit'} itself); leave it out")
    cfg = _config(args)
    values = None
    if args.sweep:
        opt = {"k": "--k-values", "beta": "--beta-values", "m_easy": "--m-easy-values"}[args.sweep]
        raw = {"k": args.k_values, "beta": args.beta_values, "m_easy": args.m_easy_values}[args.sweep]
        values = _floats(opt, raw, lo=1 if args.sweep == "m_easy" else 0)
        if args.sweep == "m_easy" and any(v != int(v) for v in values):
            raise UserError(f"{opt}: expected whole numbers >= 1, got {raw!r}")
        points = sweep_points(cfg, args.sweep, values)
        n_runs = sum(len(ms) for _, _, ms in points) * cfg.seeds
    else:
        n_runs = len(cfg.methods) * cfg.seeds
    torch.set_num_threads(args.threads)
    run_dir = make_run_dir(args.out, f"sim-sweep-{args.sweep}" if args.sweep else "sim")
    resolved = {"command": "sim", **cfg.to_dict(), "methods_resolved": [m.to_dict() for m in cfg.parsed_methods()],
                "sweep": args.sweep, "sweep_values": values, "threads": args.threads}
    write_yaml(run_dir / "config.yaml", resolved)
    t0 = time.perf_counter()
    with tqdm(total=n_runs, desc="rvpo sim", unit="run", file=sys.stderr, disable=True if args.quiet else None) as bar:
        if args.sweep:
            rows = run_sweep(cfg, args.sweep, values, progress=bar.update)
        else:
            results = run_methods(cfg, progress=bar.update)
    wall = time.perf_counter() - t0
    files = ["config.yaml"]
    if args.sweep:
        points = report.summarise_sweep(rows)
        files += report.write_sweep(run_dir, points)
        if not args.no_plots:
            plots.plot_sweep(run_dir / f"{args.sweep}_sweep.png", points)
            files.append(f"{args.sweep}_sweep.png")
        payload = {"sweep": args.sweep, "points": points}
        text = report.format_sweep_table(points)
    else:
        from rvpo.sim import SimEnv

        names = SimEnv(cfg).channel_names
        payload = report.summarise(results, names, cfg.parsed_methods())
        files += report.write_results(run_dir, results, payload, names)
        if not args.no_plots:
            plots.plot_curves(run_dir / "curves.png", results, names)
            files.append("curves.png")
        text = report.format_table(payload)
    payload = {**payload, "run_dir": str(run_dir), "files": files, "wall_s": round(wall, 3)}
    if args.json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        print(text)
        print(f"\n{n_runs} runs in {wall:.1f} s; wrote {run_dir}/ ({', '.join(files)})")
    return 0
