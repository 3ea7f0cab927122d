"""``report.md`` sections for near-binary outcomes: kept the constraint (Fisher), constraint vs easy, the screen."""

from __future__ import annotations

import math
from typing import Any

from rvpo.stats import fisher_exact


def _f(v: Any, fmt: str = ".3f") -> str:
    return f"{v:{fmt}}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _p(p: Any) -> str:
    if not isinstance(p, (int, float)) or not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _ms(d: dict | None) -> str:
    return "n/a" if not d or not d.get("n") else f"{_f(d['mean'])} ± {_f(d['std'])}"


def _push(scr: dict | None) -> str:
    if not scr or scr.get("push") is None:
        return "n/a"
    return f"{_f(scr['push'], '+.3f')} ± {_f(scr.get('se'))}"


def _kept_rows(h: dict, first: str) -> dict[str, str]:
    """Per method: ``| label | kept/n | share [CI] | Fisher p |`` of a hold summary's ``methods``/``comparisons``."""
    comps = {c["label"]: c for c in h["comparisons"]}
    rows = {}
    for lab, m in h["methods"].items():
        lo, hi = m["ci95"]
        fp = "(reference)" if lab == first else _p(comps[lab]["p"])
        rows[lab] = f"| {lab} | {m['kept']}/{m['n']} | {_f(m['share'], '.2f')} [{_f(lo, '.2f')}, {_f(hi, '.2f')}] | {fp} |"
    return rows


def hold_section(summary: dict) -> list[str]:
    h = summary.get("hold")
    if not h:
        return []
    scr = (summary.get("screen") or {}).get("methods", {})
    welch = {c["label"]: c for c in summary.get("comparisons", []) if c.get("metric") == h["metric"]}
    welch.update({c["label"]: c for c in summary.get("secondary", []) if c.get("metric") == h["metric"]})
    first = h["first"]
    head = "| method | kept (seeds) | share [Wilson 95% CI] | Fisher p vs " + first + " | Welch p on " + h["metric"]
    head += " |" + (" predicted push on the constraint ± SE (screen) |" if scr else "")
    lines = [f"## Kept the constraint: `{h['metric']}`", "",
             f"A run kept it when {h['rule']}. Fisher's exact two-sided test of each method's count against "
             f"`{first}`'s, beside Welch's t on the metric's values.", "", head,
             "|" + " --- |" * (6 if scr else 5)]
    rows = _kept_rows(h, first)
    for lab, row in rows.items():
        wp = "" if lab == first else _p(welch.get(lab, {}).get("p"))
        lines.append(f"{row} {wp} |" + (f" {_push(scr.get(lab))} |" if scr else ""))
    lines.append("")
    alone = h.get("metric_rule_only")
    if alone:
        lines += [f"The metric rule alone ({alone['rule']}), whatever the other rewards did:", "",
                  "| method | kept (seeds) | share [Wilson 95% CI] | Fisher p vs " + first + " |", "|" + " --- |" * 4,
                  *_kept_rows(alone, first).values(), ""]
    for c in h["comparisons"]:
        if c["significant"]:
            lines.append(f"- `{c['label']}` kept it in {c['kept_a']}/{c['n_a']} seeds against {c['kept_b']}/{c['n_b']} "
                         f"for `{first}` (Fisher p = {_p(c['p'])}).")
        elif math.isfinite(c["p"]):
            few = (f"; with {min(c['n_a'], c['n_b'])} seeds a method even the most lopsided counts give p = "
                   f"{_p(_best_p(c['n_a'], c['n_b']))}" if _best_p(c["n_a"], c["n_b"]) >= 0.05 else "")
            lines.append(f"- `{c['label']}` vs `{first}`: {c['kept_a']}/{c['n_a']} against {c['kept_b']}/{c['n_b']}, "
                         f"**no significant difference** (Fisher p = {_p(c['p'])}){few}.")
    return lines + [""]


def channels_section(summary: dict) -> list[str]:
    ch = summary.get("channels")
    if not ch:
        return []
    w = ch["last_steps"]
    scr = (summary.get("screen") or {}).get("methods", {})
    lines = ["## Constraint vs easy channels", "",
             f"Constraint: {', '.join(ch['constraint_channels'])}; easy: {', '.join(ch['easy_channels']) or 'none'}. "
             f"Held-out: the task's metric of the same name (n/a where it reports none). Training: batch rate, "
             f"mean of the first and of the last {w} steps. Binding: mean weight on the constraint over all steps. "
             "Mean ± std over seeds.", "",
             "| method | held-out constraint before -> after | held-out easy before -> after | train constraint "
             "first -> last | train easy first -> last | binding on constraint |" + (" screen push: constraint / easy |"
                                                                                       if scr else ""),
             "|" + " --- |" * (7 if scr else 6)]
    for lab, m in ch["methods"].items():
        row = (f"| {lab} | {_ms(m['constraint/heldout_before'])} -> {_ms(m['constraint/heldout_after'])} | "
               f"{_ms(m['easy/heldout_before'])} -> {_ms(m['easy/heldout_after'])} | {_ms(m['constraint/train_first'])}"
               f" -> {_ms(m['constraint/train_last'])} | {_ms(m['easy/train_first'])} -> {_ms(m['easy/train_last'])} | "
               f"{_ms(m['binding/constraint'])} |")
        if scr:
            s = scr.get(lab) or {}
            row += f" {_f(s.get('push'), '+.3f')} / {_f(s.get('easy_push'), '+.3f')} |"
        lines.append(row)
    return lines + ["", "Figure: `plots/constraint_vs_easy.png` (under Training curves).", ""]


def screen_section(summary: dict) -> list[str]:
    """The screen's table when there is no ``hold`` section to carry it."""
    s = summary.get("screen")
    if not s or summary.get("hold"):
        return []
    lines = [f"## Screen of the base model ({s.get('prompts')} prompts x G={s.get('group_size')})", "",
             "Predicted one-step push on the constraint ± SE over prompts (docs/screen.md); `screen.md` has every "
             "channel.", "", "| method | push on the constraint | easy push | neglected |", "| --- | --- | --- | --- |"]
    for lab, m in s["methods"].items():
        lines.append(f"| {lab} | {_push(m)} | {_f(m.get('easy_push'), '+.3f')} | {m.get('neglected') or 'none'} |")
    return lines + [""]


def _best_p(n_a: int, n_b: int) -> float:
    """The smallest Fisher p that n_a against n_b seeds can reach (all kept against none)."""
    return fisher_exact(n_a, n_a, 0, n_b)[1] if n_a and n_b else math.nan
