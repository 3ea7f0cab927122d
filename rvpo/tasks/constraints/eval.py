"""Held-out evaluation of the constraints task: IFEval's four numbers, per-type rates, quality.

    res = score_responses(rows, responses)        # no model: score given answers
    res["metrics"]["prompt_strict"], res["ci95"]["prompt_strict"], res["records"][0]["strict"]

``rows`` are task rows (``instructions`` JSON column) or IFEval rows (``key``, ``prompt``,
``instruction_id_list``, ``kwargs``; see :func:`ifeval_row`). Metrics (all finite, JSON-safe):

- ``prompt_strict`` / ``prompt_loose``: share of prompts whose instructions all hold;
- ``inst_strict`` / ``inst_loose``: share of all instructions that hold;
- ``worst_type``: the lowest per-type strict rate among types seen in >= 5 rows (its name in
  ``worst_type_name``); ``type/<name>`` (strict) and ``type_loose/<name>`` per type;
- ``quality``: mean quality channel (rows that carry ``topic_words`` only; else ``None``).

95% CIs: Wilson for prompt-level and per-type rates; a prompt-level (cluster) bootstrap for the
instruction-level rates (instructions of one prompt are not independent); mean +- 1.96 bootstrap
SE for quality. All 25 IFEval types are implemented; an instruction id rvpo does not know (a newer
or misspelt one) is never dropped: it counts as NOT followed at both levels (so its prompt fails),
and is counted in ``n_unsupported`` / ``unsupported_ids``. Only a row with no instructions at all
is left out of the denominators (``n_dropped_prompts``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rvpo.stats import bootstrap_se
from rvpo.tasks.base import rate
from rvpo.tasks.constraints.instructions import BY_IFEVAL_ID, TYPES, check
from rvpo.tasks.constraints.rewards import quality_score

HEADLINE = ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose", "worst_type", "quality")


def ifeval_row(obj: dict, where: str = "row") -> dict:
    """A task-style row from an IFEval ``input_data.jsonl`` object (kwargs names kept as IFEval's).

    Unsupported instruction ids become ``{"type": None, "id": ...}`` entries. Raises ``ValueError``
    naming ``where`` on a malformed row.
    """
    try:
        ids, kws = obj["instruction_id_list"], obj["kwargs"]
        prompt = obj["prompt"]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: expected an IFEval row with prompt, instruction_id_list, kwargs") from None
    if len(ids) != len(kws):
        raise ValueError(f"{where}: instruction_id_list and kwargs differ in length")
    insts = []
    for iid, kw in zip(ids, kws, strict=True):
        t = BY_IFEVAL_ID.get(iid)
        kw = {k: v for k, v in (kw or {}).items() if v is not None}
        if t is not None and "prompt_to_repeat" in t.kwargs and "prompt_to_repeat" not in kw:
            kw["prompt_to_repeat"] = prompt
        insts.append({"type": t.name if t else None, "id": iid, "kwargs": kw})
    return {"prompt": [{"role": "user", "content": prompt}], "id": str(obj.get("key", where)),
            "key": obj.get("key"), "instructions": json.dumps(insts, sort_keys=True)}


def _instructions(row: dict, where: str) -> list[dict]:
    raw = row.get("instructions")
    if raw is None:
        raise ValueError(f"{where}: row has no 'instructions'")
    items = json.loads(raw) if isinstance(raw, str) else raw
    for it in items:
        if it.get("type") is not None and it["type"] not in TYPES:
            raise ValueError(f"{where}: unknown instruction type {it['type']!r}")
    return items


def score_one(row: dict, response: str, where: str = "row") -> dict:
    """Per-row verdicts: ``{"id", "types", "strict": [bool], "loose": [bool], "unsupported": [ids], ...}``."""
    items = _instructions(row, where)
    types, strict, loose, unsupported = [], [], [], []
    for it in items:
        if it.get("type") is None:
            unsupported.append(it.get("id"))
            continue
        try:
            s = check(it["type"], response, it.get("kwargs", {}))
            lo = s or check(it["type"], response, it.get("kwargs", {}), loose=True)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        types.append(it["type"])
        strict.append(bool(s))
        loose.append(bool(lo))
    scored = bool(types or unsupported)  # an unknown instruction counts as not followed
    rec = {"id": row.get("id"), "types": types, "strict": strict, "loose": loose,
           "follow_all_strict": scored and not unsupported and all(strict),
           "follow_all_loose": scored and not unsupported and all(loose),
           "unsupported": unsupported, "response": response}
    if row.get("key") is not None:
        rec["key"] = row["key"]
    if row.get("topic_words"):
        rec["quality"] = quality_score(response, row["topic_words"])
    return rec


def _cluster_ci(per_prompt: list[tuple[int, int]], n_boot: int = 1000, seed: int = 0) -> list[float]:
    """Percentile 95% CI of sum(hits)/sum(n) resampling prompts (clusters)."""
    a = np.asarray(per_prompt, dtype=float).reshape(-1, 2)
    if a.shape[0] == 0 or a[:, 1].sum() == 0:
        return [0.0, 1.0]
    idx = np.random.default_rng(seed).integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    hits, n = a[idx, 0].sum(axis=1), a[idx, 1].sum(axis=1)
    ratios = hits / np.maximum(n, 1)
    return [float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))]


def summarize(records: Sequence[dict]) -> dict[str, Any]:
    """Metrics and CIs from :func:`score_one` records (see the module docstring)."""
    scored = [r for r in records if r["types"] or r["unsupported"]]
    metrics: dict[str, Any] = {}
    ci: dict[str, list[float]] = {}
    for mode in ("strict", "loose"):
        p = rate(sum(r[f"follow_all_{mode}"] for r in scored), len(scored))
        metrics[f"prompt_{mode}"], ci[f"prompt_{mode}"] = p.value, [p.lo, p.hi]
        pairs = [(sum(r[mode]), len(r[mode]) + len(r["unsupported"])) for r in scored]
        n_inst = sum(n for _, n in pairs)
        metrics[f"inst_{mode}"] = sum(h for h, _ in pairs) / n_inst if n_inst else 0.0
        ci[f"inst_{mode}"] = _cluster_ci(pairs)
    per_type: dict[str, dict[str, int]] = {}
    for r in scored:
        for t, s, lo in zip(r["types"], r["strict"], r["loose"], strict=True):
            d = per_type.setdefault(t, {"n": 0, "strict": 0, "loose": 0})
            d["n"] += 1
            d["strict"] += s
            d["loose"] += lo
    for t in sorted(per_type):
        d = per_type[t]
        for mode, prefix in (("strict", "type"), ("loose", "type_loose")):
            rt = rate(d[mode], d["n"])
            metrics[f"{prefix}/{t}"], ci[f"{prefix}/{t}"] = rt.value, [rt.lo, rt.hi]
    eligible = {t: d["strict"] / d["n"] for t, d in per_type.items() if d["n"] >= 5} or \
        {t: d["strict"] / d["n"] for t, d in per_type.items()}
    worst = min(eligible, key=lambda t: (eligible[t], t)) if eligible else None
    metrics["worst_type"] = eligible[worst] if worst else None
    ci["worst_type"] = ci[f"type/{worst}"] if worst else [0.0, 1.0]
    qs = [r["quality"] for r in scored if "quality" in r]
    if qs:
        q, se = float(np.mean(qs)), bootstrap_se(qs)
        metrics["quality"], ci["quality"] = q, [max(0.0, q - 1.96 * se), min(1.0, q + 1.96 * se)]
    else:
        metrics["quality"], ci["quality"] = None, [0.0, 1.0]
    for k, v in list(metrics.items()):
        if isinstance(v, float) and not math.isfinite(v):
            metrics[k] = None
    n_uns = sum(len(r["unsupported"]) for r in records)
    return {"n": len(scored), "metrics": metrics, "ci95": ci, "worst_type_name": worst,
            "per_type_n": {t: d["n"] for t, d in sorted(per_type.items())},
            "n_instructions": sum(len(r["types"]) + len(r["unsupported"]) for r in scored),
            "n_unsupported": n_uns,
            "n_dropped_prompts": len(records) - len(scored),
            "unsupported_ids": sorted({u for r in records for u in r["unsupported"]})}


def score_responses(rows: Sequence[dict], responses: Sequence[str]) -> dict[str, Any]:
    """Score ``responses[i]`` against ``rows[i]``; the result dict of :mod:`rvpo.tasks.base`."""
    if len(rows) != len(responses):
        raise ValueError(f"{len(rows)} rows but {len(responses)} responses")
    records = [score_one(row, resp, f"row {i} (id {row.get('id')})") for i, (row, resp) in enumerate(zip(rows, responses, strict=True))]
    res = summarize(records)
    res["records"] = records
    return res
