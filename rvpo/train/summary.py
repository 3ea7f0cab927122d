"""``summary.md`` of a training run: status, config, timings, training curves, before/after eval."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from rvpo.runs import atomic_write_text, read_jsonl
from rvpo.tasks.base import markdown_table, metric_prefixes
from rvpo.train.config import TrainConfig, to_dict
from rvpo.train.plots import channels


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:+.3f}"
    return "n/a" if v is None else str(v)


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def training_table(records: list[dict], window: int = 5, prefixes: tuple[str, ...] = ()) -> str:
    """Per-channel reward: first step, mean of the first and last ``window`` steps, last step."""
    if not records:
        return "(no training steps logged)"
    w = min(window, len(records))
    lines = [f"| channel | step {records[0]['step']} | mean of first {w} | mean of last {w} | step {records[-1]['step']} |",
             "| --- | --- | --- | --- | --- |"]
    for ch in channels(records):
        key = f"rewards/{ch}/mean"
        vals = [r.get(key) for r in records]
        lines.append(f"| {ch} | {_fmt(vals[0])} | {_fmt(_mean(vals[:w]))} | {_fmt(_mean(vals[-w:]))} | {_fmt(vals[-1])} |")
    met = [r.get("rvpo/all_binary_met") for r in records]
    if any(isinstance(v, (int, float)) for v in met):
        lines.append(f"| all binary channels met (share of completions) | {_fmt(met[0])} | {_fmt(_mean(met[:w]))} | "
                     f"{_fmt(_mean(met[-w:]))} | {_fmt(met[-1])} |")
    extra = sorted({k for r in records for k in r if prefixes and k.startswith(prefixes)})  # the task's own figures
    if extra:
        lines += ["", "Task figures (first step / mean of the last steps):", ""]
        lines += [f"- `{k}`: {_fmt(records[0].get(k))} / {_fmt(_mean([r.get(k) for r in records[-w:]]))}" for k in extra]
    ks = [r["rvpo/k"] for r in records if isinstance(r.get("rvpo/k"), (int, float))]
    if ks:
        lines.append(f"\nk went from {ks[0]:.3f} to {ks[-1]:.3f}.")
    return "\n".join(lines)


def write_summary(run_dir: Path, cfg: TrainConfig, res: Any, final_logs: dict | None = None) -> Path:
    """Write ``run_dir/summary.md`` from the run's files and ``res`` (a ``TrainResult``)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    records = read_jsonl(metrics) if metrics.is_file() else []
    status = (f"**interrupted** after step {res.last_step} of {cfg.steps} (resume: `rvpo train --resume {run_dir}`)"
              if res.interrupted else f"completed {res.last_step} of {cfg.steps} steps")
    out = [f"# rvpo train: {run_dir.name}", "", f"Status: {status}.", ""]
    out += ["## Setup", "",
            f"- task `{cfg.task}`" + (f" ({res.task.description})" if res.task is not None else "") +
            f", data `{cfg.data or (res.task.default_data if res.task is not None else '')}`",
            f"- model `{cfg.model}`, {f'LoRA r={cfg.lora.r}' if cfg.lora.enabled else 'full fine-tune'}",
            "- precision: " + (f"**{res.precision.name}** ({res.precision.reason})" if res.precision else cfg.precision),
            f"- estimator `{cfg.advantage.estimator}`, k schedule `{cfg.advantage.k}`, KL beta {cfg.kl_beta}",
            "- warm start: " + (f"{cfg.warmstart.steps} SFT steps x {cfg.warmstart.batch_size} gold answers"
                                 if cfg.warmstart.enabled and res.warm_started else
                                 "none (the task gives no gold answers)" if cfg.warmstart.enabled else "none"),
            f"- {cfg.steps} RL steps x {cfg.prompts_per_step} prompts x G={cfg.group_size} completions, "
            f"max {cfg.max_completion_length} new tokens, lr {cfg.learning_rate:g}, seed {cfg.seed}", ""]
    findings = list(res.task.findings()) if res.task is not None and hasattr(res.task, "findings") else []
    if findings:
        out += ["## Findings", ""] + [f"- **{f}**" for f in findings] + [""]
    out += ["## Wall time (this session)", "", "| stage | seconds |", "| --- | --- |"]
    out += [f"| {k} | {v:.1f} |" for k, v in res.timings.items()]
    out += ["", "## Training (per-channel reward means over the G completions of each step)", "",
            training_table(records, prefixes=metric_prefixes(res.task) if res.task is not None else ()), ""]
    if final_logs:
        keep = {k: final_logs[k] for k in ("train_runtime", "train_loss", "train_steps_per_second") if k in final_logs}
        if keep:
            out += ["Trainer: " + ", ".join(f"{k} {v:.4g}" for k, v in keep.items()), ""]
    out += ["## Held-out evaluation (greedy)", ""]
    rows = [(label, r) for label, r in (("before", res.eval_before), ("after warm start (SFT)", res.eval_warmstart),
                                        ("after RL", res.eval_after)) if r]
    task = res.task
    if rows and task is not None:
        out += [markdown_table(task, rows), "", task.describe_eval(), ""]
        base = res.eval_warmstart or res.eval_before  # RL's own effect is measured from where RL started
        if base and res.eval_after:
            d = {m: res.eval_after["metrics"][m] - base["metrics"][m] for m in task.eval_metrics
                 if isinstance(res.eval_after["metrics"].get(m), (int, float)) and
                 isinstance(base["metrics"].get(m), (int, float))}
            since = "after RL - after warm start" if res.eval_warmstart else "after - before"
            out += [f"Change {since}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()) +
                    f" (n={res.eval_after['n']}; small n: read the confidence intervals).", ""]
    else:
        out += ["(disabled, or skipped because training was interrupted)", ""]
    plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    out += ["## Resolved config", "", "```yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), "```", ""]
    path = run_dir / "summary.md"
    atomic_write_text(path, "\n".join(out))
    return path
