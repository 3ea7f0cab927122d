"""Near-binary outcomes of an experiment: kept the constraint or not, constraint vs easy channels, the screen.

* ``hold: {metric, at_least, while_improving}``: a finished run *kept* the metric when its held-out
  value after RL is ``>= at_least`` (or, without ``at_least``, ``>= before - 0.1``) and, with
  ``while_improving: NAME``, held-out NAME rose above its value before (a constraint kept by giving
  up every other reward does not count). Per method: the share of seeds that
  kept it (Wilson 95% CI) and Fisher's exact two-sided test of its count against the first method's.
  With 5 seeds a method, 5/5 against 0/5 gives p = 0.008 and 4/5 against 0/5 p = 0.048; 3 seeds a
  method can never reach p < 0.05.
* ``constraint_channels`` / ``easy_channels``: the held-out metric named like each channel (where the
  task reports one) and the training batch rate (``rewards/<ch>/mean``, first and last
  ``last_steps`` steps) before and after, and the mean binding weight on the constraint
  (``rvpo/binding/<ch>``) over all steps; mean ± std over seeds.
* ``screen:``: the predicted push of each method on the constraint (``screen.json`` in the
  experiment folder, written by :func:`rvpo.experiment.screen.run_screen`) beside its kept share.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rvpo.experiment.aggregate import RunData, _ms_ci, _num, train_last
from rvpo.experiment.spec import HOLD_MARGIN, ExperimentSpec
from rvpo.stats import fisher_exact, wilson_ci

SCREEN_FILE = "screen.json"


def _eval(res: dict | None, name: str) -> float:
    return _num((res or {}).get("metrics", {}).get(name))


def kept(spec: ExperimentSpec, run: RunData, with_improving: bool = True) -> bool | None:
    """Did ``run`` keep ``spec.hold``'s metric? None when not decidable (no value after, or no before
    value where the rule needs one). ``with_improving=False`` ignores ``while_improving`` (the metric rule alone)."""
    if not spec.hold:
        return None
    after = _eval(run.eval_after, spec.hold["metric"])
    if not math.isfinite(after):
        return None
    if spec.hold["at_least"] is not None:
        ok = after >= spec.hold["at_least"]
    else:
        before = _eval(run.eval_before, spec.hold["metric"])
        if not math.isfinite(before):
            return None
        ok = after >= before - HOLD_MARGIN
    improving = spec.hold.get("while_improving") if with_improving else None
    if improving:  # kept *while* the other rewards still rose: not by giving up on them
        up_after, up_before = _eval(run.eval_after, improving), _eval(run.eval_before, improving)
        if not (math.isfinite(up_after) and math.isfinite(up_before)):
            return None
        ok = ok and up_after > up_before
    return ok


def hold_summary(spec: ExperimentSpec, runs: list[RunData]) -> dict | None:
    """``{"metric", "at_least", "rule", "methods": {label: {kept, n, share, ci95, seeds_kept}}, "comparisons"}``."""
    if not spec.hold:
        return None
    labels = [m.label for m in spec.methods]
    first = labels[0]

    def count(with_improving: bool) -> tuple[dict, list]:
        methods = {}
        for lab in labels:
            ks = [(r.seed, kept(spec, r, with_improving)) for r in runs if r.finished and r.label == lab]
            ks = [(s, k) for s, k in ks if k is not None]
            n, c = len(ks), sum(k for _, k in ks)
            lo, hi = wilson_ci(c, n)
            methods[lab] = {"kept": c, "n": n, "share": c / n if n else math.nan, "ci95": [lo, hi],
                            "seeds_kept": [s for s, k in ks if k]}
        comps = []
        for lab in labels[1:]:
            a, b = methods[lab], methods[first]
            odds, p = fisher_exact(a["kept"], a["n"], b["kept"], b["n"])
            comps.append({"label": lab, "vs": first, "kept_a": a["kept"], "n_a": a["n"], "kept_b": b["kept"],
                          "n_b": b["n"], "odds_ratio": odds, "p": p,
                          "significant": bool(math.isfinite(p) and p < 0.05)})
        return methods, comps

    methods, comps = count(True)
    # with while_improving, the metric rule alone too: how often a method kept the constraint at all
    alone = count(False) if spec.hold.get("while_improving") else None
    at = spec.hold["at_least"]
    metric_rule = (f"held-out {spec.hold['metric']} after RL >= {at:g}" if at is not None else
                   f"held-out {spec.hold['metric']} after RL >= its value before - {HOLD_MARGIN:g}")
    rule = metric_rule
    if spec.hold.get("while_improving"):
        rule += f", while held-out {spec.hold['while_improving']} rose above its value before"
    out = {"metric": spec.hold["metric"], "at_least": at, "rule": rule, "first": first, "methods": methods,
           "comparisons": comps}
    if alone is not None:
        out["metric_rule_only"] = {"rule": metric_rule, "methods": alone[0], "comparisons": alone[1]}
    return out


def channel_summary(spec: ExperimentSpec, runs: list[RunData]) -> dict | None:
    """Per method: constraint and easy channels, held-out before/after and training first/last steps
    (mean ± std over finished seeds), and the mean binding weight on the constraint."""
    cons, easy = list(spec.constraint_channels), list(spec.easy_channels)
    if not cons:
        return None
    w = spec.last_steps

    def mean_of(vals: list[float]) -> float:
        vals = [v for v in vals if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else math.nan

    def first(run: RunData, key: str) -> float:
        return mean_of([_num(r.get(key)) for r in run.records[:w]])

    def per_run(r: RunData) -> dict[str, float]:
        d = {}
        for name, chans in (("constraint", cons), ("easy", easy)):
            d[f"{name}/heldout_before"] = mean_of([_eval(r.eval_before, c) for c in chans])
            d[f"{name}/heldout_after"] = mean_of([_eval(r.eval_after, c) for c in chans])
            d[f"{name}/train_first"] = mean_of([first(r, f"rewards/{c}/mean") for c in chans])
            d[f"{name}/train_last"] = mean_of([train_last(r, f"rewards/{c}/mean", w) for c in chans])
        d["binding/constraint"] = mean_of([mean_of([_num(rec.get(f"rvpo/binding/{c}")) for rec in r.records])
                                           for c in cons])
        return d

    methods = {}
    for m in spec.methods:
        rows = [per_run(r) for r in runs if r.finished and r.label == m.label]
        keys = rows[0].keys() if rows else per_run(RunData(m.label, 0, spec.root, 0, True)).keys()
        methods[m.label] = {k: _ms_ci([row[k] for row in rows]) for k in keys}
    return {"constraint_channels": cons, "easy_channels": easy, "last_steps": w, "methods": methods}


def read_screen(spec: ExperimentSpec) -> dict | None:
    """The cached ``screen.json`` of the experiment (None if absent or unreadable)."""
    path = spec.root / SCREEN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def screen_by_method(spec: ExperimentSpec, screen: dict | None) -> dict[str, dict]:
    """``{method label: {"push", "se", "easy_push", "binding", "neglected"}}`` on the constraint channels."""
    if not screen:
        return {}
    out = {}
    names = screen.get("channel_names", [])
    cons = [names.index(c) for c in spec.constraint_channels if c in names]
    for m in screen.get("methods", []):
        out[m["label"]] = {"push": m.get("constraint_push"), "se": m.get("constraint_se"),
                           "easy_push": m.get("easy_push"), "neglected": m.get("neglected"),
                           "binding": sum(m["binding"][j] for j in cons) if cons else None}
    return out


def summarise(spec: ExperimentSpec, runs: list[RunData]) -> dict[str, Any]:
    """The ``hold``, ``channels`` and ``screen`` parts of ``results.json`` (absent parts are None)."""
    scr = read_screen(spec)
    return {"hold": hold_summary(spec, runs), "channels": channel_summary(spec, runs),
            "screen": {"file": SCREEN_FILE, "methods": screen_by_method(spec, scr),
                       "prompts": scr.get("prompts"), "group_size": scr.get("group_size")} if scr else None}
