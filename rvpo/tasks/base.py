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

Reward functions follow TRL's contract (see :mod:`rvpo.rewards`): ``fn(prompts,
completions, **columns) -> list[float | None]``, ``__name__`` the channel name, ``None`` an
abstention (NaN in the advantage core). A task whose rows carry different channels (variable M)
returns one function per channel name and abstains where a row lacks that channel.

An evaluation result is a dict with at least::

    {"n": int, "metrics": {name: float}, "ci95": {name: [lo, hi]}, "records": [...]}

``eval_metrics`` orders the names for tables; ``target_metric`` is the one experiments compare.
All numbers must be finite or ``None`` (JSON outputs are strict).

A task is named by its registry name (:data:`TASKS`), a dotted path ``pkg.module:factory``, or a
file path ``path/to/task.py:factory`` (imported by path; no ``PYTHONPATH`` needed).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvpo.settings import format_help, load_settings

TASKS: dict[str, str] = {
    "toolcall": "rvpo.tasks.toolcall.task:make_task",
    "constraints": "rvpo.tasks.constraints.task:make_task",
    "rubric": "rvpo.tasks.rubric.task:make_task",
    "neglect": "rvpo.tasks.neglect.task:make_task",
}
"""Built-in tasks: name -> ``"module:factory"`` (imported only when used)."""


@dataclass(frozen=True)
class StepData:
    """What :meth:`Task.step_metrics` sees of one generation batch (global: all processes).

    Shapes: ``N`` completions (``B`` prompts x ``G`` = ``group_size``, in contiguous groups), ``M``
    channels. Fields other than ``advantages`` may be None where the trainer could not provide them.
    """

    advantages: Any = None
    """the batch's :class:`rvpo.AdvantageOutput` (channels in ``channel_names`` order)"""
    rewards: Any = None
    """raw rewards, a float ``(N, M)`` torch tensor; NaN where a channel abstained"""
    channel_names: tuple[str, ...] = ()
    """the ``M`` channel names (:meth:`Task.channel_names`)"""
    completions: tuple[str, ...] | None = None
    """the ``N`` completion texts"""
    prompts: tuple[Any, ...] | None = None
    """the ``N`` prompts (chat messages or strings; each repeated for the G completions of its group)"""
    weights: tuple[float, ...] | None = None
    """the ``M`` training weights (0 = monitor-only channel)"""
    group_size: int = 0
    """``G``"""
    step: int = 0
    """the optimizer step at which the batch was generated"""
    mode: str = "train"
    """``"train"`` or ``"eval"``"""

    def column(self, name: str) -> list[float]:
        """Channel ``name``'s ``N`` raw rewards as floats (NaN = abstained)."""
        if self.rewards is None:
            raise ValueError("StepData.column: this batch carries no raw rewards")
        try:
            j = list(self.channel_names).index(name)
        except ValueError:
            raise ValueError(f"StepData.column: unknown channel {name!r}; channels: {list(self.channel_names)}") from None
        return [float(v) for v in self.rewards[:, j].tolist()]


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
        monitor_channels: channel names that are computed and logged (TRL's ``rewards/<name>/mean``)
            but never trained on: their weight is always 0, and a weight-0 channel has no influence
            on any estimator's advantages (nor on ``rvpo/all_binary_met``).
        channel_weights: default training weight by channel name (a name left out weighs 1); the
            config's ``advantage.weights`` (a list, or a mapping by name) overrides it.
        constraint_channels: the hard constraint(s) that reports and ``rvpo screen`` watch.
        easy_channels: the channels that compete with the constraints (e.g. correlate with length).
        metric_prefixes: prefixes of the metrics :meth:`step_metrics` logs, listed in ``summary.md``
            (empty: ``"<name>/"``).
        progress_metrics: logged metrics the progress bar shows in place of the channel means when a
            task has more than six channels (e.g. a rubric's share of items met).
        train_defaults: the ``rvpo train`` settings this task is sized for, as dotted config keys
            (``{"max_completion_length": 48, "group_size": 8, "prompts_per_step": 4}``). They replace
            TrainConfig's defaults and lie under the YAML file and the command line (dataclass defaults
            < ``train_defaults`` < ``--config`` < flags and ``--set``); ``rvpo train --help-config --task
            NAME`` lists what they change. Keys and values are checked like a ``--set`` (a misspelt key
            fails with the closest field, naming the task); ``task`` and ``task_options`` are not
            allowed. They are read from the factory before the task is built (:func:`train_defaults`):
            a Task class used as its own factory has them; a function factory carries them as an
            attribute, as it does ``Options`` (``make_task.train_defaults = MyTask.train_defaults``).

    Per-step metrics: :meth:`step_metrics` is called after each logged step. A task that declares a
    keyword ``data`` (``def step_metrics(self, advantages=None, *, data=None)``) also receives a
    :class:`StepData` (completions, prompts, raw ``(N, M)`` rewards, channel names); one whose
    ``step_metrics(advantages)`` takes only the :class:`rvpo.AdvantageOutput` is called as before.

    Sampled evaluation: :meth:`evaluate` takes keyword-only ``temperature`` (0 = greedy), ``samples``
    (completions per prompt) and ``seed``; ``rvpo train`` passes them only to a task whose
    ``evaluate`` declares them (older tasks stay greedy).

    Offline scoring: :meth:`score` scores completions that are already written (one string per row, in
    row order) and returns the result :meth:`evaluate` would for the same completions, so that an eval
    can be rerun without a model (``rvpo eval task NAME --responses FILE``). A task whose scoring needs
    no model implements it and lets :meth:`evaluate` generate, then call ``self.score``; one that needs
    a judge scores inside :meth:`session`, as :meth:`evaluate` does. The default raises
    ``NotImplementedError`` (the task can only evaluate a model).
    """

    name: str = ""
    description: str = ""
    default_data: str = "builtin"
    default_eval_data: str = "builtin:test"
    columns: tuple[str, ...] = ()
    eval_metrics: tuple[str, ...] = ()
    target_metric: str = ""
    monitor_channels: tuple[str, ...] = ()
    channel_weights: Mapping[str, float] = {}
    constraint_channels: tuple[str, ...] = ()
    easy_channels: tuple[str, ...] = ()
    metric_prefixes: tuple[str, ...] = ()
    progress_metrics: tuple[str, ...] = ()
    train_defaults: Mapping[str, Any] = {}

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
                 batch_size: int, temperature: float = 0.0, samples: int = 1, seed: int = 0) -> dict[str, Any]:
        """Generate for ``rows`` with ``model`` and score; see the module docstring.

        ``temperature`` 0 is greedy; above 0, ``samples`` completions per prompt are drawn (torch
        seeded with ``seed``) and every one is scored. A task may leave these keywords out (greedy only).
        """
        raise NotImplementedError

    def score(self, rows: Sequence[dict], responses: Sequence[str], **kw: Any) -> dict[str, Any]:
        """Score given completions: ``responses[i]`` answers ``rows[i]``; the result :meth:`evaluate` returns
        for the same completions (``n``, ``metrics``, ``ci95``, ``records``...). No model is loaded; a task
        that grades with a judge needs its :meth:`session` open. Raises ``ValueError`` when the counts differ.

        The default raises ``NotImplementedError``: the task cannot score given responses.
        """
        label = self.name or type(self).__name__
        raise NotImplementedError(f"task {label!r} cannot score given responses: it implements no score() "
                                  "(only evaluate(), which generates with a model)")

    def session(self, run_dir: Path) -> AbstractContextManager[Any]:
        """Resources held for the whole run (e.g. a local judge server); stopped when the run ends or dies."""
        return contextlib.nullcontext()

    def step_metrics(self, advantages: Any = None, *, data: StepData | None = None) -> dict[str, float]:
        """Extra per-step metrics (flat floats; NaN is stored as null) logged beside TRL's; default none.

        ``advantages`` is the step's :class:`rvpo.AdvantageOutput` (global batch, channels in
        :meth:`channel_names` order), e.g. to report binding weights grouped by what a channel means.
        ``data`` (:class:`StepData`, or None before the first batch) adds the completions, prompts and
        raw rewards. Overrides may drop ``data`` (then it is not passed; see the class docstring).
        """
        return {}

    def describe_eval(self) -> str:
        """A sentence under the before/after table that says what the metrics mean."""
        return ""

    def findings(self) -> list[str]:
        """Warnings about the run the user must see (e.g. "the judge cannot tell these completions apart"),
        shown in summary.md whether or not evaluation ran; default none."""
        return []


def option(default: Any, help: str) -> Any:
    """A task option: a field of the task's frozen ``Options`` dataclass, with one default and its meaning
    (listed by ``rvpo train --help-config --task NAME``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("option: give a tuple or None as a default, not a mutable container")
    return field(default=default, metadata={"help": help})


def build_options(cls: type, values: Mapping[str, Any]) -> Any:
    """A task's ``Options`` dataclass from ``task_options`` (:func:`rvpo.settings.load_settings`): an
    unknown name raises :class:`rvpo.settings.ConfigError` ``unknown option 'max_word' (did you mean
    'max_words'?)``, a value of the wrong type one that names the option (``max_words: expected an int,
    got 'x'``); lists become tuples; then the class's own checks run."""
    return load_settings(cls, values, kind="option", label=str)


def options_class(name: str) -> type | None:
    """The ``Options`` dataclass of task ``name`` (a registry name or ``module:factory``), or None when its
    factory declares none. Raises ``ValueError`` for an unknown task."""
    return getattr(_factory(name), "Options", None)


def describe_options(name: str) -> str:
    """A Markdown table of task ``name``'s options: ``task_options.NAME``, type, default, meaning
    (``--help-config --task NAME``; :func:`rvpo.settings.format_help`)."""
    cls = options_class(name)
    if cls is None:
        return f"Task {name!r} declares no typed options (its factory takes them as keyword arguments)."
    return format_help(cls, "task_options.") or f"Task {name!r} takes no options."


def train_defaults(name: str) -> dict[str, Any]:
    """The ``train_defaults`` of task ``name`` (see :class:`Task`), read from its factory without building
    the task. Raises ``ValueError`` for an unknown task (``"task: ..."``) or a declaration that is not a
    mapping of field names (``"task 'x': train_defaults: ..."``); the keys and values are checked by
    :func:`rvpo.train.config.task_base`."""
    declared = getattr(_factory(name), "train_defaults", None) or {}
    if not isinstance(declared, Mapping) or not all(isinstance(k, str) for k in declared):
        raise ValueError(f"task {name!r}: train_defaults: expected a mapping of config field names to values, "
                         f"got {declared!r}")
    return dict(declared)


def _factory(name: str) -> Callable[..., Any]:
    """The factory (a Task class or a function) of a registry name, ``pkg.mod:factory`` or ``file.py:factory``."""
    target = TASKS.get(name, name)
    if ":" not in target:
        raise ValueError(f"task: unknown task {name!r}; built-in: {', '.join(sorted(TASKS))}, "
                         "a dotted path 'pkg.module:factory' or a file 'path/to/task.py:factory'")
    mod_name, _, attr = target.rpartition(":")
    if mod_name.endswith(".py") or "/" in mod_name or "\\" in mod_name:
        factory = _factory_from_file(Path(mod_name), attr, target)
    else:
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"task: cannot import {target!r}: {e}") from None
    if not callable(factory):
        raise ValueError(f"task: {target!r} is not callable")
    return factory


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task registered as ``name``, a user's task by dotted path ``pkg.mod:factory``, or by file
    path ``path/to/task.py:factory``.

    ``options`` (``task_options`` in the config) go to the factory as keyword arguments.
    Raises ``ValueError`` naming the task for an unknown name, a missing file or factory, or a bad option.
    """
    factory = _factory(name)
    target = TASKS.get(name, name)
    try:
        task = factory(**dict(options or {}))
    except (TypeError, ValueError) as e:  # an unknown or bad option
        raise ValueError(f"task_options for task {name!r}: {e}") from None
    for attr in ("load", "reward_funcs", "evaluate"):
        if not callable(getattr(task, attr, None)):
            raise ValueError(f"task: {target!r} gave {type(task).__name__}, which has no {attr}()")
    declared = dict(getattr(task, "train_defaults", None) or {})
    if declared and declared != dict(getattr(factory, "train_defaults", None) or {}):  # else silently unused
        cls = type(task).__name__
        raise ValueError(f"task: {target!r} gave {cls}, whose train_defaults its factory does not carry; they are "
                         f"read before the task is built: set {getattr(factory, '__name__', 'factory')}"
                         f".train_defaults = {cls}.train_defaults")
    return task


def _factory_from_file(path: Path, attr: str, target: str) -> Callable[..., Any]:
    """``attr`` of the Python file ``path``, imported by path (as module ``rvpo_user_task_<stem>``)."""
    if not path.is_file():
        raise ValueError(f"task: {target!r}: no such file {str(path)!r}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"rvpo_user_task_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"task: {target!r}: cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code can fail in any way: say where
        sys.modules.pop(mod_name, None)
        raise ValueError(f"task: importing {str(path)!r} failed: {type(e).__name__}: {e}") from None
    if not attr or not hasattr(module, attr):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        raise ValueError(f"task: {str(path)!r} has no {attr!r}" + (f"; it defines {', '.join(found)}" if found else ""))
    return getattr(module, attr)


def resolve_channel_weights(task: Any, names: Sequence[str], weights: Any = None) -> list[float]:
    """One training weight per channel ``names``, as ``rvpo train`` hands them to the trainer.

    ``weights``: the config's ``advantage.weights``: None (the task's ``channel_weights``, default 1),
    a list (one per channel, in order) or a mapping by name (on top of the task's defaults).
    Channels in the task's ``monitor_channels`` always weigh 0. Raises ``ValueError`` starting with
    ``"advantage.weights: "`` for a wrong count, an unknown name, or a non-zero weight named for a
    monitor channel.
    """
    names = [str(n) for n in names]
    label = getattr(task, "name", "") or type(task).__name__
    monitor = set(getattr(task, "monitor_channels", ()) or ())
    defaults = dict(getattr(task, "channel_weights", None) or {})
    for attr, keys in (("monitor_channels", monitor), ("channel_weights", defaults)):
        bad = sorted(set(keys) - set(names))
        if bad:
            raise ValueError(f"advantage.weights: task {label!r} lists {bad} in {attr}, which are not among its "
                             f"channels: {', '.join(names)}")
    if isinstance(weights, Mapping):
        unknown = [n for n in weights if n not in names]
        if unknown:
            raise ValueError(f"advantage.weights: unknown channel(s) {unknown} for task {label!r}; its channels: "
                             f"{', '.join(names)}")
        named = [n for n in weights if n in monitor and float(weights[n]) != 0]
        if named:
            raise ValueError(f"advantage.weights: {named} of task {label!r} are monitor-only channels (logged, never "
                             "trained on); their weight is always 0")
        defaults.update({n: float(v) for n, v in weights.items()})
        out = [float(defaults.get(n, 1.0)) for n in names]
    elif weights is not None:
        out = [float(x) for x in weights]
        if len(out) != len(names):
            raise ValueError(f"advantage.weights: expected {len(names)} numbers (one per channel of task {label!r}: "
                             f"{', '.join(names)}), got {len(out)}")
    else:
        out = [float(defaults.get(n, 1.0)) for n in names]
    return [0.0 if n in monitor else w for n, w in zip(names, out, strict=True)]


def accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` can be called with keyword ``name`` (declared, or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def can_score(task: Any) -> bool:
    """Whether ``task`` has its own :meth:`Task.score` (not the base class's, which raises; duck-typed tasks
    may have none). Its ``score`` may still raise ``NotImplementedError`` where the task's options rule it out."""
    fn = getattr(type(task), "score", None) or getattr(task, "score", None)
    return callable(fn) and fn is not Task.score


def metric_prefixes(task: Any) -> tuple[str, ...]:
    """The prefixes of ``task``'s own logged metrics: its ``metric_prefixes``, else ``"<name>/"``."""
    declared = tuple(getattr(task, "metric_prefixes", ()) or ())
    name = getattr(task, "name", "")
    return declared or ((f"{name}/",) if name else ())


def call_step_metrics(task: Any, data: StepData | None) -> dict[str, float]:
    """``task.step_metrics`` with ``data=`` when it declares it, else with the advantages alone."""
    fn = getattr(task, "step_metrics", None)
    if fn is None:
        return {}
    adv = data.advantages if data is not None else None
    return fn(adv, data=data) if accepts_keyword(fn, "data") else fn(adv)


# ----------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson 95% interval (for eval tables)."""

    value: float
    lo: float
    hi: float


def rate(hits: int, n: int) -> Rate:
    """``hits / n`` with the Wilson 95% CI (NaN-free: n = 0 gives 0 in [0, 1])."""
    from rvpo.stats import wilson_ci  # deferred: scipy via rvpo.stats (start-up time: the CLI imports this module)

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
