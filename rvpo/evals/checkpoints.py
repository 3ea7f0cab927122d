"""Evaluate every saved checkpoint of a training run: ``rvpo eval healthbench|gpqa --checkpoints RUN_DIR``.

"No late-stage collapse" is a claim about the curve, not the last point, so a sweep evaluates the
base model (step 0), every ``checkpoints/checkpoint-<step>/`` and ``final/`` of an ``rvpo train``
run directory with one benchmark, and writes, in its own run directory::

    sweep.json      one row per model: label, step, path, score, its 95% CI, n, the eval's run dir
    sweep.md        the same as a table
    sweep.png       score against step, with the 95% CIs
    <label>/        each model's own eval run directory (config.json, results.json, examples.jsonl)

``final/`` is skipped when a checkpoint of the same step exists (the same weights). LoRA
checkpoints are loaded onto their base model and merged (:func:`rvpo.model.policy.load_policy`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rvpo.model.policy import list_checkpoints
from rvpo.runs import read_jsonl, write_json


@dataclass(frozen=True)
class SweepTarget:
    """One model of a sweep: ``label`` (``base``, ``checkpoint-<step>``, ``final``), its step, what to load."""

    label: str
    step: int
    model: str


def base_model(run_dir: Path) -> str | None:
    """The model a run started from: ``model`` in its ``config.yaml`` (None if absent)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return cfg.get("model") if isinstance(cfg, dict) else None


def sweep_targets(run_dir: str | Path, include_base: bool = True) -> list[SweepTarget]:
    """The models of ``run_dir`` by step: base (0), each checkpoint, and ``final/`` at the run's last step.

    Raises ``FileNotFoundError`` when the folder holds no checkpoint and no ``final/``.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise FileNotFoundError(f"--checkpoints {str(run_dir)!r}: no such run directory")
    ckpts = list_checkpoints(run / "checkpoints") or list_checkpoints(run)
    out = [SweepTarget(f"checkpoint-{s}", s, str(p)) for s, p in ckpts]
    final = run / "final"
    if final.is_dir():
        steps = [r.get("step") for r in read_jsonl(run / "metrics.jsonl")] if (run / "metrics.jsonl").is_file() else []
        steps = [s for s in steps if isinstance(s, int)]
        step = max(steps) if steps else (ckpts[-1][0] if ckpts else 0)
        if not any(t.step == step for t in out):
            out.append(SweepTarget("final", step, str(final)))
    if not out:
        raise FileNotFoundError(f"--checkpoints {str(run_dir)!r}: no checkpoints/checkpoint-<step>/ and no final/ "
                                "(not an rvpo train run directory, or nothing saved yet)")
    base = base_model(run) if include_base else None
    if base:
        out.insert(0, SweepTarget("base", 0, base))
    return sorted(out, key=lambda t: (t.step, t.label != "base"))


EvalOne = Callable[[SweepTarget, Path], dict[str, Any]]
"""``evaluate(target, out_dir) -> {"score": float | None, "ci95": [lo, hi] | None, "n": int, ...}``."""


def run_sweep(targets: list[SweepTarget], evaluate: EvalOne, out_dir: str | Path, metric: str,
              title: str = "", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate each target into ``out_dir/<label>/``; write ``sweep.json``, ``sweep.md`` and ``sweep.png``.

    Returns the rows of ``sweep.json``. ``metric`` names the score (``overall``, ``accuracy``).
    """
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for i, t in enumerate(targets, 1):
        log(f"[{i}/{len(targets)}] {t.label} (step {t.step}): {t.model}")
        sub = out / t.label
        sub.mkdir(parents=True, exist_ok=True)
        res = evaluate(t, sub)
        rows.append({"label": t.label, "step": t.step, "model": t.model, metric: res.get("score"),
                     "ci95": res.get("ci95"), "n": res.get("n"), "run_dir": str(sub),
                     **{k: v for k, v in res.items() if k not in ("score", "ci95", "n")}})
        write_json(out / "sweep.json", {"metric": metric, "title": title, "rows": rows})  # progress survives a crash
    (out / "sweep.md").write_text(sweep_table(rows, metric, title) + "\n", encoding="utf-8")
    plot_sweep(rows, metric, out / "sweep.png", title)
    return rows


def sweep_table(rows: list[dict[str, Any]], metric: str, title: str = "") -> str:
    """Markdown table: model, step, score [95% CI], n."""
    lines = [f"# {title}", ""] if title else []
    lines += [f"| model | step | {metric} [95% CI] | n |", "| --- | --- | --- | --- |"]
    for r in rows:
        v, ci = r.get(metric), r.get("ci95")
        ok_ci = bool(ci) and all(map(_num, ci))
        cell = "n/a" if not _num(v) else (f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ok_ci
                                          else f"{v:.3f}")
        lines.append(f"| {r['label']} | {r['step']} | {cell} | {r.get('n', '?')} |")
    best = [r for r in rows if _num(r.get(metric))]
    if best:
        top = max(best, key=lambda r: r[metric])
        last = best[-1]
        lines += ["", f"Best {metric} {top[metric]:.3f} at step {top['step']} ({top['label']}); "
                      f"last {last[metric]:.3f} at step {last['step']} ({last['label']})."]
    return "\n".join(lines)


def plot_sweep(rows: list[dict[str, Any]], metric: str, path: Path, title: str = "") -> Path | None:
    """Score against step with 95% CI bars (nothing is drawn for models without a score)."""
    pts = [r for r in rows if _num(r.get(metric))]
    if not pts:
        return None
    import matplotlib  # deferred: matplotlib (start-up time; only plotting needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib (start-up time; only plotting needs it)

    xs = [r["step"] for r in pts]
    ys = [r[metric] for r in pts]
    lo = [y - (r["ci95"][0] if r.get("ci95") and _num(r["ci95"][0]) else y) for y, r in zip(ys, pts, strict=True)]
    hi = [(r["ci95"][1] if r.get("ci95") and _num(r["ci95"][1]) else y) - y for y, r in zip(ys, pts, strict=True)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} across checkpoints")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``sweep.json``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["rows"]
