"""Read an experiment's run directories and compute its tables: curves, per-run rows, statistics.

Statistics are over seeds (one number per run): mean +- sample std, a Student-t 95% CI of the
mean, and for each method against the FIRST method on the target metric, the difference of
means with a percentile bootstrap 95% CI and Welch's two-sided t-test (:mod:`rvpo.stats`). Only
finished runs enter the held-out statistics; training curves use every step logged so far.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvpo.experiment.rundirs import RUN_INFO, plan, run_status
from rvpo.experiment.spec import TRAIN_PREFIX, ExperimentSpec
from rvpo.runs import atomic_write_text, csv_text, read_jsonl, write_json
from rvpo.stats import bootstrap_diff_ci, mean_ci, mean_std, welch_t

ALPHA = 0.05
SKIP_CURVE_KEYS = ("step", "time")


@dataclass
class RunData:
    """One run directory as read back: its training log and its evaluations."""

    label: str
    seed: int
    run_dir: Path
    steps: int
    finished: bool
    wall_s: float | None = None
    precision: str | None = None
    records: list[dict] = field(default_factory=list)
    eval_before: dict | None = None
    eval_warmstart: dict | None = None
    eval_after: dict | None = None


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan


def collect(spec: ExperimentSpec) -> list[RunData]:
    """Every planned run that has a folder, in plan order (seeds outer, methods inner)."""
    out = []
    for seed, m in plan(spec):
        d = spec.run_dir(m.label, seed)
        if not (d / "config.yaml").is_file():
            continue
        cfg = spec.config(m, seed)
        info = _json(d / RUN_INFO) or {}
        metrics = d / "metrics.jsonl"
        out.append(RunData(label=m.label, seed=seed, run_dir=d, steps=cfg.steps,
                           finished=run_status(d, cfg) == "done", wall_s=info.get("wall_s"),
                           precision=info.get("precision"),
                           records=read_jsonl(metrics) if metrics.is_file() else [],
                           eval_before=_json(d / "eval_before.json"), eval_warmstart=_json(d / "eval_warmstart.json"),
                           eval_after=_json(d / "eval_after.json")))
    return out


def metric_names(task: Any, runs: list[RunData]) -> list[str]:
    """Held-out metrics for tables: the task's ``eval_metrics`` order, else every name found."""
    names = list(getattr(task, "eval_metrics", ()) or ())
    if not names:
        names = sorted({k for r in runs if r.eval_after for k in r.eval_after.get("metrics", {})})
    return names


def train_last(run: RunData, key: str, last: int) -> float:
    """Mean of ``key`` over the last ``last`` logged steps of ``run`` (nan if never logged)."""
    vals = [_num(r.get(key)) for r in run.records[-last:]]
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def target_value(spec: ExperimentSpec, run: RunData) -> float:
    if spec.target_is_train:
        return train_last(run, spec.target[len(TRAIN_PREFIX):], spec.last_steps)
    return _num((run.eval_after or {}).get("metrics", {}).get(spec.target))


def curve_keys(runs: list[RunData]) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for rec in r.records:
            keys += [k for k, v in rec.items() if k not in keys and k not in SKIP_CURVE_KEYS
                     and isinstance(v, (int, float, type(None))) and not isinstance(v, bool)]
    return keys


def curve_rows(runs: list[RunData]) -> list[dict]:
    """``curves.csv``: one row per (run, step) with every numeric metric logged."""
    keys = curve_keys(runs)
    return [{"label": r.label, "seed": r.seed, "step": rec["step"], **{k: rec.get(k) for k in keys}}
            for r in runs for rec in r.records]


def _trailing_mean(xs: list[float], w: int) -> list[float]:
    return [sum(xs[max(0, i - w + 1): i + 1]) / len(xs[max(0, i - w + 1): i + 1]) for i in range(len(xs))]


def curve_stats(runs: list[RunData], key: str, smooth: int = 1
                ) -> dict[str, tuple[list[int], list[float], list[float], list[int]]]:
    """``{label: (steps, mean, std, n)}`` over seeds of ``key`` at each step (std 0 for one seed).

    ``smooth > 1``: each run's series is first replaced by its trailing mean over ``smooth`` logged
    steps (the per-step batch means of a few completions are noisy).
    """
    out = {}
    for label in dict.fromkeys(r.label for r in runs):
        by_step: dict[int, list[float]] = {}
        for r in runs:
            if r.label != label:
                continue
            pts = [(rec["step"], _num(rec.get(key))) for rec in r.records]
            pts = [(s, v) for s, v in pts if math.isfinite(v)]
            for s, v in zip([s for s, _ in pts], _trailing_mean([v for _, v in pts], smooth), strict=True):
                by_step.setdefault(s, []).append(v)
        steps = sorted(by_step)
        if steps:
            ms = [mean_std(by_step[s]) for s in steps]
            out[label] = (steps, [m.mean for m in ms], [m.std for m in ms], [m.n for m in ms])
    return out


def run_rows(spec: ExperimentSpec, runs: list[RunData], names: list[str]) -> list[dict]:
    """``runs.csv``: label, seed, status, wall time, target, held-out metrics before/after, last-steps train means."""
    rows = []
    chans = [k for k in curve_keys(runs) if k.startswith("rewards/") and k.endswith("/mean")]
    for r in runs:
        row: dict[str, Any] = {"label": r.label, "seed": r.seed, "finished": r.finished,
                               "steps": max((rec["step"] for rec in r.records), default=0), "wall_s": r.wall_s,
                               "precision": r.precision,
                               "target": spec.target, "target_value": target_value(spec, r)}
        for stage, res in (("before", r.eval_before), ("warmstart", r.eval_warmstart), ("after", r.eval_after)):
            metrics = (res or {}).get("metrics", {})
            for name in dict.fromkeys([*names, *metrics]):
                row[f"{stage}/{name}"] = metrics.get(name)
        for k in chans + ["frac_reward_zero_std"]:
            row[f"last{spec.last_steps}/{k}"] = train_last(r, k, spec.last_steps)
        row["run_dir"] = str(r.run_dir)
        rows.append(row)
    return rows


def _ms_ci(xs: list[float]) -> dict:
    m = mean_std(xs)
    lo, hi = mean_ci(xs)
    return {"mean": m.mean, "std": m.std, "n": m.n, "ci95": [lo, hi]}


def compare(a: list[float], b: list[float]) -> dict:
    """``mean(a) - mean(b)`` with its bootstrap 95% CI, Welch's t and p, and a plain-words verdict."""
    a = [x for x in a if math.isfinite(x)]
    b = [x for x in b if math.isfinite(x)]
    diff = (sum(a) / len(a) - sum(b) / len(b)) if a and b else math.nan
    lo, hi = bootstrap_diff_ci(a, b)
    t, p = welch_t(a, b)
    if not math.isfinite(p):
        verdict = "not testable (needs >= 2 finished seeds per method)"
    elif p < ALPHA:
        verdict = f"significant difference (p < {ALPHA:g})"
    else:
        verdict = f"no significant difference (p >= {ALPHA:g})"
    return {"diff": diff, "ci95": [lo, hi], "t": t, "p": p, "n_a": len(a), "n_b": len(b),
            "significant": bool(math.isfinite(p) and p < ALPHA), "verdict": verdict}


def summarise(spec: ExperimentSpec, runs: list[RunData], names: list[str]) -> dict:
    """The ``results.json`` payload: per-method statistics over seeds and the comparisons with the first method."""
    done = [r for r in runs if r.finished]
    labels = [m.label for m in spec.methods]
    by = {lab: [r for r in done if r.label == lab] for lab in labels}
    methods = {}
    for lab, rs in by.items():
        metrics = {n: _ms_ci([_num((r.eval_after or {}).get("metrics", {}).get(n)) for r in rs]) for n in names}
        methods[lab] = {"seeds": [r.seed for r in rs], "target": _ms_ci([target_value(spec, r) for r in rs]),
                        "metrics": metrics, "wall_s": _ms_ci([_num(r.wall_s) for r in rs])}
    ref = {}
    for stage in ("eval_before", "eval_warmstart"):
        rs = [r for r in done if r.label == labels[0] and getattr(r, stage)]
        if rs:
            ref[stage] = {n: _ms_ci([_num(getattr(r, stage)["metrics"].get(n)) for r in rs]) for n in names}
    first = labels[0]
    vals = {lab: [target_value(spec, r) for r in rs] for lab, rs in by.items()}
    comparisons = [{"label": lab, "vs": first, "metric": spec.target, **compare(vals[lab], vals[first])}
                   for lab in labels[1:]]
    secondary = []
    if not spec.target_is_train:
        for n in names:
            if n == spec.target:
                continue
            col = {lab: [_num((r.eval_after or {}).get("metrics", {}).get(n)) for r in rs] for lab, rs in by.items()}
            secondary += [{"label": lab, "vs": first, "metric": n, **compare(col[lab], col[first])} for lab in labels[1:]]
    walls = [_num(r.wall_s) for r in runs]
    return {"name": spec.name, "target": spec.target, "first": first, "seeds": list(spec.seeds),
            "runs_planned": len(spec.seeds) * len(labels), "runs_finished": len(done),
            "wall_s_runs": sum(w for w in walls if math.isfinite(w)), "methods": methods, "reference": ref,
            "comparisons": comparisons, "secondary": secondary}




def write_tables(spec: ExperimentSpec, runs: list[RunData], summary: dict, names: list[str]) -> list[str]:
    """Write ``curves.csv``, ``runs.csv`` and ``results.json`` into the experiment folder."""
    atomic_write_text(spec.root / "curves.csv", csv_text(curve_rows(runs)))
    atomic_write_text(spec.root / "runs.csv", csv_text(run_rows(spec, runs, names)))
    write_json(spec.root / "results.json", summary)
    return ["curves.csv", "runs.csv", "results.json"]
