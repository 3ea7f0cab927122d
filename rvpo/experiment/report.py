"""``report.md`` of an experiment: setup, wall time, held-out table, tests against the first method, figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rvpo.experiment import aggregate, neglect
from rvpo.experiment.aggregate import RunData
from rvpo.experiment.plots import write_plots
from rvpo.experiment.report_neglect import channels_section as _channels
from rvpo.experiment.report_neglect import hold_section as _hold
from rvpo.experiment.report_neglect import screen_section as _screen_only
from rvpo.experiment.spec import ExperimentSpec
from rvpo.runs import atomic_write_text
from rvpo.tasks.base import get_task


def _f(v: Any, fmt: str = ".3f") -> str:
    return f"{v:{fmt}}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _cell(d: dict) -> str:
    """``mean ± std [lo, hi]`` (the CI only where there are >= 2 seeds)."""
    if not d or d.get("n", 0) == 0:
        return "n/a"
    lo, hi = d.get("ci95") or [None, None]
    ci = f" [{_f(lo, '.2f')}, {_f(hi, '.2f')}]" if _f(lo) != "n/a" else ""
    return f"{_f(d['mean'])} ± {_f(d['std'])}{ci}"


def _p(p: Any) -> str:
    if not isinstance(p, (int, float)) or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _setup(spec: ExperimentSpec, task: Any, runs: list[RunData]) -> list[str]:
    c = spec.base
    warm = any((r.run_dir / "warmstart").is_dir() for r in runs)
    lines = ["## Setup", "",
             f"- task `{c.task}`" + (f": {task.description}" if getattr(task, "description", "") else ""),
             f"- model `{c.model}`, {f'LoRA r={c.lora.r}' if c.lora.enabled else 'full fine-tune'}, precision "
             f"`{c.precision}` (what each run used: the Runs table)",
             f"- {c.steps} RL steps x {c.prompts_per_step} prompts x G={c.group_size} completions, max "
             f"{c.max_completion_length} new tokens, lr {c.learning_rate:g}, KL beta {c.kl_beta:g}",
             "- warm start: " + (f"{c.warmstart.steps} SFT steps x {c.warmstart.batch_size} gold answers, trained "
                                 "once per seed by the first method's run and loaded by the others" if warm else
                                 "none (disabled, or the task gives no gold answers): RL from the base model"),
             "- held-out eval: " + (f"{c.eval.examples or 'all'} prompts, greedy, {c.eval.max_new_tokens} tokens"
                                    if c.eval.enabled else "disabled"),
             f"- seeds: {', '.join(map(str, spec.seeds))}; target: `{spec.target}`"
             + (f" (mean of the last {spec.last_steps} logged steps)" if spec.target_is_train else ""),
             f"- reference for the tests: the first method, `{spec.methods[0].label}`", "",
             "| method | estimator | k schedule / beta | other fields |", "| --- | --- | --- | --- |"]
    for m in spec.methods:
        a = m.cfg.advantage
        kb = f"beta {a.beta:g}" if a.estimator == "rvpo_explicit" else (
            f"k `{a.k}`" if a.estimator == "rvpo" or "advantage.k" in m.overrides else "-")
        shown = ("advantage.estimator", "advantage.k", "advantage.beta")
        other = ", ".join(f"{k.removeprefix('advantage.')}={v}" for k, v in m.overrides.items() if k not in shown)
        est = a.estimator
        lines.append(f"| {m.label} | `{est}` | {kb} | {other or '-'} |")
    return lines + [""]


def _heldout(summary: dict, names: list[str], n_eval: Any) -> list[str]:
    if not names:
        return []
    lines = [f"## Held-out evaluation (greedy, {n_eval} prompts per run)", "",
             "Mean ± std over seeds [Student-t 95% CI of the mean].", "",
             "| | seeds | " + " | ".join(names) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    ref_names = {"eval_before": "before training (base model)", "eval_warmstart": "after the warm start (SFT)"}
    for stage, label in ref_names.items():
        if stage in summary["reference"]:
            r = summary["reference"][stage]
            n = next(iter(r.values()))["n"] if r else 0
            lines.append(f"| *{label}* | {n} | " + " | ".join(_cell(r[m]) for m in names) + " |")
    for lab, s in summary["methods"].items():
        lines.append(f"| **{lab}** after RL | {len(s['seeds'])} | " + " | ".join(_cell(s["metrics"][m]) for m in names) + " |")
    return lines + [""]


def _tests(summary: dict) -> list[str]:
    first, target = summary["first"], summary["target"]
    lines = [f"## Difference from `{first}` on `{target}`", "",
             "Difference of means over seeds with a percentile bootstrap 95% CI, and Welch's two-sided t-test.", "",
             f"| method | {target} (mean ± std [95% CI]) | difference vs {first} [95% bootstrap CI] | Welch t | p | "
             "verdict |", "| --- | --- | --- | --- | --- | --- |",
             f"| {first} | {_cell(summary['methods'][first]['target'])} | (reference) | | | |"]
    for c in summary["comparisons"]:
        lo, hi = c["ci95"]
        lines.append(f"| {c['label']} | {_cell(summary['methods'][c['label']]['target'])} | {_f(c['diff'], '+.3f')} "
                     f"[{_f(lo, '+.3f')}, {_f(hi, '+.3f')}] | {_f(c['t'], '.2f')} | {_p(c['p'])} | {c['verdict']} |")
    lines.append("")
    for c in summary["comparisons"]:
        if c["significant"]:
            word = "higher" if c["diff"] > 0 else "lower"
            lines.append(f"- `{c['label']}` scores {word} than `{first}` on `{target}` ({_f(c['diff'], '+.3f')}, "
                         f"p = {_p(c['p'])}, {c['n_a']} vs {c['n_b']} seeds).")
        elif math.isfinite(c["p"]):
            lines.append(f"- `{c['label']}` vs `{first}`: **no significant difference** on `{target}` "
                         f"({_f(c['diff'], '+.3f')}, p = {_p(c['p'])}, {c['n_a']} vs {c['n_b']} seeds). With this many "
                         "seeds that is not evidence that the methods are equal, only that this experiment cannot tell them apart.")
        else:
            lines.append(f"- `{c['label']}` vs `{first}`: {c['verdict']}.")
    if summary["secondary"]:
        lines += ["", "Other held-out metrics (exploratory: no correction for multiple comparisons):", "",
                  f"| method | metric | difference vs {first} [95% bootstrap CI] | p |", "| --- | --- | --- | --- |"]
        for c in summary["secondary"]:
            lo, hi = c["ci95"]
            lines.append(f"| {c['label']} | {c['metric']} | {_f(c['diff'], '+.3f')} [{_f(lo, '+.3f')}, "
                         f"{_f(hi, '+.3f')}] | {_p(c['p'])} |")
    return lines + [""]


def _runs(spec: ExperimentSpec, runs: list[RunData], rows: list[dict]) -> list[str]:
    lines = ["## Runs", "", "| run | finished | steps | precision | wall s | target | summary |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r, row in zip(runs, rows, strict=True):
        rel = r.run_dir.relative_to(spec.root)
        lines.append(f"| {r.label} seed {r.seed} | {'yes' if r.finished else '**no**'} | {row['steps']}/{r.steps} | "
                     f"{r.precision or '?'} | {_f(r.wall_s, '.0f')} | {_f(row['target_value'])} | [summary.md]({rel}/summary.md) |")
    return lines + [""]


def write_report(spec: ExperimentSpec, task: Any, runs: list[RunData], rows: list[dict], summary: dict,
                 names: list[str], figures: list[Path], wall_session: float) -> Path:
    """Write ``<root>/report.md``; returns its path."""
    done, planned = summary["runs_finished"], summary["runs_planned"]
    status = (f"all {planned} runs finished" if done == planned else
              f"**partial**: {done} of {planned} runs finished (statistics use the finished ones; run "
              f"`rvpo experiment {spec.path or '<file>'}` again to continue)")
    wall = summary["wall_s_runs"]
    out = [f"# rvpo experiment: {spec.name}", "", f"Status: {status}.", ""]
    out += _setup(spec, task, runs)
    out += ["## Wall time", "", f"Sum over runs: {wall:.0f} s ({wall / 60:.1f} min); this invocation: "
            f"{wall_session:.0f} s. Per run (mean ± std over seeds): "
            + ", ".join(f"{lab} {_f(s['wall_s']['mean'], '.0f')} ± {_f(s['wall_s']['std'], '.0f')} s"
                       for lab, s in summary["methods"].items()), ""]
    n_eval = next((r.eval_after["n"] for r in runs if r.eval_after), "?")
    if not spec.target_is_train:
        out += _heldout(summary, names, n_eval)
    out += _tests(summary)
    out += _hold(summary) + _channels(summary) + _screen_only(summary)
    if figures:
        smooth = f" (each run's trailing mean over {spec.smooth} steps)" if spec.smooth > 1 else ""
        out += ["## Training curves", "", f"Per-step batch means of the sampled completions{smooth}; the band is ± 1 "
                "std over seeds at each step (as the paper's figure 3).", ""]
        out += [f"![{p.stem}]({p.relative_to(spec.root)})" for p in figures] + [""]
    out += _runs(spec, runs, rows)
    out += ["## Files", "", "`curves.csv` (label, seed, step, every logged metric), `runs.csv` (one row per run: wall "
            "time, held-out metrics before/after, last-steps training means), `results.json` (the statistics above), "
            "`experiment.yaml` (the resolved experiment), `plots/`, `runs/<label>-seed<N>/` (rvpo train run "
            "directories).", ""]
    path = spec.root / "report.md"
    atomic_write_text(path, "\n".join(out))
    return path


def finish(spec: ExperimentSpec, wall_session: float = 0.0) -> tuple[Path, dict]:
    """Aggregate the run directories into the tables, plots and report; returns ``(report path, summary)``."""
    task = get_task(spec.base.task, spec.base.task_options)
    runs = aggregate.collect(spec)
    names = aggregate.metric_names(task, runs)
    summary = aggregate.summarise(spec, runs, names)
    summary.update(neglect.summarise(spec, runs))
    summary["wall_s_session"] = wall_session
    aggregate.write_tables(spec, runs, summary, names)
    rows = aggregate.run_rows(spec, runs, names)
    per_method = {m.label: [aggregate.target_value(spec, r) for r in runs if r.label == m.label and r.finished]
                  for m in spec.methods}
    figures = write_plots(runs, [m.label for m in spec.methods], spec.root / "plots", spec.target, per_method,
                          spec.smooth, spec.constraint_channels, spec.easy_channels)
    return write_report(spec, task, runs, rows, summary, names, figures, wall_session), summary
