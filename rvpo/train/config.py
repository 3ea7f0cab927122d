"""The ``rvpo train`` configuration: one frozen dataclass tree, loaded from YAML plus overrides.

Every field has exactly one default (here) and a docstring (shown by ``rvpo train --help-config``
and in docs/train.md). Sources are applied in order: defaults, the task's ``train_defaults`` (the
settings a task is sized for, :func:`task_base`), ``--config run.yaml``, then command-line overrides
(``--steps 10``, ``--set lora.r=8``). Every value is checked once, in
:func:`validate`, and errors name the field: ``config field 'group_size': expected an int >= 2,
got 'x'``; unknown YAML keys name the file and suggest the closest field.

Sizing of the defaults (2-core CPU, see docs/train.md "Measured cost"): LoRA, bf16 where the CPU has
bf16 units, a 24-step warm start, then 8 RL steps of 3 prompts x G=4 completions sampled at
temperature 0.7 (the default task's ``train_defaults``), 64 new tokens, 32 held-out eval prompts
before, after the warm start and after RL, so that ``rvpo train`` with no arguments fits in about 7-8 minutes on a fresh 2-core machine
including set-up and model conversion, and visibly learns (docs/train.md "Does the default
learn?"). For real comparisons use ``rvpo experiment`` (docs/experiment.md).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_type_hints

import torch
import yaml

from rvpo.core.estimators import compute_advantages
from rvpo.core.spec import AdvantageSpec, locate_error
from rvpo.runs import write_yaml
from rvpo.settings import (
    ConfigError,
    Rule,
    check_rules,
    coerce,
    dotted_get,
    format_help,
    integer,
    number,
    unknown_key_error,
)
from rvpo.settings import iter_fields as _iter_fields
from rvpo.tasks.base import train_defaults
from rvpo.userfiles import read_user_yaml  # also refuses folders, FIFOs, binary files, duplicate keys


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (peft) on all attention and MLP projections."""

    enabled: bool = True
    """train LoRA adapters instead of all weights (about 4x less memory, faster on CPU)"""
    r: int = 16
    """LoRA rank"""
    alpha: int = 32
    """LoRA scaling numerator (effective scale alpha / r)"""
    dropout: float = 0.0
    """dropout on the LoRA branch"""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    """module names that get adapters (Llama naming)"""


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation before and after training (greedy by default)."""

    enabled: bool = True
    """evaluate the model before and after training and put the table in summary.md"""
    data: str = ""
    """held-out examples (a spec the task reads); empty: the task's default held-out split"""
    examples: int = 32
    """number of held-out prompts (the first N of the split); 0 means all"""
    max_new_tokens: int = 64
    """generation budget per eval prompt"""
    batch_size: int = 32
    """prompts generated together"""
    temperature: float = 0.0
    """eval decoding: 0 is greedy; above 0, samples (passed only to tasks whose evaluate() takes it)"""
    samples: int = 1
    """completions scored per held-out prompt (with temperature > 0; tasks that take it)"""
    seed: int = 0
    """seed of the eval's sampling (same samples for every model evaluated with it)"""


@dataclass(frozen=True)
class WarmStartConfig:
    """A short supervised warm start on gold answers of the training data (TRL SFTTrainer) before RL.

    SmolLM2-135M never writes the ToolRL format on its own (0 of 48 sampled completions, measured):
    every group then scores alike, every advantage is 0 and RL has nothing to learn from. A few SFT
    steps (a "cold start", as DeepSeek-R1 and ToolRL's SFT baselines use) give it a foothold."""

    enabled: bool = True
    """run the warm start when the task's rows carry gold answers (skipped on --resume: the run
    directory's warmstart/ adapter is reused)"""
    steps: int = 24
    """SFT optimizer steps (24 x 4 gold answers: 12 left the 135M model unable to close its think block
    and stop; docs/train.md "Does the default learn?")"""
    batch_size: int = 4
    """gold examples per SFT step (the first steps * batch_size training examples are used)"""
    learning_rate: float = 3e-4
    """SFT learning rate (constant)"""
    eval: bool = True
    """also evaluate after the warm start, so the summary separates its effect from RL's"""
    from_dir: str = ""
    """reuse a saved warm start (a run's warmstart/ folder) instead of training one, e.g. to compare
    estimators from the same starting point"""


@dataclass(frozen=True)
class TrainConfig:
    """One ``rvpo train`` run: model, data, advantage estimator, GRPO sizes, LoRA, eval, output."""

    model: str = "smollm2-135m-instruct"
    """model: the embedded default's name, a local folder, or a hub id (needs a network)"""
    task: str = "toolcall"
    """the task (prompts, reward channels, held-out eval): toolcall, constraints, rubric, neglect, a dotted path pkg.mod:factory or a file path/to/task.py:factory"""
    task_options: dict = field(default_factory=dict)
    """the task's options, e.g. {max_words: 24} (`rvpo train --help-config --task NAME` lists them; unknown names are refused with the closest one)"""
    data: str = ""
    """training prompts (a spec the task reads: 'builtin', a file...); empty: the task's default"""
    train_examples: int = 0
    """use only the first N training examples; 0 means all"""
    advantage: AdvantageSpec = field(default_factory=AdvantageSpec)
    """how rewards become advantages (rvpo.core.AdvantageSpec: the same fields, defaults and checks as the
    TRL config and the verl adapter); each field can also be set by its bare name (``estimator: gdpo``,
    ``--set k=2``)"""
    steps: int = 8
    """RL optimizer steps (each step samples prompts_per_step prompts x group_size completions)"""
    group_size: int = 4
    """G: completions sampled per prompt (the group for advantage baselines)"""
    prompts_per_step: int = 3
    """prompts per optimizer step (batch = prompts_per_step * group_size completions)"""
    max_completion_length: int = 64
    """maximum new tokens per sampled completion (gold answers of the default task, toolcall: mean 54, max 100;
    a task may declare its own, e.g. neglect 48)"""
    temperature: float = 1.0
    """sampling temperature for the rollouts (TRL's default; the toolcall and neglect tasks declare 0.7: at
    1.0 the warm-started 135M model's tool calls are mostly broken, docs/train.md "Does the default learn?")"""
    learning_rate: float = 1e-4
    """AdamW learning rate (1e-4 suits LoRA; use ~1e-5 for full fine-tuning)"""
    kl_beta: float = 0.0
    """KL penalty towards the initial model (0 = none, no reference model is kept)"""
    gradient_checkpointing: bool = False
    """recompute activations in the backward pass (saves memory, costs about one more forward; TRL's
    default is on: off here, since a 135M model's activations fit in memory easily)"""
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"] = "dapo"
    """TRL policy loss (TRL 1.16's loss_type)"""
    seed: int = 0
    """seed for data order, sampling and initialisation"""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters"""
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    """supervised warm start before RL"""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """before/after evaluation on held-out prompts"""
    out: str = "runs"
    """root folder for run directories (each run gets <out>/train-<timestamp>)"""
    save_steps: int = 10
    """save a checkpoint every N steps (and always at the end and on Ctrl-C)"""
    save_total_limit: int = 2
    """keep at most this many checkpoints (0 keeps all)"""
    report_to: str = "none"
    """extra loggers for transformers (none, tensorboard, wandb, trackio, ...); metrics.jsonl is always written"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where to train: auto uses CUDA if available, else CPU"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """model precision: auto picks bf16 where the CPU has native bf16 matrix units (or the GPU supports
    bf16), else fp32; LoRA weights, optimizer state, loss and advantages stay fp32 (docs/train.md)"""

    @property
    def batch_size(self) -> int:
        """Completions per optimizer step: ``prompts_per_step * group_size``."""
        return self.prompts_per_step * self.group_size


def iter_fields(cls: type = TrainConfig, prefix: str = ""):
    """Yield ``(dotted_name, type, default, doc)`` for every leaf field of the config tree
    (:func:`rvpo.settings.iter_fields`, by default of :class:`TrainConfig`)."""
    return _iter_fields(cls, prefix)


def field_names() -> list[str]:
    """All dotted leaf field names (``lora.r``, ``steps``, ``advantage.k``, ...)."""
    return [name for name, *_ in iter_fields()]


ALIASES: dict[str, str] = {
    **{f.name: f"advantage.{f.name}" for f in fields(AdvantageSpec)},
    "k_schedule": "advantage.k", "reward_weights": "advantage.weights",  # the names before the advantage section
}
"""Short names accepted in YAML, ``--set`` and experiment methods: an advantage field by its bare name
(``estimator``, ``k``, ``eps``...), plus the flat names of configs written before ``advantage`` was a section."""


def canonical(key: str) -> str:
    """The dotted field name for ``key`` (an alias resolves to its ``advantage.*`` field)."""
    return ALIASES.get(key, key)


def _coerce(name: str, tp: Any, value: Any, from_string: bool) -> Any:
    return coerce(name, tp, value, from_string, RULES[name][0] if name in RULES else None)


# ----------------------------------------------------------------------------- building


def unknown_field(key: str, where: str = "", error: type[ConfigError] = ConfigError) -> ConfigError:
    """The error for ``key``, which is no dotted field (:func:`rvpo.settings.unknown_key_error`:
    ``{where}unknown field 'grup_size' (did you mean 'group_size'?)``; aliases count as near names)."""
    return unknown_key_error("field", key, field_names(), where=where, also=list(ALIASES), error=error)


def _check_fields(keys: list[str], where: str) -> None:
    known = field_names()
    bad = next((key for key in keys if key not in known), None)
    if bad is not None:
        raise unknown_field(bad, where)


def _set_path(cfg: Any, parts: list[str], value: Any, full: str, from_string: bool) -> Any:
    hints = get_type_hints(type(cfg))
    name = parts[0]
    if name not in hints:
        raise unknown_field(full)
    if len(parts) > 1:
        sub = getattr(cfg, name)
        if isinstance(sub, dict) and len(parts) == 2:  # task_options.KEY=VALUE
            value = yaml.safe_load(value) if from_string and isinstance(value, str) else value
            return replace(cfg, **{name: {**sub, parts[1]: value}})
        if not dataclasses.is_dataclass(sub):
            raise unknown_field(full)
        return replace(cfg, **{name: _set_path(sub, parts[1:], value, full, from_string)})
    if dataclasses.is_dataclass(hints[name]):
        raise ConfigError(f"config field {full!r}: is a section; set its fields, e.g. {full}.{fields(hints[name])[0].name}")
    return replace(cfg, **{name: _coerce(full, hints[name], value, from_string)})


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], from_string: bool = False) -> TrainConfig:
    """Return ``cfg`` with dotted-key overrides applied (``{"lora.r": 8, "k": 2}``); not validated.

    The ``advantage.*`` overrides are applied together (:class:`AdvantageSpec` checks its fields
    as a whole when it is built), after type coercion of each."""
    adv: dict[str, Any] = {}
    for key, value in overrides.items():
        key = canonical(key)
        if key.startswith("advantage."):
            adv[key] = value
        else:
            cfg = _set_path(cfg, key.split("."), value, key, from_string)
    return replace(cfg, advantage=_advantage(cfg.advantage, adv, from_string)) if adv else cfg


def _advantage(spec: AdvantageSpec, overrides: dict[str, Any], from_string: bool) -> AdvantageSpec:
    hints = get_type_hints(AdvantageSpec)
    values = spec.to_dict()
    for key, value in overrides.items():
        name = key.removeprefix("advantage.")
        if name not in hints:
            raise unknown_field(key)
        if name == "k" and not isinstance(value, str):
            values[name] = value  # a number or a schedule mapping: AdvantageSpec checks and normalises it
        elif name == "weights" and _named(value, from_string) is not None:
            values[name] = _named(value, from_string)  # {channel: weight}: resolved when the task is known
        else:
            values[name] = _coerce(key, hints[name], value, from_string)
    try:
        return AdvantageSpec(**values)
    except ValueError as e:
        head, _, rest = locate_error(e).partition(": ")
        raise ConfigError(f"config field 'advantage.{head}': {rest}") from None


def _named(value: Any, from_string: bool) -> dict | None:
    """``advantage.weights`` given by channel name (a mapping, or ``--set weights={a: 2}``), else None."""
    if from_string and isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"config field 'advantage.weights': cannot read {value!r} as a mapping "
                              "(write e.g. {constraint: 2})") from None
    return dict(value) if isinstance(value, dict) else None


def parse_set(items: list[str]) -> dict[str, str]:
    """Parse ``--set key=value`` strings into a dict (values stay strings)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set lora.r=8")
        out[key.strip()] = value.strip()
    return out


def flatten_config(d: dict, where: str, prefix: str = "") -> dict[str, Any]:
    """A nested config mapping as flat dotted keys (sections expanded, aliases resolved; a k
    schedule written as a mapping stays one value)."""
    out: dict[str, Any] = {}
    sections = {n.split(".")[0] for n in field_names() if "." in n}
    for key, value in d.items():
        full = canonical(f"{prefix}{key}")
        if isinstance(value, dict) and full in sections and full != "task_options":
            out.update(flatten_config(value, where, f"{full}."))
        else:
            out[full] = value
    return out


def read_yaml_file(path: str | Path, what: str = "config file", error: type[ConfigError] = ConfigError) -> Any:
    """``yaml.safe_load`` of a user's file; a missing file or bad YAML raises ``error`` naming the file."""
    return read_user_yaml(path, what, error)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML into flat dotted overrides; unknown keys raise naming the file."""
    path = Path(path)
    where = f"{path}: "
    raw = read_yaml_file(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a mapping of config fields at the top level")
    flat = flatten_config(raw, where)
    _check_fields(list(flat), where)
    return flat


def build_config(
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    string_overrides: dict[str, str] | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """Defaults <- the task's ``train_defaults`` (:func:`task_base`; the task is resolved first, from the YAML
    and the overrides) <- YAML <- typed overrides <- ``--set`` strings; then :func:`validate`. ``base`` (a
    resolved config: a run directory's on ``--resume``, an experiment's) replaces the first two."""
    try:
        from_yaml = load_yaml(yaml_path) if yaml_path is not None else {}
    except ConfigError as e:
        raise _in_file(e, yaml_path) from None

    def layers(cfg: TrainConfig) -> TrainConfig:
        try:
            cfg = apply_overrides(cfg, from_yaml)
        except ConfigError as e:
            raise _in_file(e, yaml_path) from None
        cfg = apply_overrides(cfg, overrides or {})
        return apply_overrides(cfg, string_overrides or {}, from_string=True)

    return validate(layers(base if base is not None else task_base(layers(TrainConfig()).task)))


def _in_file(e: ConfigError, path: str | Path | None) -> ConfigError:
    """``e`` with the YAML file's name in front (once)."""
    msg = str(e)
    return ConfigError(msg if path is None or msg.startswith(str(path)) else f"{path}: {msg}")


def task_base(task: str) -> TrainConfig:
    """TrainConfig's defaults with task ``task`` and its ``train_defaults`` applied, checked like ``--set``
    values; errors name the task (``task 'x': train_defaults: unknown field 'grup_size' (did you mean
    'group_size'?)``), an unknown task fails as ``config field 'task': unknown task ...``."""
    try:
        declared = train_defaults(task)
    except ValueError as e:
        msg = str(e)
        raise ConfigError(f"config field 'task': {msg.removeprefix('task: ')}" if msg.startswith("task: ")
                          else msg) from None
    where = f"task {task!r}: train_defaults: "
    fixed = next((k for k in declared if canonical(k).split(".")[0] in ("task", "task_options")), None)
    if fixed is not None:  # the task's options have defaults of their own
        raise ConfigError(f"{where}{fixed!r} cannot be a training default (it is the run's own choice)")
    try:
        return validate(apply_overrides(replace(TrainConfig(), task=task), declared))
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


_POSITIVE, _NON_NEGATIVE = number(0, above=True), number(0)
RULES: dict[str, Rule] = {
    "steps": integer(1),
    "seed": integer(0),
    "group_size": integer(2),
    "prompts_per_step": integer(1),
    "max_completion_length": integer(1),
    "train_examples": integer(0),
    "save_steps": integer(1),
    "save_total_limit": integer(0),
    "temperature": _POSITIVE,
    "learning_rate": _POSITIVE,
    "kl_beta": _NON_NEGATIVE,
    "lora.r": integer(1),
    "lora.alpha": integer(1),
    "lora.dropout": number(0, 1, below=True),
    "lora.target_modules": ("a non-empty list of module names", lambda v: len(v) >= 1),
    "warmstart.steps": integer(1),
    "warmstart.batch_size": integer(1),
    "warmstart.learning_rate": _POSITIVE,
    "eval.examples": integer(0),
    "eval.max_new_tokens": integer(1),
    "eval.batch_size": integer(1),
    "eval.temperature": _NON_NEGATIVE,
    "eval.samples": integer(1),
    "eval.seed": integer(0),
}
"""Range rules per field (:func:`rvpo.settings.check_rules`); types are checked first (the rule's
words also name the type in a type error). The ``advantage.*`` fields are checked by
:class:`AdvantageSpec` itself."""


def _need(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config field {name!r}: expected {what}, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check types, ranges and cross-field rules; raise :class:`ConfigError` naming the field."""
    for name, tp, _default, _doc in iter_fields():
        if name == "advantage.weights" and cfg.advantage.named_weights:
            continue  # by channel name: AdvantageSpec checked the numbers; the names need the task
        _coerce(name, tp, dotted_get(cfg, name), from_string=False)  # type check
    check_rules(cfg, RULES)
    _need(bool(cfg.model.strip()), "model", "a model name or folder", cfg.model)
    _need(bool(cfg.out.strip()), "out", "a folder", cfg.out)
    _check_report_to(cfg.report_to)
    if cfg.eval.samples > 1 and cfg.eval.temperature == 0:
        raise ConfigError(f"config field 'eval.samples': {cfg.eval.samples} samples a prompt need eval.temperature > 0 "
                          "(greedy decoding gives the same answer every time)")
    if cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config field 'device': 'cuda' asked for, but torch sees no CUDA device "
                              "(use auto or cpu, or install a CUDA build of torch)")

    _dry_run_estimator(cfg)
    return cfg


def _dry_run_estimator(cfg: TrainConfig) -> None:
    """Call the estimator once on a tiny batch, so a bad one (``math:sqrt``) fails here, not at step 1."""
    spec = cfg.advantage
    try:
        kw = spec.params(weights=[1.0, 1.0])
        kw.update(k=1.0, weights=None)  # the task's channel count is not known yet
        if spec.noise_floor is not None and len(spec.noise_floor) != 1:
            kw["noise_floor"] = None
        out = compute_advantages(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), 2, **kw)
        if tuple(out.advantages.shape) != (4,):
            raise ValueError(f"returned advantages of shape {tuple(out.advantages.shape)} for 4 completions")
    except Exception as e:  # a user's estimator can fail in any way: say so, with its own words
        msg = " ".join(str(e).split())[:200]
        raise ConfigError(f"config field 'advantage.estimator': {spec.estimator!r} fails on a 4 x 2 test batch "
                          f"({type(e).__name__}: {msg})") from None


_REPORTERS = {"wandb": "wandb", "tensorboard": "tensorboard", "trackio": "trackio", "mlflow": "mlflow",
              "comet_ml": "comet_ml", "clearml": "clearml", "dvclive": "dvclive", "neptune": "neptune",
              "swanlab": "swanlab", "codecarbon": "codecarbon", "azure_ml": "azureml"}


def _check_report_to(value: str) -> None:
    """Each logger named in ``report_to`` must be known and importable (else the trainer fails at step 0)."""
    for name in (n.strip() for n in value.split(",") if n.strip()):
        if name in ("none", "all"):
            continue
        if name not in _REPORTERS:
            raise unknown_key_error("logger", name, ["none", "all", *_REPORTERS], where="config field 'report_to': ")
        module = _REPORTERS[name]
        found = importlib.util.find_spec(module) is not None or (
            name == "tensorboard" and importlib.util.find_spec("tensorboardX") is not None)
        if not found:
            raise ConfigError(f"config field 'report_to': {name!r} is not installed (pip install {module})")


# ----------------------------------------------------------------------------- output


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Nested plain dict (tuples as lists) for config.yaml; :func:`from_dict` reads it back."""

    out: dict[str, Any] = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else to_dict_value(v)
    return out


def from_dict(d: dict[str, Any], where: str = "") -> TrainConfig:
    """Build and validate a config from a nested dict (e.g. a run directory's config.yaml)."""
    flat = flatten_config(d, where)
    _check_fields(list(flat), where)
    return validate(apply_overrides(task_base(apply_overrides(TrainConfig(), flat).task), flat))


def describe_fields() -> str:
    """A Markdown table of all fields: name, type, default, meaning (docs and ``--help-config``;
    :func:`rvpo.settings.format_help`)."""
    return format_help(TrainConfig)


def to_dict_value(value: Any) -> Any:
    """A config value as :func:`to_dict` writes it (tuples as lists)."""
    return [to_dict_value(v) for v in value] if isinstance(value, tuple) else value


def save_config(path: str | Path, cfg: TrainConfig) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_yaml(path, to_dict(cfg))
