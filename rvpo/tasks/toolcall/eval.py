"""Tool-call evaluation on held-out prompts: format rate, exact-match rate, mean correctness.

Scoring uses the training rewards' own parsers (:mod:`rvpo.tasks.toolcall.rewards`), so an eval number
and a reward curve mean the same thing:

- ``format``: ``format_score`` in {0, 1} (the format reward);
- ``correctness``: ``correctness_score`` in [-3, 3] with the training default (response-only gold
  scores 0.0, as ToolRL);
- ``exact_match``: the completion is fully right. For a gold with tool calls this is
  ``correctness == 3`` (same names, keys and values); for a response-only gold it is "no tool call
  was made" (``correctness_score(no_call="match") == 3``), since the correctness reward is
  constant 0 there.

BFCL rows (``load_examples("bfcl:CATEGORY")``: they carry ``category``, ``functions`` and
``accepted``) are also scored by BFCL's AST rules (:mod:`rvpo.tasks.toolcall.bfcl`) on the same
parsed calls: ``bfcl_valid`` per record, ``bfcl_accuracy`` over the BFCL rows, and ``bfcl`` with
the per-category accuracy and BFCL's live / non-live overall numbers. A completion whose
``<tool_call>`` block is missing or does not parse counts as BFCL's "failed to decode" (invalid;
for the irrelevance categories, a success).

Decoding is greedy (temperature 0), batched; results are deterministic for a given model, data and
batch size on one machine.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from rvpo.model.generation import generate
from rvpo.model.policy import load_policy
from rvpo.stats import bootstrap_se, wilson_ci
from rvpo.tasks.toolcall import bfcl
from rvpo.tasks.toolcall.rewards import CORRECTNESS_MAX, ParsedOutput, correctness_score, format_score, parse_output

METRICS = ("format_rate", "exact_match_rate", "mean_correctness")


def last_user_message(prompt: Sequence[dict]) -> str:
    """Content of the last user turn of a chat prompt (for readable per-example records)."""
    for m in reversed(list(prompt)):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def bfcl_verdict(example: dict, parsed: ParsedOutput) -> bfcl.Verdict | None:
    """BFCL's verdict on a parsed completion for a BFCL row; None for a row of another source and
    for Java/JavaScript rows (not checked, see :func:`rvpo.tasks.toolcall.bfcl.check`)."""
    category = example.get("category")
    if not category or "functions" not in example or bfcl.language(category) != "python":
        return None
    decoded = parsed.tool_calls if parsed.ok else None
    if bfcl.is_irrelevance(category):
        return bfcl.Verdict(not decoded, "" if not decoded else "a function was called", "" if not decoded else "irrelevance")
    if decoded is None:
        return bfcl.Verdict(False, "; ".join(parsed.errors) or "no <tool_call> block", "ast_decoder:decoder_failed")
    functions = json.loads(example["functions"])
    answer = bfcl.answer_from_accepted(json.loads(example["accepted"]))
    return bfcl.check(functions, decoded, answer, category)


def score_toolcall(examples: Sequence[dict], completions: Sequence[str]) -> dict[str, Any]:
    """Score completions against their examples' ``ground_truth`` (pure; no model).

    Args:
        examples: ``P`` rows ``{"prompt": [...], "ground_truth": str, "id": str, ...}``.
        completions: ``P`` generated strings, in the same order.

    Returns:
        ``{"n", "format_rate", "format_ci95", "exact_match_rate", "exact_match_ci95",
        "mean_correctness", "correctness_se", "records": [...]}``; each record holds id, question,
        ground_truth, completion, format, correctness, exact_match and parse_errors; BFCL
        rows add ``category``, ``bfcl_valid``, ``bfcl_error`` and the result adds
        ``bfcl_accuracy``, ``bfcl_accuracy_ci95`` and ``bfcl`` (see the module docstring).
    """
    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    records = []
    for ex, text in zip(examples, completions, strict=True):
        gt = ex["ground_truth"]
        fmt = format_score(text, gt)
        corr = float(correctness_score(text, gt))
        exact = correctness_score(text, gt, no_call="match") == CORRECTNESS_MAX
        parsed = parse_output(text)
        verdict = bfcl_verdict(ex, parsed)
        records.append({
            "id": ex.get("id", ""),
            "question": last_user_message(ex["prompt"]),
            "ground_truth": gt,
            "completion": text,
            "format": fmt,
            "correctness": corr,
            "exact_match": bool(exact),
            "parse_errors": parsed.errors,
        })
        if verdict is not None:
            records[-1].update(category=ex["category"], bfcl_valid=verdict.valid, bfcl_error=verdict.kind)
    n = len(records)
    n_fmt = sum(r["format"] == 1.0 for r in records)
    n_exact = sum(r["exact_match"] for r in records)
    corr = [r["correctness"] for r in records]
    out = {
        "n": n,
        "format_rate": n_fmt / n if n else math.nan,
        "format_ci95": list(wilson_ci(n_fmt, n)),
        "exact_match_rate": n_exact / n if n else math.nan,
        "exact_match_ci95": list(wilson_ci(n_exact, n)),
        "mean_correctness": sum(corr) / n if n else math.nan,
        "correctness_se": bootstrap_se(corr) if n else math.nan,
        "records": records,
    }
    scored = [r for r in records if "bfcl_valid" in r]
    if scored:
        per_cat: dict[str, list[int]] = {}
        for r in scored:
            per_cat.setdefault(r["category"], [0, 0])
            per_cat[r["category"]][0] += r["bfcl_valid"]
            per_cat[r["category"]][1] += 1
        hits = sum(r["bfcl_valid"] for r in scored)
        out["bfcl_accuracy"] = hits / len(scored)
        out["bfcl_accuracy_ci95"] = list(wilson_ci(hits, len(scored)))
        out["bfcl"] = bfcl.summarize({c: (h, n) for c, (h, n) in per_cat.items()})
        out["bfcl"]["n"] = {c: n for c, (_, n) in per_cat.items()}
    return out


def evaluate_toolcall(
    model_or_path: Any,
    examples: Sequence[dict],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    tokenizer: Any = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Generate greedily for each example's prompt and score it (see :func:`score_toolcall`).

    Args:
        model_or_path: a loaded causal LM (then pass ``tokenizer``), or anything
            :func:`rvpo.model.policy.load_policy` accepts: the embedded model's name, a model
            folder, a run directory, or a checkpoint (LoRA adapters are merged into the base).
        examples: ``P`` rows with ``prompt`` (chat messages) and ``ground_truth``.
        max_new_tokens: generation budget per prompt.
        batch_size: prompts per ``generate`` call.
        precision: ``auto``, ``fp32`` or ``bf16`` for a model loaded here (None: load_policy's default).

    Returns:
        the scores dict plus ``"seconds"`` (generation and scoring wall time) and ``"model"``.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        name = os.fspath(model_or_path)
        model, tokenizer = load_policy(name) if precision is None else load_policy(name, precision=precision)
    else:
        if tokenizer is None:
            raise ValueError("tokenizer: required when a loaded model is passed")
        model, name = model_or_path, getattr(getattr(model_or_path, "config", None), "_name_or_path", "")
    t0 = time.perf_counter()
    completions = generate(model, tokenizer, [ex["prompt"] for ex in examples], max_new_tokens=max_new_tokens,
                           temperature=0.0, batch_size=batch_size)
    out = score_toolcall(examples, completions)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["model"] = name
    out["max_new_tokens"] = max_new_tokens
    return out


def summary_row(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an eval result (no per-example records)."""
    return {k: v for k, v in result.items() if k != "records"}


def markdown_table(rows: Sequence[tuple[str, dict]]) -> str:
    """Markdown table of eval results, one row per ``(label, result)`` (95% Wilson CI, bootstrap SE)."""
    lines = ["| model | n | format rate [95% CI] | exact match [95% CI] | mean correctness ± SE |",
             "| --- | --- | --- | --- | --- |"]
    for label, r in rows:
        f_lo, f_hi = r["format_ci95"]
        e_lo, e_hi = r["exact_match_ci95"]
        lines.append(
            f"| {label} | {r['n']} | {r['format_rate']:.3f} [{f_lo:.2f}, {f_hi:.2f}] | "
            f"{r['exact_match_rate']:.3f} [{e_lo:.2f}, {e_hi:.2f}] | {r['mean_correctness']:+.3f} ± {r['correctness_se']:.2f} |"
        )
    return "\n".join(lines)


def bfcl_table(result: dict[str, Any]) -> str:
    """BFCL-style markdown table of one result: per category, non-live / live overall, format rate."""
    b = result.get("bfcl")
    if not b:
        return ""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    cats = [c for c in bfcl.CATEGORIES if c in b["accuracy"]]
    lines = ["| " + " | ".join(["non-live overall", "live overall"] + cats + ["format rate"]) + " |",
             "| " + " | ".join("---" for _ in range(len(cats) + 3)) + " |",
             "| " + " | ".join([pct(b["non_live_overall"]), pct(b["live_overall"])]
                               + [f"{pct(b['accuracy'][c])} (n={b['n'][c]})" for c in cats]
                               + [pct(result["format_rate"])]) + " |"]
    return "\n".join(lines)
