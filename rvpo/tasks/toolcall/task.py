"""The tool-calling task as an ``rvpo train`` task: ToolRL format and correctness channels.

Channels: ``format`` (ToolRL format reward, {0, 1}) and ``correctness`` ([-3, 3]). Gold answers
(``ground_truth``, the ToolRL output format) drive the supervised warm start. Held-out metrics:
format rate, exact-match rate (both with Wilson 95% CIs) and mean correctness (bootstrap SE); on
BFCL rows also BFCL's AST accuracy (``bfcl_accuracy``, Wilson 95% CI).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rvpo.model.generation import generate
from rvpo.tasks.base import Task, build_options
from rvpo.tasks.toolcall.eval import score_toolcall
from rvpo.tasks.toolcall.loaders import load_examples
from rvpo.tasks.toolcall.rewards import make_correctness_reward, make_format_reward

BFCL_COLUMNS = ("accepted", "functions", "category")
"""Columns of BFCL rows: the accepted values (the correctness reward widens matches with them) and
what BFCL's AST check needs (the eval adds ``bfcl_accuracy`` for such rows)."""


class ToolCallTask(Task):
    name = "toolcall"
    description = "tool calling in the ToolRL output format (built-in generator, ToolRL or BFCL files)"
    default_data = "builtin"
    default_eval_data = "builtin:test"
    columns = ("ground_truth",)
    eval_metrics = ("format_rate", "exact_match_rate", "mean_correctness")
    target_metric = "exact_match_rate"
    train_defaults = {"temperature": 0.7}
    """at TRL's 1.0 the warm-started 135M model's tool calls are mostly broken, which leaves RL little to
    learn from (docs/train.md "Does the default learn?")"""

    def load(self, spec: str, split: str, seed: int = 0) -> list[dict]:
        rows = []
        for ex in load_examples(spec):
            row = {"prompt": ex["prompt"], "id": ex["id"], "ground_truth": ex["ground_truth"],
                   "gold": ex["ground_truth"]}
            row.update({k: ex[k] for k in BFCL_COLUMNS if k in ex})
            rows.append(row)
        return rows

    def reward_funcs(self) -> list:
        return [make_format_reward(name="format"), make_correctness_reward(name="correctness")]

    def evaluate(self, model: Any, tokenizer: Any, rows: Sequence[dict], *, max_new_tokens: int,
                 batch_size: int) -> dict[str, Any]:
        """Greedy completions for ``rows``, then :meth:`score` (as :func:`evaluate_toolcall`, plus the task's
        ``metrics`` and ``ci95``)."""
        t0 = time.perf_counter()
        completions = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
                               temperature=0.0, batch_size=batch_size)
        res = self.score(rows, completions)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        res["model"] = getattr(getattr(model, "config", None), "_name_or_path", "")
        res["max_new_tokens"] = max_new_tokens
        return res

    def score(self, rows: Sequence[dict], responses: Sequence[str], **kw: Any) -> dict[str, Any]:
        """Score given completions (one per row, in order; no model): :func:`score_toolcall` plus ``metrics``
        and ``ci95``."""
        res = score_toolcall(rows, responses)
        res["metrics"] = {m: res[m] for m in self.eval_metrics}
        if "bfcl_accuracy" in res:  # BFCL rows: BFCL's AST accuracy too
            res["metrics"]["bfcl_accuracy"] = res["bfcl_accuracy"]
        se = res["correctness_se"]
        res["ci95"] = {"format_rate": res["format_ci95"], "exact_match_rate": res["exact_match_ci95"],
                       "mean_correctness": [res["mean_correctness"] - 1.96 * se, res["mean_correctness"] + 1.96 * se]}
        if "bfcl_accuracy" in res:
            res["ci95"]["bfcl_accuracy"] = res["bfcl_accuracy_ci95"]
        return res

    def describe_eval(self) -> str:
        return ("format: ToolRL format reward == 1; exact match: correctness == 3 (all calls, keys and values "
                "right; for response-only gold: no call made); correctness in [-3, 3] (CI: +-1.96 bootstrap SE).")


@dataclass(frozen=True)
class ToolCallOptions:
    """The tool-call task takes no ``task_options``."""


def make_task(**options: Any) -> ToolCallTask:
    """The tool-call task (no options: an unknown one is named)."""
    build_options(ToolCallOptions, options)
    return ToolCallTask()


make_task.Options = ToolCallOptions  # type: ignore[attr-defined]
make_task.train_defaults = ToolCallTask.train_defaults  # type: ignore[attr-defined]
