"""Run an experiment's methods x seeds as ordinary ``rvpo train`` run directories.

    <out>/<name>/runs/<label>-seed<N>/     one rvpo train run dir each (fixed names: a rerun finds them)

Order: seeds outer, methods inner. The first method's run of a seed trains the supervised warm
start (when the task has gold answers); the other methods of that seed load it
(``warmstart.from_dir``), so every method starts RL from identical weights. Where a later run's
base-model (or warm-start) evaluation would be identical to the first's (same config apart from RL
fields), the first's ``eval_before.json`` / ``eval_warmstart.json`` is copied instead of recomputed.

Running again skips finished runs, resumes an interrupted or crashed one (``train(cfg, resume=dir)``;
a folder without a checkpoint starts from step 0 in place) and refuses a folder whose config
differs from the experiment's (other than ``steps``, which may grow). Ctrl-C: the current run
stops after its checkpoint (``rvpo train``'s handler), the experiment stops, and running the same
command again continues. Each run's wall time (summed over sessions) is kept in its
``experiment_run.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from rvpo.experiment.rundirs import RUN_INFO, eval_key, last_step, plan, run_status, warm_key
from rvpo.experiment.screen import run_screen
from rvpo.experiment.spec import ExperimentError, ExperimentSpec
from rvpo.runs import write_json, write_yaml
from rvpo.train.callbacks import reward_channels
from rvpo.train.config import ConfigError
from rvpo.train.run import resolve_precision, train


@dataclass
class ExperimentResult:
    """What a call of :func:`run_experiment` did."""

    spec: ExperimentSpec
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0


def _copy_shared_evals(src: Path, dst: Path, same_eval: bool, same_warm: bool) -> list[str]:
    copied = []
    for name, ok in (("eval_before.json", same_eval), ("eval_warmstart.json", same_eval and same_warm)):
        if ok and (src / name).is_file() and not (dst / name).exists():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def _read_info(run_dir: Path) -> dict:
    path = run_dir / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


class StepProgress(TrainerCallback):
    """Feeds the experiment's one progress bar (steps of all runs): step count, k and channel means."""

    def __init__(self, bar: Any, base: int):
        self.bar, self.base = bar, base  # base: the bar's count before this run's first step

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(self.base + state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        post: dict[str, Any] = {"step": f"{state.global_step}/{state.max_steps}"}
        if isinstance(logs.get("rvpo/k"), float):
            post["k"] = f"{logs['rvpo/k']:.2f}"
        means = [(ch, v) for ch, v in reward_channels(logs).items() if isinstance(v, float)]
        post.update({ch: f"{v:+.2f}" for ch, v in means[:6]})
        self.bar.set_postfix(post, refresh=True)


def run_experiment(spec: ExperimentSpec, callbacks: Sequence[Any] = (), log: Callable[[str], None] | None = None,
                   progress: bool = True, train_fn: Callable[..., Any] | None = None,
                   screen_fn: Callable[..., Any] | None = None) -> ExperimentResult:
    """Train every missing or unfinished run of ``spec``; see the module docstring.

    Args:
        callbacks: extra transformers callbacks for every run (tests).
        log: stage messages (default: through the progress bar to stderr).
        progress: one tqdm bar over all runs' steps ("run i/N label seed S", step, k, channel means).
        train_fn: :func:`rvpo.train.run.train` (replaceable in tests).
        screen_fn: the sampler of the ``screen:`` step (:func:`rvpo.experiment.sampling.sample_and_score`; tests).
    """
    if train_fn is None:
        train_fn = train
    for m in spec.methods:  # a precision this machine refuses fails now, not after hours of other runs
        try:
            resolve_precision(m.cfg)
        except ConfigError as e:
            raise ExperimentError(f"{spec.path or 'experiment'}: methods ({m.label}): {e}") from None

    t0 = time.perf_counter()
    res = ExperimentResult(spec=spec)
    spec.root.mkdir(parents=True, exist_ok=True)
    write_yaml(spec.root / "experiment.yaml", spec.to_dict())
    order = plan(spec)
    total = sum(m.cfg.steps for _, m in order)
    done = sum(min(last_step(spec.run_dir(m.label, s)), m.cfg.steps) for s, m in order)
    bar = tqdm(total=total, initial=done, unit="step", file=sys.stderr, dynamic_ncols=True, disable=not progress)
    say = log or (lambda msg: bar.write(msg, file=sys.stderr))
    try:
        if spec.screen:  # once, on the base model, before any run (cached in screen.json)
            run_screen(spec, sample_fn=screen_fn, log=say)
        for i, (seed, m) in enumerate(order, 1):
            tag = f"run {i}/{len(order)} {m.label} seed {seed}"
            bar.set_description(tag)
            run_dir = spec.run_dir(m.label, seed)
            owner = spec.methods[0]
            owner_dir = spec.run_dir(owner.label, seed)
            owner_cfg = spec.config(owner, seed)
            warm_from = ""
            if (m is not owner and m.cfg.warmstart.enabled and not m.cfg.warmstart.from_dir
                    and (owner_dir / "warmstart").is_dir() and warm_key(m.cfg) == warm_key(owner.cfg)):
                warm_from = str(owner_dir / "warmstart")
            cfg = spec.config(m, seed, warm_from)
            status = run_status(run_dir, cfg)
            if status == "done":
                res.skipped.append(run_dir.name)
                continue
            copied = [] if m is owner else _copy_shared_evals(owner_dir, run_dir, eval_key(cfg) == eval_key(owner_cfg),
                                                              bool(warm_from))
            say(f"{tag}: {'resuming' if status == 'resume' and last_step(run_dir) else 'starting'} {run_dir}"
                + (f" (warm start of {owner.label})" if warm_from else ""))
            run_dir.mkdir(parents=True, exist_ok=True)
            info = _read_info(run_dir)
            base = bar.n - min(last_step(run_dir), cfg.steps)
            t_run = time.perf_counter()
            out = None
            try:
                out = train_fn(cfg, resume=run_dir, callbacks=[StepProgress(bar, base), *callbacks],
                               log=lambda msg, m=m, seed=seed: say(f"[{m.label} seed {seed}] {msg}"), progress=False)
            finally:
                interrupted = out is None or out.interrupted
                write_json(run_dir / RUN_INFO, {
                    "label": m.label, "seed": seed, "wall_s": round(info.get("wall_s", 0.0) + time.perf_counter() - t_run, 1),
                    "sessions": info.get("sessions", 0) + 1, "finished": not interrupted,
                    "precision": getattr(getattr(out, "precision", None), "name", info.get("precision")),
                    "warmstart_from": warm_from or None, "copied": sorted(set(info.get("copied", [])) | set(copied))})
            res.trained.append(run_dir.name)
            if out.interrupted:
                res.interrupted = True
                break
    except KeyboardInterrupt:
        res.interrupted = True
    finally:
        bar.close()
    res.wall_s = time.perf_counter() - t0
    return res
