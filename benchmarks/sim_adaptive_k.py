"""Evidence for issue 14 from ``rvpo sim`` runs: adaptive k, unreliable judges, a mostly violating start.

Runs the simulation (rvpo.sim, the same code as ``rvpo sim``) over the settings of the issue and
writes ``benchmarks/sim_adaptive_k.json`` plus the markdown tables of ``docs/adaptive_k.md``
(printed to stdout). Every cell: mean +- std over seeds; p: Welch two-sided t-test of final
constraint satisfaction against the best fixed k (the rvpo constant k in {1, 2, 4} with the
highest mean satisfaction in that setting).

    nice -n 10 .venv/bin/python benchmarks/sim_adaptive_k.py [--seeds 0..4] [--parts m,noise,floor,init,g4]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from rvpo.cli.sim import _seeds
from rvpo.sim import SimConfig, parse_method, run_methods
from rvpo.stats import mean_std, welch_t

ADAPTIVE = "rvpo:adaptive"  # the default setting (rvpo.core.schedules.Adaptive)
FIXED = ("rvpo:1", "rvpo:2", "rvpo:4")
BASE = ("gdpo", "rvpo:linear:0.5:2.0", *FIXED, "hardmin", ADAPTIVE)


def _clean(x):
    """JSON-safe: NaN / inf -> None."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _cell(xs):
    m = mean_std(xs)
    return {"mean": m.mean, "std": m.std, "values": list(xs)}


def run_setting(cfg: SimConfig, methods) -> dict:
    ms = [parse_method(x) for x in methods]
    res = run_methods(cfg, ms)
    names = None
    out = {}
    from rvpo.sim import SimEnv

    names = SimEnv(cfg).channel_names
    easy_idx = [i for i, n in enumerate(names) if n.startswith("easy")]
    for m in ms:
        runs = res[m.label]
        sat = [r.final_sat for r in runs]
        easy = [float(r.channel_curves[-1, easy_idx].mean()) for r in runs]
        mean_r = [float(r.channel_curves[-1].mean()) for r in runs]
        steps = [r.steps_to_target for r in runs]
        k = torch.stack([r.k_curve for r in runs])
        out[m.label] = {"sat": _cell(sat), "easy": _cell(easy), "mean_reward": _cell(mean_r),
                        "reached": sum(s is not None for s in steps),
                        "steps_to_95": _cell([float(s) for s in steps if s is not None]),
                        "k_first_mid_last": [float(k[:, 0].mean()), float(k[:, k.shape[1] // 2].mean()),
                                             float(k[:, -1].mean())]}
    fixed = [parse_method(x).label for x in FIXED if x in methods]
    if fixed:
        best = max(fixed, key=lambda lab: out[lab]["sat"]["mean"])
        for lab, cell in out.items():
            cell["best_fixed"] = best
            if lab != best:
                t, p = welch_t(cell["sat"]["values"], out[best]["sat"]["values"])
                cell["p_vs_best_fixed"] = p
    return out


def _pm(c, f=".3f"):
    if c["mean"] is None or c["mean"] != c["mean"] or not c.get("values"):
        return "-"
    return f"{c['mean']:{f}} ± {c['std']:{f}}"


def table(rows: list[tuple[str, dict]], label_head: str) -> str:
    head = f"| {label_head} | method | constraint sat | easy (mean) | mean reward | p vs best fixed k | reached 95% | k (first/mid/last) |"
    lines = [head, "|" + "---|" * 8]
    for setting, res in rows:
        for lab, c in res.items():
            p = c.get("p_vs_best_fixed")
            ptxt = "(best fixed)" if lab == c.get("best_fixed") else ("-" if p is None else f"{p:.2g}")
            k = c["k_first_mid_last"]
            ktxt = "-" if k[0] != k[0] else "/".join(f"{x:.2f}" for x in k)
            lines.append(f"| {setting} | {lab} | {_pm(c['sat'])} | {_pm(c['easy'])} | {_pm(c['mean_reward'])} | "
                         f"{ptxt} | {c['reached']}/{len(c['sat']['values'])} | {ktxt} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=_seeds, default=(0, 5), help="consecutive seeds, as rvpo sim reads them: 0..4")
    ap.add_argument("--parts", default="m,noise,floor,init,g4")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = SimConfig(seed_offset=args.seeds[0], seeds=args.seeds[1])
    parts = args.parts.split(",")
    report: dict = {"seeds": list(range(args.seeds[0], args.seeds[0] + args.seeds[1])), "adaptive": ADAPTIVE}
    md = []
    t0 = time.perf_counter()
    if "m" in parts:
        rows = [(f"m_easy={m}", run_setting(replace(base, m_easy=m), BASE)) for m in (1, 2, 4, 8, 16, 32)]
        report["m_easy"] = dict(rows)
        md.append("### Number of easy channels (defaults otherwise)\n\n" + table(rows, "setting"))
    if "noise" in parts:
        methods = ("gdpo", "rvpo:linear:0.5:2.0", *FIXED, ADAPTIVE)
        rows = [(f"noise={v:g}", run_setting(replace(base, noise=v), methods)) for v in (0.25, 1.0, 2.0)]
        report["noise"] = dict(rows)
        md.append("### Easy-channel noise level (m_easy = 8)\n\n" + table(rows, "setting"))
    if "floor" in parts:
        methods = ("gdpo", "gdpo+floor", *FIXED, "rvpo:2+floor", "hardmin", "hardmin+floor", ADAPTIVE,
                   ADAPTIVE + "+floor")
        settings = [(1, 1.0), (4, 1.0), (4, 0.5), (8, 1.0)]
        rows = [(f"noisy={n}, random={q:g}", run_setting(replace(base, noisy=n, noisy_random=q), methods))
                for n, q in settings]
        report["noisy_judges"] = dict(rows)
        md.append("### Unreliable judge channels, without and with the noise floor (m_easy = 8)\n\n"
                  + table(rows, "setting"))
    if "init" in parts:
        rows = [("init_sat=0.5", run_setting(replace(base, init_sat=0.5), BASE))]
        report["init_sat_0.5"] = dict(rows)
        md.append("### A mostly violating start (--init-sat 0.5, m_easy = 8)\n\n" + table(rows, "setting"))
    if "g4" in parts:
        rows = [(f"G=4, m_easy={m}", run_setting(replace(base, group_size=4, m_easy=m), BASE)) for m in (8, 32)]
        report["group_size_4"] = dict(rows)
        md.append("### Group size 4 (where a fixed k has to be larger)\n\n" + table(rows, "setting"))
    report["wall_s"] = time.perf_counter() - t0
    print("\n\n".join(md), flush=True)
    Path(args.out).write_text(json.dumps(_clean(report), indent=1, allow_nan=False))
    print(f"\n({report['wall_s']:.0f} s; wrote {args.out})")


if __name__ == "__main__":
    main()
