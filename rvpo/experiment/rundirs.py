"""Where an experiment's runs live and what state they are in: the run plan, the run folder's state
(new, resume, done, or made with another config) and which config fields runs may share evaluations
and warm starts over. Read by the runner (which trains) and the aggregation (which reads results).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rvpo.experiment.spec import ExperimentError, ExperimentSpec, Method
from rvpo.runs import read_jsonl
from rvpo.train.config import TrainConfig, flatten_config, to_dict
from rvpo.train.run import INTERRUPTED

RUN_INFO = "experiment_run.json"
RL_ONLY = ("advantage", "steps", "group_size", "prompts_per_step", "max_completion_length", "temperature",
           "learning_rate", "kl_beta", "loss_type", "save_steps", "save_total_limit", "report_to", "out",
           "warmstart.from_dir")
"""Fields (or sections) that do not change a run's base-model or warm-start evaluation (other fields must
match to share one)."""
WARM_KEYS = ("model", "task", "task_options", "data", "train_examples", "device", "lora", "warmstart")
"""Fields that decide the warm start (``warmstart.from_dir``/``eval`` excepted); precision is not one of them."""


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "task_options":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _key(cfg: TrainConfig, keep: Callable[[str], bool]) -> dict[str, Any]:
    return {k: v for k, v in _flat(to_dict(cfg)).items() if keep(k)}


def eval_key(cfg: TrainConfig) -> dict[str, Any]:
    return _key(cfg, lambda k: k not in RL_ONLY and k.split(".")[0] not in RL_ONLY)


def warm_key(cfg: TrainConfig) -> dict[str, Any]:
    return _key(cfg, lambda k: k.split(".")[0] in WARM_KEYS and k not in ("warmstart.from_dir", "warmstart.eval"))


def last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    steps = [r.get("step", 0) for r in read_jsonl(path)] if path.is_file() else []
    return max(steps, default=0)


def run_status(run_dir: Path, cfg: TrainConfig) -> str:
    """``"new"``, ``"done"`` or ``"resume"``; raises :class:`ExperimentError` if the folder holds another config."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return "new"
    old = flatten_config(yaml.safe_load(saved.read_text()) or {}, f"{saved}: ")  # older names resolved
    new = _flat(to_dict(cfg))
    # eval.batch_size sets how many prompts decode together: the speed, not the answers (the default
    # run's greedy eval gave the same 32 answers at 16 and 32)
    ignore = ("out", "steps", "warmstart.from_dir", "eval.batch_size")
    diff = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diff[:3])
        raise ExperimentError(f"{run_dir}: this run was made with another config ({shown}); delete the folder, "
                              "or give the experiment another name/out")
    done_steps = last_step(run_dir)
    if isinstance(old.get("steps"), int) and old["steps"] > cfg.steps:
        raise ExperimentError(f"{run_dir}: was made for {old['steps']} steps, the experiment asks for {cfg.steps}; "
                              "delete the folder or use another out")
    finished = (not (run_dir / INTERRUPTED).exists() and done_steps >= cfg.steps and (run_dir / "final").is_dir()
                and (run_dir / "summary.md").is_file()
                and (not cfg.eval.enabled or (run_dir / "eval_after.json").is_file()))
    return "done" if finished else "resume"


def plan(spec: ExperimentSpec) -> list[tuple[int, Method]]:
    """``(seed, method)`` in run order: seeds outer, methods inner (the warm-start owner first)."""
    return [(seed, m) for seed in spec.seeds for m in spec.methods]
