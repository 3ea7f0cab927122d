"""Learning curves on the built-in tool-call task: {gdpo, rvpo} x seeds x N steps.

    python benchmarks/learning_toolcall.py                      # defaults below (CPU, ~15 min on 2 cores)
    python benchmarks/learning_toolcall.py --steps 60 --seeds 0 1 2 3 4   # a longer study (GPU advised)

Each seed gets one supervised warm start (``rvpo train``'s default: SFT on gold answers, without
which SmolLM2-135M never writes the format and every advantage is 0); every estimator then runs RL
from that same warm start. Each run is ``rvpo train`` (LoRA, the same sizes for both estimators,
no before/after eval); the
per-step numbers are the training batch's own reward means from TRL's logs (``rewards/format/mean``
= format rate of the step's G x prompts_per_step sampled completions, ``rewards/correctness/mean``).
"zero-spread groups" is the mean share of groups in which all G completions got the same total
reward (TRL's ``frac_reward_zero_std``): such groups give zero advantage under every estimator.
"Steps to 90% format" is the first step whose batch format rate is >= 0.9 ("never" if none within
N). Writes ``curves.csv`` (one row per run and step), ``runs.csv`` (one row per run), ``curves.png``
and ``table.md`` into ``--out`` and prints the table with the wall time.

Read small-N results as what they are: with 3 seeds and a few steps, differences between
estimators are mostly noise unless the table says otherwise (Welch's t-test on the last steps).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rvpo.runs import make_run_dir, read_jsonl  # noqa: E402
from rvpo.stats import mean_std, welch_t  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--estimators", nargs="+", default=["gdpo", "rvpo"], help="advantage estimators to compare")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per estimator")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    p.add_argument("--group-size", type=int, default=4, help="G: completions per prompt")
    p.add_argument("--prompts-per-step", type=int, default=1, help="prompts per step")
    p.add_argument("--max-completion-length", type=int, default=64, help="new tokens per completion")
    p.add_argument("--warmstart-steps", type=int, default=12, help="SFT steps of the shared warm start (0: none)")
    p.add_argument("--k-schedule", default="linear:0.5:2.0", help="k schedule (rvpo, rvpo_explicit)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="learning rate (LoRA)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="policy model")
    p.add_argument("--threshold", type=float, default=0.9, help="format rate that counts as learned")
    p.add_argument("--last", type=int, default=3, help="steps averaged for the 'final' columns")
    p.add_argument("--out", default="runs", help="root for the benchmark's run directory")
    return p.parse_args(argv)


def steps_to(values: list[float], threshold: float) -> int | None:
    """1-based step of the first value >= threshold, or None."""
    for i, v in enumerate(values, 1):
        if v is not None and v >= threshold:
            return i
    return None


def shared_warm_start(args, seed: int, root: Path) -> str:
    """Train one warm start for ``seed`` into ``root/warmstart-s<seed>/warmstart``; return the folder."""
    from rvpo.models import load_model_and_tokenizer
    from rvpo.tasks.toolcall import load_examples
    from rvpo.train.config import build_config
    from rvpo.train.warmstart import warm_start

    cfg = build_config(overrides={"model": args.model, "seed": seed, "warmstart.steps": args.warmstart_steps})
    model, tok = load_model_and_tokenizer(cfg.model)
    out = root / f"warmstart-s{seed}"
    warm_start(cfg, model, tok, load_examples(cfg.data), out)
    return str(out / "warmstart")


def run_one(args, estimator: str, seed: int, root: Path, warm_dir: str) -> dict:
    from rvpo.train.config import build_config
    from rvpo.train.run import train

    cfg = build_config(overrides={
        "warmstart.enabled": bool(warm_dir), "warmstart.from_dir": warm_dir, "warmstart.eval": False,
        "model": args.model, "estimator": estimator, "k_schedule": args.k_schedule, "seed": seed,
        "steps": args.steps, "group_size": args.group_size, "prompts_per_step": args.prompts_per_step,
        "max_completion_length": args.max_completion_length, "learning_rate": args.learning_rate,
        "eval.enabled": False, "out": str(root / f"{estimator}-s{seed}"), "save_steps": max(args.steps, 1),
        "save_total_limit": 1,
    })
    t0 = time.perf_counter()
    res = train(cfg, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    recs = read_jsonl(res.run_dir / "metrics.jsonl")
    fmt = [r.get("rewards/format/mean") for r in recs]
    cor = [r.get("rewards/correctness/mean") for r in recs]
    return {"estimator": estimator, "seed": seed, "run_dir": str(res.run_dir), "wall_s": wall,
            "steps": [r["step"] for r in recs], "format": fmt, "correctness": cor,
            "k": [r.get("rvpo/k") for r in recs], "steps_to": steps_to(fmt, args.threshold),
            # share of groups where every completion got the same total reward: no learning signal
            "zero_spread": _mean([r.get("frac_reward_zero_std") for r in recs]),
            "final_format": _mean(fmt[-args.last:]), "final_correctness": _mean(cor[-args.last:])}


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def write_outputs(args, runs: list[dict], out: Path, wall: float) -> str:
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["estimator", "seed", "step", "format_rate", "mean_correctness", "k"])
        for r in runs:
            for s, fm, c, k in zip(r["steps"], r["format"], r["correctness"], r["k"]):
                w.writerow([r["estimator"], r["seed"], s, fm, c, k])
    cols = ["estimator", "seed", "steps_to", "final_format", "final_correctness", "zero_spread", "wall_s", "run_dir"]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in runs:
            w.writerow([r[c] for c in cols])
    plot(runs, out / "curves.png")
    never = f"never (> {args.steps})"
    lines = [f"| estimator | seed | steps to {args.threshold:.0%} format | format, last {args.last} | "
             f"correctness, last {args.last} | zero-spread groups | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['estimator']} | {r['seed']} | {r['steps_to'] or never} | {r['final_format']:.3f} | "
                     f"{r['final_correctness']:+.3f} | {r['zero_spread']:.2f} | {r['wall_s']:.0f} |")
    lines += ["", "| estimator | runs reaching threshold | format, last steps (mean ± sd) | correctness (mean ± sd) |",
              "| --- | --- | --- | --- |"]
    by = {e: [r for r in runs if r["estimator"] == e] for e in args.estimators}
    for e, rs in by.items():
        f_ms, c_ms = mean_std([r["final_format"] for r in rs]), mean_std([r["final_correctness"] for r in rs])
        reached = sum(r["steps_to"] is not None for r in rs)
        lines.append(f"| {e} | {reached}/{len(rs)} | {f_ms.mean:.3f} ± {f_ms.std:.3f} | {c_ms.mean:+.3f} ± {c_ms.std:.3f} |")
    if len(by) == 2:
        (e1, r1), (e2, r2) = by.items()
        for key in ("final_format", "final_correctness"):
            t, pv = welch_t([r[key] for r in r2], [r[key] for r in r1])
            lines.append(f"\nWelch t-test {e2} vs {e1} on {key}: t = {t:.2f}, p = {pv:.3f}")
    cfg = (f"{args.steps} steps x {args.prompts_per_step} prompts x G={args.group_size}, "
           f"{args.max_completion_length} tokens, LoRA, lr {args.learning_rate:g}, model {args.model}, "
           f"k {args.k_schedule} (rvpo)")
    text = f"# Learning benchmark (built-in tool-call task)\n\n{cfg}\n\n" + "\n".join(lines) + \
        f"\n\nTotal wall time: {wall:.0f} s ({wall / 60:.1f} min).\n"
    (out / "table.md").write_text(text)
    return text


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    colors = {}
    for r in runs:
        c = colors.setdefault(r["estimator"], f"C{len(colors)}")
        for ax, key in zip(axes, ("format", "correctness")):
            ax.plot(r["steps"], r[key], color=c, alpha=0.35, lw=1)
    for e, c in colors.items():
        rs = [r for r in runs if r["estimator"] == e]
        n = min(len(r["steps"]) for r in rs)
        for ax, key in zip(axes, ("format", "correctness")):
            mean = [_mean([r[key][i] for r in rs]) for i in range(n)]
            ax.plot(rs[0]["steps"][:n], mean, color=c, lw=2.5, label=f"{e} (mean of {len(rs)} seeds)")
    axes[0].set(xlabel="step", ylabel="batch format rate", title="format", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="step", ylabel="batch mean correctness", title="correctness [-3, 3]")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    out = make_run_dir(args.out, "bench-learning-toolcall")
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        warm_dir = shared_warm_start(args, seed, out) if args.warmstart_steps > 0 else ""
        for e in args.estimators:
            r = run_one(args, e, seed, out, warm_dir)
            runs.append(r)
            print(f"{e} seed {seed}: format {['%.2f' % x for x in r['format']]} "
                  f"steps-to-{args.threshold:.0%} {r['steps_to']} ({r['wall_s']:.0f} s)", flush=True)
    print(write_outputs(args, runs, out, time.perf_counter() - t0))
    print(f"outputs: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
