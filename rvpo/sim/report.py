"""Summaries, the significance test, text tables and CSV/JSON files of simulation results."""

from __future__ import annotations

import math

import torch

from rvpo.runs import atomic_write_text, csv_text, json_safe, write_json
from rvpo.sim.run import SAT_TARGET, RunResult
from rvpo.stats import mean_std, welch_t


def _ms(xs: list[float]) -> dict:
    m = mean_std(xs)
    return {"mean": m.mean, "std": m.std, "n": m.n}


def summarise_runs(runs: list[RunResult], channel_names: list[str]) -> dict:
    """Mean / std over seeds of the final metrics of one method."""
    finals = torch.stack([r.channel_curves[-1] for r in runs])  # (seeds, M)
    steps = [r.steps_to_target for r in runs]
    reached = [s for s in steps if s is not None]
    return {
        "final_sat": _ms([r.final_sat for r in runs]),
        "mean_reward": _ms(finals.mean(1).tolist()),
        "channels": {n: _ms(finals[:, j].tolist()) for j, n in enumerate(channel_names)},
        "steps_to_95": {**_ms([float(s) for s in reached]), "reached": len(reached), "of": len(runs)},
        "final_style_probs": torch.stack([r.style_probs for r in runs]).mean(0).tolist(),
        "seeds": [r.seed for r in runs],
    }


def pick_pair(labels: list[str]) -> tuple[str | None, str | None]:
    """The (rvpo, gdpo) pair to test: rvpo with the paper's linear 0.5->2.0 schedule if run, else the first rvpo."""
    rv = [lab for lab in labels if lab.startswith("rvpo[")]
    a = next((lab for lab in rv if "linear:0.5:2" in lab), rv[0] if rv else None)
    return a, ("gdpo" if "gdpo" in labels else None)


def significance(results: dict[str, list[RunResult]]) -> dict:
    """Welch t-test of final constraint satisfaction, rvpo (linear) vs gdpo (two-sided)."""
    a, b = pick_pair(list(results))
    if a is None or b is None:
        return {"a": a, "b": b, "metric": "final_sat", "t": None, "p": None,
                "note": "needs both an rvpo method and gdpo in --methods"}
    t, p = welch_t([r.final_sat for r in results[a]], [r.final_sat for r in results[b]])
    return {"a": a, "b": b, "metric": "final_sat", "test": "Welch two-sided t-test over seeds", "t": t, "p": p}


def summarise(results: dict[str, list[RunResult]], channel_names: list[str], methods: list | None = None) -> dict:
    """The ``results.json`` payload: per-method summaries and the rvpo-vs-gdpo test."""
    info = {m.label: m.to_dict() for m in methods} if methods else {}
    out = {
        "channels": list(channel_names),
        "sat_target": SAT_TARGET,
        "methods": {lab: {**info.get(lab, {}), **summarise_runs(runs, channel_names)} for lab, runs in results.items()},
        "significance": significance(results),
    }
    return json_safe(out)


def _pm(d: dict, fmt: str = ".3f") -> str:
    if d.get("mean") is None:
        return "-"
    return f"{d['mean']:{fmt}} ± {d['std']:{fmt}}"


def format_table(summary: dict) -> str:
    """Plain-text table, one row per method (easy channels share one column: equal by symmetry)."""
    chans = summary["channels"]
    easy = [c for c in chans if c != "constraint"]
    head = ["method", "constraint sat", f"easy ({len(easy)} ch, each)", "mean reward", "steps to 95%"]
    rows = []
    for lab, s in summary["methods"].items():
        e = s["channels"][easy[0]] if easy else {"mean": None}
        st = s["steps_to_95"]
        steps = f"{_pm(st, '.0f')} ({st['reached']}/{st['of']})" if st["reached"] else f"never (0/{st['of']})"
        rows.append([lab, _pm(s["final_sat"]), _pm(e), _pm(s["mean_reward"]), steps])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    sig = summary["significance"]
    if sig.get("p") is not None:
        lines.append(f"\n{sig['a']} vs {sig['b']}, final constraint satisfaction: Welch t = {sig['t']:.2f}, p = {sig['p']:.2g}")
    elif sig.get("note"):
        lines.append(f"\nsignificance: {sig['note']}")
    lines.append("(mean ± std over seeds; 'steps to 95%' averages the seeds that got there)")
    return "\n".join(lines)




def results_rows(results: dict[str, list[RunResult]], channel_names: list[str]) -> list[dict]:
    """One row per (method, seed) with the final metrics."""
    return [r.final_metrics(channel_names) for runs in results.values() for r in runs]


def curve_rows(results: dict[str, list[RunResult]], channel_names: list[str]) -> list[dict]:
    """One row per (method, step): mean and std over seeds of every channel and the mean reward."""
    rows = []
    for lab, runs in results.items():
        c = torch.stack([r.channel_curves for r in runs])  # (seeds, T + 1, M)
        total = c.mean(2)  # (seeds, T + 1)
        sd = (lambda x, r=runs: x.std(0) if len(r) > 1 else torch.zeros_like(x[0]))
        mean_c, std_c, mean_t, std_t = c.mean(0), sd(c), total.mean(0), sd(total)
        k = runs[0].k_curve
        for t in range(c.shape[1]):
            row = {"method": lab, "step": t, "k": float(k[t - 1]) if t and math.isfinite(k[t - 1]) else None}
            for j, n in enumerate(channel_names):
                row[f"{n}_mean"], row[f"{n}_std"] = float(mean_c[t, j]), float(std_c[t, j])
            row["mean_reward_mean"], row["mean_reward_std"] = float(mean_t[t]), float(std_t[t])
            rows.append(row)
    return rows


def write_results(run_dir, results: dict[str, list[RunResult]], summary: dict, channel_names: list[str]) -> list[str]:
    """Write results.json, results.csv and curves.csv; return the file names."""
    write_json(run_dir / "results.json", summary)
    atomic_write_text(run_dir / "results.csv", csv_text(results_rows(results, channel_names)))
    atomic_write_text(run_dir / "curves.csv", csv_text(curve_rows(results, channel_names)))
    return ["results.json", "results.csv", "curves.csv"]


def summarise_sweep(rows: list[dict]) -> list[dict]:
    """One JSON-safe row per sweep point and method (final satisfaction, easy reward, steps to 95%)."""
    out = []
    for row in rows:
        s = summarise_runs(row["runs"], row["channel_names"])
        easy = row["channel_names"][0]
        out.append(json_safe({"param": row["param"], "value": row["value"], "method": row["method"],
                           "final_sat": s["final_sat"], "easy": s["channels"][easy],
                           "mean_reward": s["mean_reward"], "steps_to_95": s["steps_to_95"]}))
    return out


def format_sweep_table(points: list[dict]) -> str:
    head = [points[0]["param"] if points else "value", "method", "constraint sat", "easy (each)", "reached 95%"]
    rows = [[f"{p['value']:g}", p["method"], _pm(p["final_sat"]), _pm(p["easy"]),
             f"{p['steps_to_95']['reached']}/{p['steps_to_95']['of']}"] for p in points]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def write_sweep(run_dir, points: list[dict]) -> list[str]:
    write_json(run_dir / "sweep.json", points)
    flat = [{"param": p["param"], "value": p["value"], "method": p["method"],
             "final_sat_mean": p["final_sat"]["mean"], "final_sat_std": p["final_sat"]["std"],
             "easy_mean": p["easy"]["mean"], "easy_std": p["easy"]["std"],
             "mean_reward_mean": p["mean_reward"]["mean"], "mean_reward_std": p["mean_reward"]["std"],
             "reached_95": p["steps_to_95"]["reached"], "seeds": p["steps_to_95"]["of"]} for p in points]
    atomic_write_text(run_dir / "sweep.csv", csv_text(flat))
    return ["sweep.json", "sweep.csv"]
