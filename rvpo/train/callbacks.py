"""Trainer callbacks of ``rvpo train``: progress bar, metrics JSONL, graceful Ctrl-C.

- :class:`ProgressBar` replaces transformers' progress bar: one tqdm line with the step, k and
  the mean of every reward channel (``rewards/<name>/mean`` from the logs).
- :class:`MetricsWriter` appends one JSON object per logged step to ``metrics.jsonl`` (never the
  same step twice, so a resumed run continues the file without repeats).
- :class:`GracefulInterrupt` turns the first SIGINT (Ctrl-C) into "finish this step, save a
  checkpoint, stop"; a second SIGINT raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from rvpo.runs import append_jsonl, read_jsonl
from rvpo.tasks.base import StepData, call_step_metrics


def reward_channels(logs: dict[str, Any]) -> dict[str, float]:
    """``{channel: mean}`` from TRL's ``rewards/<name>/mean`` log keys."""
    return {k.split("/")[1]: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")}


class TaskMetrics(TrainerCallback):
    """Adds the task's own per-step figures (``task.step_metrics()``, e.g. judge calls) to each log.

    The task gets the trainer's ``last_step_data`` (:class:`rvpo.tasks.base.StepData`: completions,
    prompts, raw rewards, advantages) when its ``step_metrics`` declares ``data``, else the
    ``last_rvpo_output`` alone (see :func:`rvpo.tasks.base.call_step_metrics`). Listed before
    :class:`MetricsWriter`, so they reach ``metrics.jsonl`` and the progress display.
    """

    def __init__(self, task: Any):
        self.task = task
        self.trainer: Any = None  # set once the trainer exists: its last step's data feeds the task

    def step_data(self) -> Any:
        """The trainer's latest :class:`StepData` (built from ``last_rvpo_output`` if it has none)."""
        data = getattr(self.trainer, "last_step_data", None)
        if data is None:
            out = getattr(self.trainer, "last_rvpo_output", None)
            data = StepData(advantages=out) if out is not None else None
        return data

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "train_runtime" not in logs:
            logs.update({k: float(v) for k, v in call_step_metrics(self.task, self.step_data()).items()})


class ProgressBar(TrainerCallback):
    """tqdm bar over optimizer steps; postfix shows k and per-channel reward means of the last step."""

    def __init__(self, file: Any = None, task_metrics: tuple[str, ...] = ()):
        self.bar = None
        self.file = file if file is not None else sys.stderr
        self.shown = ("rvpo/all_binary_met", *task_metrics)  # in place of the channels when there are many

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                        file=self.file, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "train_runtime" in logs:
            return
        post = {}
        if "rvpo/k" in logs:
            post["k"] = f"{logs['rvpo/k']:.2f}"
        chans = {k: v for k, v in reward_channels(logs).items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if len(chans) > 6:  # many channels (a rubric's items, instruction types): the task's own summary
            chans = {"reward": logs["reward"]} if isinstance(logs.get("reward"), (int, float)) else {}
            chans.update({k.split("/", 1)[1]: v for k, v in logs.items() if k in self.shown
                          and isinstance(v, (int, float))})
        for name, v in chans.items():
            post[name] = f"{v:+.2f}"
        self.bar.set_postfix(post, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsWriter(TrainerCallback):
    """Append ``{"step", "time", **logs}`` to ``path`` for each step's log (skipping steps already there).

    The final summary log of ``Trainer.train`` (``train_runtime`` ...) is kept in ``self.final``
    instead of the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.seen = {r.get("step") for r in read_jsonl(self.path)} if self.path.is_file() else set()
        self.final: dict[str, Any] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if "train_runtime" in logs:
            self.final = dict(logs)
            return
        step = state.global_step
        if step in self.seen:
            return
        rec = {"step": step, "time": round(time.time(), 3)}
        rec.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in logs.items()})
        append_jsonl(self.path, rec)
        self.seen.add(step)


class GracefulInterrupt(TrainerCallback):
    """First Ctrl-C: stop after the current step and save a checkpoint. Second: ``KeyboardInterrupt``.

    Use as a context manager around ``trainer.train()`` (it installs the SIGINT handler only
    there, and only in the main thread); ``interrupted`` tells whether training was cut short.
    """

    def __init__(self, log: Any = None):
        self.requested = False
        self.interrupted = False
        self._old = None
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("\nCtrl-C: finishing the current step, then saving a checkpoint (Ctrl-C again to stop now)")

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave SIGINT alone
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False

    def on_step_end(self, args, state, control, **kwargs):
        # a Ctrl-C during the last step: the run completes normally (final save, eval after); marking it
        # interrupted would make a resume train one step past max_steps
        if self.requested and state.global_step < state.max_steps:
            self.interrupted = True
            control.should_save = True
            control.should_training_stop = True
        return control
