"""The ``rvpo experiment`` YAML: a train config, methods, seeds, a target metric, an output folder.

::

    name: constraints_cpu        # optional: the folder name under out (default: the file's stem)
    out: runs                    # results go to <out>/<name>/ (default: runs)
    train:                       # one rvpo train config shared by every run
      config: ../some_train.yaml #   optional: a train YAML (relative to this file), then the fields below
      task: constraints
      steps: 20
    methods:                     # each: a label and any train fields it changes
      - {label: gdpo, estimator: gdpo}
      - {label: rvpo, estimator: rvpo, k_schedule: linear:0.5:2.0}
      - hardmin                  #   a bare name: label = estimator = "hardmin"
    seeds: 0..2                  # a list [0, 1, 2], a range "A..B" (inclusive) or one int
    target: prompt_strict        # held-out metric compared (default: the task's target_metric),
                                 #   or train:<metric> = mean of the last `last_steps` logged steps
    last_steps: 3
    smooth: 1                    # plots only: trailing mean over this many steps per run before the seed bands
    hold: {metric: constraint, at_least: 0.5}   # optional: per run "kept the constraint" yes/no (held-out
                                 #   metric after >= at_least; without at_least: after >= before - 0.1;
                                 #   while_improving: easy_mean also requires that held-out metric to rise);
                                 #   per method the share of seeds, Fisher's exact test against the first
    constraint_channels: [constraint]   # optional (default: the task's attributes of these names): the
    easy_channels: [rich_8, rich_10]    #   "constraint vs easy channels" table and figure
    screen: {prompts: 32, group_size: 8}   # optional: `rvpo screen` once on the base model before the runs

Errors name the file and the field (``exp.yaml: methods[1] (rvpo): config field 'k_schedule': ...``);
unknown keys suggest the closest one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rvpo.settings import ConfigError, check_keys, check_rules, integer, load_settings, number, unknown_key_error
from rvpo.tasks.base import get_task
from rvpo.train.config import (
    TrainConfig,
    build_config,
    canonical,
    field_names,
    flatten_config,
    read_yaml_file,
    unknown_field,
)

TOP_KEYS = ("name", "out", "train", "methods", "seeds", "target", "last_steps", "smooth", "hold",
            "constraint_channels", "easy_channels", "screen")
HOLD_MARGIN = 0.1
"""Without ``hold.at_least``, a run kept the metric when after >= before - HOLD_MARGIN."""
METHOD_FIXED = ("seed", "out", "task", "task_options", "data", "train_examples", "eval.enabled", "eval.data",
                "eval.examples")
"""Train fields a method may not change: the runs of one experiment share them (set them under ``train:``)."""
TRAIN_PREFIX = "train:"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ExperimentError(ConfigError):
    """A bad experiment YAML, or run folders that do not match it; the message names file and field."""


@dataclass(frozen=True)
class HoldSettings:
    """``hold:``: whether each run "kept the constraint" (per method: the share of seeds)."""

    metric: str | None = None
    """the held-out metric that must hold (required)"""
    at_least: float | None = None
    """kept when the metric after RL >= this; None: when after >= before - HOLD_MARGIN"""
    while_improving: str | None = None
    """a held-out metric that must also rise (e.g. easy_mean), else the run did not keep it"""


@dataclass(frozen=True)
class ScreenSettings:
    """``screen:``: ``rvpo screen`` once on the base model before the runs."""

    prompts: int = 32
    """training prompts sampled"""
    group_size: int = 8
    """completions per prompt (G)"""
    max_new_tokens: int | None = None
    """generation budget per completion; None: the train config's max_completion_length"""
    temperature: float = 0.7
    """sampling temperature"""
    seed: int = 0
    """sampling seed"""
    batch_size: int = 64
    """prompts generated together"""


SCREEN_RULES = {"prompts": integer(1), "group_size": integer(2), "max_new_tokens": integer(1), "seed": integer(0),
                "batch_size": integer(1), "temperature": number(0, above=True)}
"""Range rules of :class:`ScreenSettings` (after ``max_new_tokens`` is resolved)."""


def _section(cls: type, value: dict, where: str, name: str) -> Any:
    """``cls`` from the mapping under key ``name`` (:func:`rvpo.settings.load_settings`); errors are
    :class:`ExperimentError` naming ``field 'name.key'``."""
    try:
        return load_settings(cls, value, where=f"{where}{name}: ", label=lambda k: f"{where}field '{name}.{k}'",
                             error=ExperimentError)
    except ExperimentError:
        raise
    except ConfigError as e:
        raise ExperimentError(str(e)) from None


@dataclass(frozen=True)
class Method:
    """One compared arm: a label and the train-field overrides (flat dotted keys) that define it."""

    label: str
    overrides: dict[str, Any]
    cfg: TrainConfig
    """the resolved config for seed 0 (validated; :meth:`ExperimentSpec.config` makes the per-seed one)"""


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed, validated experiment (see the module docstring)."""

    name: str
    out: Path
    base: TrainConfig
    methods: tuple[Method, ...]
    seeds: tuple[int, ...]
    target: str
    last_steps: int = 3
    smooth: int = 1
    path: Path | None = None
    raw: dict = field(default_factory=dict)
    hold: dict | None = None
    """``{"metric": NAME, "at_least": float or None}`` or None"""
    constraint_channels: tuple[str, ...] = ()
    easy_channels: tuple[str, ...] = ()
    screen: dict | None = None
    """resolved ``screen:`` settings (the fields of :class:`ScreenSettings`) or None"""

    @property
    def root(self) -> Path:
        """``<out>/<name>``: the experiment's folder."""
        return self.out / self.name

    def run_dir(self, label: str, seed: int) -> Path:
        return self.root / "runs" / f"{label}-seed{seed}"

    @property
    def target_is_train(self) -> bool:
        return self.target.startswith(TRAIN_PREFIX)

    def config(self, method: Method, seed: int, warm_from: str = "") -> TrainConfig:
        """The train config of ``method`` at ``seed`` (``warm_from``: a shared warm start folder)."""
        over: dict[str, Any] = {"seed": seed, "out": str(self.root / "runs")}
        if warm_from:
            over["warmstart.from_dir"] = warm_from
        return build_config(base=method.cfg, overrides=over)

    def to_dict(self) -> dict:
        """The resolved experiment for ``experiment.yaml`` (every method's train overrides spelled out)."""
        return {"name": self.name, "out": str(self.out), "source": str(self.path) if self.path else None,
                "seeds": list(self.seeds), "target": self.target, "last_steps": self.last_steps, "smooth": self.smooth,
                "hold": self.hold, "constraint_channels": list(self.constraint_channels),
                "easy_channels": list(self.easy_channels), "screen": self.screen,
                "methods": [{"label": m.label, **m.overrides} for m in self.methods]}


MAX_SEEDS = 1000
"""At most this many seeds (every method runs once per seed): a typo like ``0..1000000`` fails at once."""


def parse_seeds(value: Any, where: str = "") -> tuple[int, ...]:
    """``[0, 1, 2]``, ``"0..2"`` (inclusive), ``"0..2,7"`` or ``5`` -> a tuple of distinct ints (at most
    :data:`MAX_SEEDS`)."""
    bad = ExperimentError(f"{where}field 'seeds': expected a list of ints, a range like '0..2', or one int, "
                          f"got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, str):
        seeds = []
        for part in (p.strip() for p in value.split(",") if p.strip()):
            lo, sep, hi = part.partition("..")
            try:
                n = int(hi) - int(lo) + 1 if sep else 1
                if len(seeds) + n > MAX_SEEDS:
                    raise ExperimentError(f"{where}field 'seeds': {value!r} is {len(seeds) + n} seeds or more; at "
                                          f"most {MAX_SEEDS} (each method trains once per seed)")
                seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
            except ValueError as e:
                if isinstance(e, ExperimentError):
                    raise
                raise bad from None
            if sep and int(hi) < int(lo):
                raise bad
    elif isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        seeds = list(value)
    else:
        raise bad
    if not seeds or any(s < 0 for s in seeds):
        raise bad
    if len(seeds) > MAX_SEEDS:
        raise ExperimentError(f"{where}field 'seeds': {len(seeds)} seeds; at most {MAX_SEEDS} (each method trains once per seed)")
    if len(set(seeds)) != len(seeds):
        raise ExperimentError(f"{where}field 'seeds': {value!r} repeats a seed")
    return tuple(seeds)


def _flat(mapping: dict, where: str) -> dict[str, Any]:
    try:
        flat = flatten_config(mapping, where)
    except ConfigError as e:
        raise ExperimentError(str(e)) from None
    known = field_names()
    for key in flat:
        if key not in known and key.split(".")[0] != "task_options":
            raise unknown_field(key, where, ExperimentError)
    return flat


def _base_config(train: Any, path: Path | None, where: str, extra: dict[str, str]) -> TrainConfig:
    if train is None:
        train = {}
    if not isinstance(train, dict):
        raise ExperimentError(f"{where}field 'train': expected a mapping of rvpo train fields (or config: PATH)")
    train = dict(train)
    config_path = train.pop("config", None)
    yaml_path = None
    if config_path is not None:
        if not isinstance(config_path, str) or not config_path:
            raise ExperimentError(f"{where}field 'train.config': expected a path to a train YAML, got {config_path!r}")
        yaml_path = Path(config_path)
        if not yaml_path.is_absolute() and path is not None and (path.parent / yaml_path).is_file():
            yaml_path = path.parent / yaml_path
    flat = _flat(train, f"{where}train: ")
    try:
        return build_config(yaml_path, overrides=flat, string_overrides=extra)
    except ConfigError as e:
        msg = str(e)
        raise ExperimentError(msg if yaml_path and msg.startswith(str(yaml_path)) else f"{where}train: {msg}") from None


def _method(item: Any, i: int, base: TrainConfig, where: str) -> Method:
    at = f"{where}methods[{i}]"
    if isinstance(item, str):
        item = {"label": item, "estimator": item}
    if not isinstance(item, dict):
        raise ExperimentError(f"{at}: expected a mapping {{label: ..., estimator: ...}} or an estimator name, got {item!r}")
    item = dict(item)
    label = item.pop("label", None)
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ExperimentError(f"{at}: field 'label': expected a name of letters, digits and ._+- "
                              f"(it names the run folders), got {label!r}")
    at = f"{at} ({label}): "
    flat = {canonical(k): v for k, v in _flat(item, at).items()}  # estimator -> advantage.estimator
    for key in flat:
        if key in METHOD_FIXED or key.startswith("task_options"):
            raise ExperimentError(f"{at}field {key!r}: every run of an experiment shares it; set it under 'train:'")
    try:
        cfg = build_config(base=base, overrides=flat)
    except ConfigError as e:
        raise ExperimentError(f"{at}{e}") from None
    return Method(label=label, overrides=flat, cfg=cfg)


def _target(value: Any, base: TrainConfig, where: str) -> str:
    try:
        task = get_task(base.task, base.task_options)
    except ValueError as e:
        raise ExperimentError(f"{where}train: config field 'task': {e}") from None
    if value is None:
        value = task.target_metric or (task.eval_metrics[0] if task.eval_metrics else "")
        if not value:
            raise ExperimentError(f"{where}field 'target': task {task.name!r} names no target_metric; set one")
    if not isinstance(value, str) or not value.strip():
        raise ExperimentError(f"{where}field 'target': expected a metric name, got {value!r}")
    if value.startswith(TRAIN_PREFIX):
        if not value[len(TRAIN_PREFIX):]:
            raise ExperimentError(f"{where}field 'target': 'train:' needs a metric, e.g. train:rewards/format/mean")
        return value
    if not base.eval.enabled:
        raise ExperimentError(f"{where}field 'target': {value!r} is a held-out metric but train.eval.enabled is "
                              "false; enable the eval or use a training metric, e.g. train:rewards/<channel>/mean")
    names = tuple(task.eval_metrics)
    if names and value not in names and "/" not in value:  # "type/no_comma"-style sub-metrics are not listed
        raise unknown_key_error("metric", value, names, where=f"{where}field 'target': ", error=ExperimentError)
    return value


def parse_spec(raw: Any, path: Path | None = None, out: str | None = None, seeds: Any = None,
               train_set: dict[str, str] | None = None) -> ExperimentSpec:
    """Validate a loaded experiment mapping; ``out`` / ``seeds`` / ``train_set`` override the file's."""
    where = f"{path}: " if path else ""
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}expected a mapping with train, methods, seeds (and optionally name, target, out)")
    check_keys("field", raw, TOP_KEYS, where=where, error=ExperimentError)
    name = raw.get("name", path.stem if path else "experiment")
    if not isinstance(name, str) or not _LABEL.match(name):
        raise ExperimentError(f"{where}field 'name': expected a folder name (letters, digits, ._+-), got {name!r}")
    out_v = out if out is not None else raw.get("out", "runs")
    if not isinstance(out_v, str) or not out_v.strip():
        raise ExperimentError(f"{where}field 'out': expected a folder, got {out_v!r}")
    base = _base_config(raw.get("train"), path, where, train_set or {})
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ExperimentError(f"{where}field 'methods': expected a non-empty list of methods, got {methods_raw!r}")
    methods = tuple(_method(m, i, base, where) for i, m in enumerate(methods_raw))
    labels = [m.label for m in methods]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ExperimentError(f"{where}field 'methods': label {dup[0]!r} is used twice (labels name the run folders)")
    if seeds is None and "seeds" not in raw:
        raise ExperimentError(f"{where}field 'seeds': missing (e.g. seeds: 0..2)")
    seed_t = parse_seeds(seeds if seeds is not None else raw["seeds"], where)
    last, smooth = raw.get("last_steps", 3), raw.get("smooth", 1)
    for key, v in (("last_steps", last), ("smooth", smooth)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ExperimentError(f"{where}field {key!r}: expected an int >= 1, got {v!r}")
    target = _target(raw.get("target"), base, where)
    hold = _hold(raw.get("hold"), base, where)
    cons, easy = _channels(raw, base, where)
    scr = _screen(raw.get("screen"), base, where)
    return ExperimentSpec(name=name, out=Path(out_v), base=base, methods=methods, seeds=seed_t, target=target,
                          last_steps=last, smooth=smooth, path=path, raw=raw, hold=hold, constraint_channels=cons,
                          easy_channels=easy, screen=scr)


def _hold(value: Any, base: TrainConfig, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ExperimentError(f"{where}field 'hold': expected a mapping {{metric: NAME, at_least: X}}, got {value!r}")
    hold = _section(HoldSettings, value, where, "hold")
    for key in ("metric", "while_improving"):
        name = getattr(hold, key)
        if (name is not None or key == "metric") and (not name or not name.strip() or name.startswith(TRAIN_PREFIX)):
            raise ExperimentError(f"{where}field 'hold.{key}': expected a held-out metric name, got {name!r}")
    if not base.eval.enabled:
        raise ExperimentError(f"{where}field 'hold.metric': {hold.metric!r} is a held-out metric but "
                              "train.eval.enabled is false")
    return asdict(hold)


def _channels(raw: dict, base: TrainConfig, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    task = get_task(base.task, base.task_options)  # already checked by _target
    try:
        known = list(task.channel_names())
    except Exception:  # noqa: BLE001 - a task that cannot list its channels is checked by its runs
        known = []
    out = []
    for key in ("constraint_channels", "easy_channels"):
        v = raw.get(key, getattr(task, key, ()) or ())
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)) or not all(isinstance(c, str) and c for c in v):
            raise ExperimentError(f"{where}field {key!r}: expected a list of channel names, got {v!r}")
        bad = [c for c in v if known and c not in known]
        if bad and key in raw:
            raise ExperimentError(f"{where}field {key!r}: {bad[0]!r} is not a channel of task {task.name!r} "
                                  f"({', '.join(known)})")
        out.append(tuple(c for c in v if c not in bad))
    cons, easy = out
    if cons and not easy:  # default: every other channel that is trained on
        mon = set(getattr(task, "monitor_channels", ()) or ())
        easy = tuple(c for c in known if c not in cons and c not in mon)
    return cons, easy


def _screen(value: Any, base: TrainConfig, where: str) -> dict | None:
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ExperimentError(f"{where}field 'screen': expected a mapping such as {{prompts: 32, group_size: 8}}, "
                              f"got {value!r}")
    screen = _section(ScreenSettings, value, where, "screen")
    if screen.max_new_tokens is None:
        screen = replace(screen, max_new_tokens=base.max_completion_length)
    try:
        check_rules(screen, SCREEN_RULES, label=lambda k: f"{where}field 'screen.{k}'")
    except ConfigError as e:
        raise ExperimentError(str(e)) from None
    return asdict(screen)


def load_spec(path: str | Path, **overrides: Any) -> ExperimentSpec:
    """Read and validate an experiment YAML (see :func:`parse_spec` for ``overrides``)."""
    path = Path(path)
    return parse_spec(read_yaml_file(path, "experiment file", ExperimentError), path, **overrides)
