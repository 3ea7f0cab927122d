"""Tool-call evaluation on held-out prompts: format rate, exact-match rate, mean correctness.

Scoring uses the training rewards' own parsers (:mod:`rvpo.rewards.toolcall`), so an eval number
and a reward curve mean the same thing:

- ``format``: ``format_score`` in {0, 1} (the format reward);
- ``correctness``: ``correctness_score`` in [-3, 3] with the training default (response-only gold
  scores 0.0, as ToolRL);
- ``exact_match``: the completion is fully right. For a gold with tool calls this is
  ``correctness == 3`` (same names, keys and values); for a response-only gold it is "no tool call
  was made" (``correctness_score(no_call="match") == 3``), since the correctness reward is
  constant 0 there.

Decoding is greedy (temperature 0), batched; results are deterministic for a given model, data and
batch size on one machine.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Sequence

from rvpo.rewards.toolcall import CORRECTNESS_MAX, correctness_score, format_score, parse_output
from rvpo.stats import bootstrap_se, wilson_ci

METRICS = ("format_rate", "exact_match_rate", "mean_correctness")


def last_user_message(prompt: Sequence[dict]) -> str:
    """Content of the last user turn of a chat prompt (for readable per-example records)."""
    for m in reversed(list(prompt)):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def score_toolcall(examples: Sequence[dict], completions: Sequence[str]) -> dict[str, Any]:
    """Score completions against their examples' ``ground_truth`` (pure; no model).

    Args:
        examples: ``P`` rows ``{"prompt": [...], "ground_truth": str, "id": str, ...}``.
        completions: ``P`` generated strings, in the same order.

    Returns:
        ``{"n", "format_rate", "format_ci95", "exact_match_rate", "exact_match_ci95",
        "mean_correctness", "correctness_se", "records": [...]}``; each record holds id, question,
        ground_truth, completion, format, correctness, exact_match and parse_errors.
    """
    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    records = []
    for ex, text in zip(examples, completions):
        gt = ex["ground_truth"]
        fmt = format_score(text, gt)
        corr = float(correctness_score(text, gt))
        exact = correctness_score(text, gt, no_call="match") == CORRECTNESS_MAX
        records.append({
            "id": ex.get("id", ""),
            "question": last_user_message(ex["prompt"]),
            "ground_truth": gt,
            "completion": text,
            "format": fmt,
            "correctness": corr,
            "exact_match": bool(exact),
            "parse_errors": parse_output(text).errors,
        })
    n = len(records)
    n_fmt = sum(r["format"] == 1.0 for r in records)
    n_exact = sum(r["exact_match"] for r in records)
    corr = [r["correctness"] for r in records]
    return {
        "n": n,
        "format_rate": n_fmt / n if n else math.nan,
        "format_ci95": list(wilson_ci(n_fmt, n)),
        "exact_match_rate": n_exact / n if n else math.nan,
        "exact_match_ci95": list(wilson_ci(n_exact, n)),
        "mean_correctness": sum(corr) / n if n else math.nan,
        "correctness_se": bootstrap_se(corr) if n else math.nan,
        "records": records,
    }


def evaluate_toolcall(
    model_or_path: Any,
    examples: Sequence[dict],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Generate greedily for each example's prompt and score it (see :func:`score_toolcall`).

    Args:
        model_or_path: a loaded causal LM (then pass ``tokenizer``), or anything
            :func:`rvpo.train.policy.load_policy` accepts: the embedded model's name, a model
            folder, a run directory, or a checkpoint (LoRA adapters are merged into the base).
        examples: ``P`` rows with ``prompt`` (chat messages) and ``ground_truth``.
        max_new_tokens: generation budget per prompt.
        batch_size: prompts per ``generate`` call.

    Returns:
        the scores dict plus ``"seconds"`` (generation and scoring wall time) and ``"model"``.
    """
    from rvpo.generation import generate

    if isinstance(model_or_path, (str, os.PathLike)):
        from rvpo.train.policy import load_policy

        name = os.fspath(model_or_path)
        model, tokenizer = load_policy(name)
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
