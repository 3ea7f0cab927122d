"""What a task is for ``rvpo train``: prompts, named reward channels, gold answers, its evaluation.

A task is one package under ``rvpo/tasks/`` (or anywhere, named by a dotted path). ``rvpo train``
holds no task-specific code: it asks the task for everything below, so adding a task never touches
``rvpo/train``.

Rows (``list[dict]``) are TRL dataset rows::

    {"prompt": [{"role": ..., "content": ...}, ...],   # chat messages
     "id": str,                                         # stable, unique within a split
     "gold": str,                                       # optional: a gold answer (warm start)
     <column>: ...}                                     # every name in ``task.columns``

TRL passes each column in ``columns`` to the reward functions as a keyword argument (one value
per completion). Values must be Arrow-friendly (str, numbers, lists of them); nested structures
go as JSON strings.

Reward functions follow TRL's contract (see :mod:`rvpo.rewards.base`): ``fn(prompts,
completions, **columns) -> list[float | None]``, ``__name__`` the channel name, ``None`` an
abstention (NaN in the advantage core). A task whose rows carry different channels (variable M)
returns one function per channel name and abstains where a row lacks that channel.

An evaluation result is a dict with at least::

    {"n": int, "metrics": {name: float}, "ci95": {name: [lo, hi]}, "records": [...]}

``eval_metrics`` orders the names for tables; ``target_metric`` is the one experiments compare.
All numbers must be finite or ``None`` (JSON outputs are strict).
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

TASKS: dict[str, str] = {
    "toolcall": "rvpo.tasks.toolcall.task:make_task",
    "constraints": "rvpo.tasks.constraints.task:make_task",
    "rubric": "rvpo.tasks.rubric.task:make_task",
}
"""Built-in tasks: name -> ``"module:factory"`` (imported only when used)."""


class Task:
    """Base class of a task (subclass it, or provide the same attributes duck-typed).

    Attributes:
        name: registry name (``rvpo train --task NAME``).
        description: one line, shown in summaries and ``--help``.
        default_data / default_eval_data: data specs used when the config leaves ``data`` /
            ``eval.data`` empty (``"builtin"``, ``"builtin:test"``, a file path...).
        columns: dataset columns handed to the reward functions.
        eval_metrics: metric names of :meth:`evaluate`'s ``metrics``, in table order.
        target_metric: the held-out number that says whether training helped.
    """

    name: str = ""
    description: str = ""
    default_data: str = "builtin"
    default_eval_data: str = "builtin:test"
    columns: tuple[str, ...] = ()
    eval_metrics: tuple[str, ...] = ()
    target_metric: str = ""

    def load(self, spec: str, split: str, seed: int = 0) -> list[dict]:
        """Rows for ``spec`` (``split`` is ``"train"`` or ``"eval"``; ``seed`` may drive generation)."""
        raise NotImplementedError

    def channel_names(self) -> list[str]:
        """The reward channels, in the order of :meth:`reward_funcs`."""
        return [fn.__name__ for fn in self.reward_funcs()]

    def reward_funcs(self) -> list[Callable[..., list[float | None]]]:
        """TRL reward functions, one per channel (``__name__`` = channel name)."""
        raise NotImplementedError

    def evaluate(self, model: Any, tokenizer: Any, rows: Sequence[dict], *, max_new_tokens: int,
                 batch_size: int) -> dict[str, Any]:
        """Generate for ``rows`` with ``model`` (greedy) and score; see the module docstring."""
        raise NotImplementedError

    def session(self, run_dir: Path) -> ContextManager[Any]:
        """Resources held for the whole run (e.g. a local judge server); stopped when the run ends or dies."""
        return contextlib.nullcontext()

    def step_metrics(self, advantages: Any = None) -> dict[str, float]:
        """Extra per-step metrics (flat floats; NaN is stored as null) logged beside TRL's; default none.

        ``advantages`` is the step's :class:`rvpo.AdvantageOutput` (global batch, channels in
        :meth:`channel_names` order), e.g. to report binding weights grouped by what a channel means.
        """
        return {}

    def describe_eval(self) -> str:
        """A sentence under the before/after table that says what the metrics mean."""
        return ""


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task registered as ``name``, or a user's task by dotted path ``pkg.mod:factory``.

    ``options`` (``task_options`` in the config) go to the factory as keyword arguments.
    Raises ``ValueError`` naming the task for an unknown name or a bad option.
    """
    target = TASKS.get(name, name)
    if ":" not in target:
        raise ValueError(f"task: unknown task {name!r}; built-in: {', '.join(sorted(TASKS))}, "
                         "or a dotted path 'pkg.module:factory'")
    mod_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"task: cannot import {target!r}: {e}") from None
    try:
        task = factory(**dict(options or {}))
    except TypeError as e:
        raise ValueError(f"task_options for task {name!r}: {e}") from None
    for attr in ("load", "reward_funcs", "evaluate"):
        if not callable(getattr(task, attr, None)):
            raise ValueError(f"task: {target!r} gave {type(task).__name__}, which has no {attr}()")
    return task


# ----------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson 95% interval (for eval tables)."""

    value: float
    lo: float
    hi: float


def rate(hits: int, n: int) -> Rate:
    """``hits / n`` with the Wilson 95% CI (NaN-free: n = 0 gives 0 in [0, 1])."""
    from rvpo.stats import wilson_ci

    if n <= 0:
        return Rate(0.0, 0.0, 1.0)
    lo, hi = wilson_ci(hits, n)
    return Rate(hits / n, float(lo), float(hi))


def markdown_table(task: Task, rows: Sequence[tuple[str, dict]]) -> str:
    """One row per ``(label, eval result)``: n and every ``task.eval_metrics`` with its 95% CI."""
    names = list(task.eval_metrics) or sorted({m for _, r in rows for m in r.get("metrics", {})})
    head = "| model | n | " + " | ".join(f"{m} [95% CI]" for m in names) + " |"
    lines = [head, "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for label, r in rows:
        cells = []
        for m in names:
            v = r.get("metrics", {}).get(m)
            ci = r.get("ci95", {}).get(m)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                cells.append("n/a")
            elif ci and all(isinstance(c, (int, float)) for c in ci):
                cells.append(f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]")
            else:
                cells.append(f"{v:.3f}")
        lines.append(f"| {label} | {r.get('n', '?')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
