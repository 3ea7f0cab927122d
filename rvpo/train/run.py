"""``rvpo train``: one linear function of named stages.

    run dir -> data -> model -> eval before -> warm start (SFT) -> eval -> trainer
            -> train (Ctrl-C safe) -> final save -> eval after -> plots -> summary

Training itself is TRL's GRPOTrainer with RVPO advantages (:class:`rvpo.integrations.trl.RVPOTrainer`);
the task (:mod:`rvpo.tasks`: prompts, reward channels, gold answers, held-out eval) comes from the
config's ``task``. This module holds no task-specific code: it wires the config and the task into
the trainer and writes the run directory::

    <out>/train-<timestamp>/
      config.yaml        resolved config (what --resume reads back)
      metrics.jsonl      one JSON object per step (rewards/<ch>/mean, rvpo/k, rvpo/binding/<ch>, loss, ...)
      checkpoints/       HF Trainer checkpoints (checkpoint-<step>/, resumable)
      warmstart/         the adapter (or weights) after the supervised warm start
      final/             trained weights or LoRA adapter + tokenizer
      eval_before.json, eval_warmstart.json, eval_after.json   the task's held-out evals
      plots/             reward_<channel>.png, k_binding.png
      summary.md         config, timings, final metrics, before/after table
      INTERRUPTED        present while a run stopped by Ctrl-C has not been resumed
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from rvpo.model import loading as models  # models.load_model_and_tokenizer is looked up per call (tests replace it)
from rvpo.model.policy import latest_checkpoint, merged_lora
from rvpo.model.precision import Precision, autocast, resolve_cached
from rvpo.runs import check_run_root, make_run_dir, read_jsonl, remove_if_unstarted, write_json, write_jsonl
from rvpo.tasks.base import Task, accepts_keyword, get_task, resolve_channel_weights
from rvpo.train.config import ConfigError, TrainConfig, from_dict, save_config
from rvpo.train.plots import plot_metrics
from rvpo.train.summary import write_summary
from rvpo.train.warmstart import check_warm_start_source, load_warm_start, lora_config, warm_start

logger = logging.getLogger(__name__)
GREEDY_EVAL = {"temperature": 0.0, "samples": 1}
"""Greedy, one answer a prompt: the eval settings every task supports."""
INTERRUPTED = "INTERRUPTED"


@dataclass
class TrainResult:
    """What a run produced: its folder, whether Ctrl-C stopped it, stage timings and evals."""

    run_dir: Path
    interrupted: bool = False
    already_finished: bool = False
    warm_started: bool = False
    last_step: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    eval_before: dict | None = None
    eval_warmstart: dict | None = None
    eval_after: dict | None = None
    precision: Precision | None = None
    task: Task | None = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- stages


def finished_step(run_dir: Path) -> int | None:
    """The step a run directory finished at (it has ``final/``), or None if it has not finished."""
    if not (Path(run_dir) / "final").is_dir():
        return None
    last = latest_checkpoint(run_dir)
    return last[0] if last else None


def open_run_dir(cfg: TrainConfig, resume: str | Path | None, run_dir: Path | None = None) -> tuple[Path, int]:
    """A fresh run directory (``run_dir`` if given, else ``<out>/train-<timestamp>``), or the resumed one
    with metrics trimmed to its latest checkpoint.

    Returns ``(run_dir, resume_step)``; ``resume_step`` is 0 for a fresh run.
    """
    if resume is None:
        if run_dir is None:
            run_dir = make_run_dir(cfg.out, "train")
        else:
            run_dir = Path(run_dir)
            if run_dir.exists() and any(run_dir.iterdir()):
                raise ConfigError(f"run directory {str(run_dir)!r} is not empty (resume it instead)")
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create run directory {str(run_dir)!r}: {e.strerror or e}") from None
        save_config(run_dir / "config.yaml", cfg)
        return run_dir, 0
    run_dir = Path(resume)
    last = latest_checkpoint(run_dir)
    step = last[0] if last else 0
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():  # drop steps after the checkpoint: they are re-run, so they must not repeat
        kept = [r for r in read_jsonl(metrics) if r.get("step", 0) <= step]
        write_jsonl(metrics, kept)
    save_config(run_dir / "config.yaml", cfg)  # INTERRUPTED stays until the checkpoint has loaded (see _train)
    return run_dir, step


def load_resume_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run directory was started with (``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"--resume {str(run_dir)!r}: no such run directory")
    if not path.is_file():
        raise FileNotFoundError(f"--resume {str(run_dir)!r}: no config.yaml there (not an rvpo train run directory)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable config ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields")
    return from_dict(raw or {}, where=f"{path}: ")


def load_task(cfg: TrainConfig) -> Task:
    """The config's task, its options applied (errors name the field)."""
    try:
        return get_task(cfg.task, cfg.task_options)
    except ValueError as e:
        field, _, msg = str(e).partition(": ")  # "task: ..." or "task_options for task 'x': ..."
        name = "task_options" if field.startswith("task_options") else "task"
        raise ConfigError(f"config field {name!r}: {msg}") from None


def load_data(cfg: TrainConfig, task: Task) -> tuple[list[dict], list[dict]]:
    """``(train_rows, eval_rows)`` per ``cfg.data`` / ``cfg.eval.data`` (or the task's defaults) and their limits."""

    def load(name: str, spec: str, split: str) -> list[dict]:
        try:
            rows = list(task.load(spec, split, seed=cfg.seed))
        except (ValueError, OSError) as e:
            raise ConfigError(f"config field {name!r}: {e}") from None
        if not rows:
            raise ConfigError(f"config field {name!r}: {spec!r} gave no examples")
        return rows

    train = load("data", cfg.data or task.default_data, "train")
    if cfg.train_examples:
        train = train[: cfg.train_examples]
    evals: list[dict] = []
    if cfg.eval.enabled:
        evals = load("eval.data", cfg.eval.data or task.default_eval_data, "eval")
        if cfg.eval.examples:
            evals = evals[: cfg.eval.examples]
    return train, evals


def reward_funcs(cfg: TrainConfig, task: Task) -> list[Callable]:
    """The task's reward functions, one per channel; ``advantage.weights`` must fit their names
    (checked by :func:`channel_weights`)."""
    fns = list(task.reward_funcs())
    channel_weights(cfg, task, [fn.__name__ for fn in fns])
    return fns


def channel_weights(cfg: TrainConfig, task: Task, names: Sequence[str] | None = None) -> list[float]:
    """One training weight per channel (``names``, default the task's): ``advantage.weights`` (a list,
    or a mapping by name) over the task's ``channel_weights``; monitor channels 0
    (:func:`rvpo.tasks.base.resolve_channel_weights`)."""
    names = list(names) if names is not None else [fn.__name__ for fn in task.reward_funcs()]
    try:
        return resolve_channel_weights(task, names, cfg.advantage.weights)
    except ValueError as e:
        raise ConfigError(f"config field {str(e).replace('advantage.weights', repr('advantage.weights'), 1)}") from None


def advantage_spec(cfg: TrainConfig, task: Task, names: Sequence[str] | None = None) -> Any:
    """``cfg.advantage`` with positional weights resolved for the task's channels (what the trainer uses)."""
    weights = channel_weights(cfg, task, names)
    if cfg.advantage.weights is None and all(w == 1.0 for w in weights):
        return cfg.advantage
    return replace(cfg.advantage, weights=tuple(weights))


def check_lora_targets(cfg: TrainConfig, model: Any) -> None:
    """Every ``lora.target_modules`` name must match a module of the model (peft fails late otherwise)."""
    if not cfg.lora.enabled:
        return
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in cfg.lora.target_modules if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ConfigError(f"config field 'lora.target_modules': {missing} match no module of {cfg.model!r}; "
                          f"its linear layers are {', '.join(linear)}")


def on_cuda(cfg: TrainConfig) -> bool:
    return cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())


def resolve_precision(cfg: TrainConfig) -> Precision:
    """The run's precision (``cfg.precision`` resolved for its device; see :mod:`rvpo.model.precision`)."""
    try:
        return resolve_cached(cfg.precision, "cuda" if on_cuda(cfg) else "cpu")
    except ValueError as e:
        raise ConfigError(f"config field {str(e)}") from None


def model_dtype(cfg: TrainConfig, precision: Precision) -> Any:
    """bf16 weights only where they are frozen (LoRA); a full fine-tune keeps fp32 master weights."""
    return torch.bfloat16 if precision.bf16 and cfg.lora.enabled else torch.float32


def trainer_args(cfg: TrainConfig, output_dir: Path, precision: Precision, spec: Any = None) -> Any:
    """Map the config onto :class:`rvpo.integrations.trl.RVPOConfig` (a TRL GRPOConfig); ``spec``: the
    advantage spec with the task's channel weights resolved (:func:`advantage_spec`; default ``cfg.advantage``)."""
    from rvpo.integrations.trl import RVPOConfig  # deferred: optional dependency trl (only training needs it)

    cuda = on_cuda(cfg)
    return RVPOConfig.from_spec(
        cfg.advantage if spec is None else spec,
        output_dir=str(output_dir),
        num_generations=cfg.group_size,
        per_device_train_batch_size=cfg.batch_size,  # one step = prompts_per_step groups of G
        gradient_accumulation_steps=1,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        beta=cfg.kl_beta,
        loss_type=cfg.loss_type,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_steps=cfg.steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit or None,
        report_to=cfg.report_to,
        use_cpu=not cuda,
        bf16=precision.bf16,  # autocast for the training forward; generation follows the weights' dtype
        fp16=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def build_trainer(cfg: TrainConfig, task: Task, model: Any, tok: Any, train: Sequence[dict], output_dir: Path,
                  callbacks: Sequence[Any], precision: Precision, rewards: Sequence[Callable] | None = None) -> Any:
    """An RVPOTrainer with our callbacks instead of transformers' progress printing (``rewards``: the task's
    reward functions when the caller already built them)."""
    from datasets import Dataset  # deferred: optional dependency (rvpo[trl])
    from peft import PeftModel  # deferred: optional dependency (rvpo[trl])
    from transformers import PrinterCallback, ProgressCallback  # deferred: optional dependency (rvpo[trl])

    from rvpo.integrations.trl import RVPOTrainer  # deferred: optional dependency trl (only training needs it)

    # a warm-started model already carries its LoRA adapter: RL keeps training that one
    peft_config = None if isinstance(model, PeftModel) else lora_config(cfg)
    columns = ("prompt", "id", *task.columns)
    dataset = Dataset.from_list([{c: ex[c] for c in columns} for ex in train])
    fns = list(rewards or reward_funcs(cfg, task))
    spec = advantage_spec(cfg, task, [fn.__name__ for fn in fns])
    trainer = RVPOTrainer(model=model, reward_funcs=fns, args=trainer_args(cfg, output_dir, precision, spec),
                          advantage=spec, train_dataset=dataset, processing_class=tok, peft_config=peft_config,
                          callbacks=list(callbacks))
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def run_trainer(trainer: Any, resume_from: Path | None, interrupt: Any) -> bool:
    """``trainer.train()`` under the Ctrl-C handler; returns True when it was interrupted.

    First Ctrl-C: the step finishes, a checkpoint is saved, training stops (``interrupt``).
    Second Ctrl-C: stop at once and save the last completed step's state as ``checkpoint-<step>``.
    """
    try:
        with interrupt:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        step = trainer.state.global_step
        _stderr(f"stopping now: saving checkpoint-{step}")
        if step > 0:
            trainer._save_checkpoint(trainer.model, trial=None)
        return True
    return interrupt.interrupted


def run_eval(cfg: TrainConfig, task: Task, model: Any, tok: Any, rows: Sequence[dict], path: Path,
             precision: Precision) -> dict:
    """The task's held-out eval of ``model`` on ``rows``; written to ``path`` (records included)."""
    with autocast(precision, model), merged_lora(model):  # LoRA merged, as `rvpo eval` loads a run
        res = task.evaluate(model, tok, rows, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                            **eval_options(cfg, task)[0])
    write_json(path, res)
    return res


def eval_options(cfg: TrainConfig, task: Task) -> tuple[dict[str, Any], str]:
    """The sampling keywords (``temperature``, ``samples``, ``seed``) the task's ``evaluate`` accepts,
    and a note naming those set away from greedy that it does not (it then evaluates greedily)."""
    wanted = {"temperature": cfg.eval.temperature, "samples": cfg.eval.samples, "seed": cfg.eval.seed}
    kw = {k: v for k, v in wanted.items() if accepts_keyword(task.evaluate, k)}
    dropped = [k for k in ("temperature", "samples") if k not in kw and wanted[k] != GREEDY_EVAL[k]]
    note = (f"eval: task {task.name!r} evaluates greedily, one answer a prompt (its evaluate() takes no "
            f"{', '.join(dropped)}); eval.{dropped[0]} is ignored") if dropped else ""
    return kw, note


def warm_start_stage(cfg: TrainConfig, task: Task, model: Any, tok: Any, train_rows: Sequence[dict],
                     eval_rows: Sequence[dict], run_dir: Path, resume: Any, log: Callable[[str], None],
                     precision: Precision, warm_started: list) -> tuple[Any, dict | None]:
    """Run (or, on resume, reload) the supervised warm start; evaluate after it if configured.

    Appends to ``warm_started`` when the model starts RL from a warm start."""
    if not cfg.warmstart.enabled:
        return model, None
    if not any(row.get("gold") for row in train_rows):
        log(f"warm start: skipped (task {task.name!r} gives no gold answers for these rows)")
        return model, None
    warm_started.append(True)
    if resume and (run_dir / "warmstart").is_dir():
        model = load_warm_start(cfg, model, run_dir / "warmstart")
    elif cfg.warmstart.from_dir:
        if not Path(cfg.warmstart.from_dir).is_dir():
            raise ConfigError(f"config field 'warmstart.from_dir': no such folder {cfg.warmstart.from_dir!r}")
        log(f"warm start: reusing {cfg.warmstart.from_dir}")
        model = load_warm_start(cfg, model, Path(cfg.warmstart.from_dir))
    else:
        ws = cfg.warmstart
        log(f"warm start: {ws.steps} SFT steps x {ws.batch_size} gold answers, lr {ws.learning_rate:g}")
        model = warm_start(cfg, model, tok, train_rows, run_dir, precision)
    path = run_dir / "eval_warmstart.json"
    if not (cfg.warmstart.eval and eval_rows):
        return model, None
    if path.is_file():
        return model, json.loads(path.read_text())
    log("eval after the warm start")
    return model, run_eval(cfg, task, model, tok, eval_rows, path, precision)


# ----------------------------------------------------------------------------- the run


def train(
    cfg: TrainConfig,
    resume: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = _stderr,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> TrainResult:
    """Run (or resume) one training run end to end; see the module docstring for the stages.

    Args:
        cfg: a validated config (for ``resume``, normally the run directory's own config).
        resume: a run directory to continue from its latest checkpoint (a folder with no checkpoint
            yet, e.g. made by ``rvpo experiment``, starts fresh in that folder).
        callbacks: extra transformers ``TrainerCallback`` objects (tests, custom logging).
        log: where stage messages go (stderr by default).
        progress: show the tqdm progress bar.
        run_dir: start a fresh run in exactly this (empty or new) folder instead of
            ``<cfg.out>/train-<timestamp>`` (experiments use fixed names).

    Resuming a run that already finished ``cfg.steps`` steps does nothing (``already_finished``);
    a larger ``cfg.steps`` continues it. A fresh run whose start fails (bad data, a missing model,
    Ctrl-C before anything was produced) leaves no run folder behind.
    """
    if resume is not None:
        done = finished_step(Path(resume))
        if done is not None and done >= cfg.steps:
            log(f"{resume}: already finished at step {done} of {cfg.steps}; nothing to do "
                f"(pass --steps N with N > {done} to train further)")
            return TrainResult(run_dir=Path(resume), already_finished=True, last_step=done)
    check_run_root(cfg.out if run_dir is None else Path(run_dir).parent)
    fresh: list[Path] = []
    try:
        return _train(cfg, resume, callbacks, log, progress, run_dir, fresh)
    except BaseException:
        if fresh:
            remove_if_unstarted(fresh[0], ("config.yaml",))
        raise


def _train(cfg: TrainConfig, resume: str | Path | None, callbacks: Sequence[Any], log: Callable[[str], None],
           progress: bool, run_dir_arg: str | Path | None, fresh: list[Path]) -> TrainResult:
    from rvpo.train.callbacks import (  # deferred: optional dependency transformers (only training needs it)
        GracefulInterrupt,
        MetricsWriter,
        ProgressBar,
        TaskMetrics,
    )

    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = round(time.perf_counter() - t0, 1)
        return time.perf_counter()

    # validate and load everything before a run folder exists
    task = load_task(cfg)
    precision = resolve_precision(cfg)
    t = time.perf_counter()
    train_rows, eval_rows = load_data(cfg, task)
    rewards = reward_funcs(cfg, task)  # checks advantage.weights against the task's channels; built once
    check_warm_start_source(cfg)  # an empty warmstart.from_dir fails here, before the model loads
    t = lap("data", t)
    model_path = models.resolve_model(cfg.model)  # first use of the embedded model converts it (~30 s)
    t = lap("model_resolve", t)
    model, tok = models.load_model_and_tokenizer(model_path, dtype=model_dtype(cfg, precision))
    check_lora_targets(cfg, model)
    t = lap("model_load", t)
    run_dir, resume_step = open_run_dir(cfg, resume, None if run_dir_arg is None else Path(run_dir_arg))
    if resume is None:
        fresh.append(run_dir)
    res = TrainResult(run_dir=run_dir, timings=timings, precision=precision, task=task)
    log(f"run dir: {run_dir}" + (f" (resuming after step {resume_step})" if resume_step else ""))
    log(f"task {task.name}; precision {precision.name} ({precision.reason})")
    note = eval_options(cfg, task)[1] if eval_rows else ""
    if note:
        log(note)

    with task.session(run_dir):
        before_path = run_dir / "eval_before.json"
        if eval_rows and before_path.is_file():
            res.eval_before = json.loads(before_path.read_text())
        elif eval_rows:
            how = ("greedy" if not eval_options(cfg, task)[0].get("temperature") else
                   f"temperature {cfg.eval.temperature:g}, {cfg.eval.samples} samples")
            log(f"eval before training: {len(eval_rows)} held-out prompts, {how}, {cfg.eval.max_new_tokens} tokens")
            res.eval_before = run_eval(cfg, task, model, tok, eval_rows, before_path, precision)
            t = lap("eval_before", t)

        ws: list = []
        model, res.eval_warmstart = warm_start_stage(cfg, task, model, tok, train_rows, eval_rows, run_dir, resume,
                                                     log, precision, ws)
        res.warm_started = bool(ws)
        t = lap("warmstart", t)

        metrics = MetricsWriter(run_dir / "metrics.jsonl")
        interrupt = GracefulInterrupt(log=log)
        task_metrics = TaskMetrics(task)
        bar = [ProgressBar(task_metrics=tuple(getattr(task, "progress_metrics", ()) or ()))] if progress else []
        cbs = [task_metrics, metrics, interrupt] + bar + list(callbacks)
        trainer = build_trainer(cfg, task, model, tok, train_rows, run_dir / "checkpoints", cbs, precision, rewards)
        task_metrics.trainer = trainer
        last = latest_checkpoint(run_dir) if resume else None
        log(f"training: {cfg.advantage.describe()}, {cfg.steps} steps x {cfg.prompts_per_step} prompts x "
            f"G={cfg.group_size}, {cfg.max_completion_length} tokens, " + ("LoRA" if cfg.lora.enabled else "full"))
        t = time.perf_counter()
        res.interrupted = run_trainer(trainer, last[1] if last else None, interrupt)
        (run_dir / INTERRUPTED).unlink(missing_ok=True)  # the checkpoint loaded and training ran
        t = lap("train", t)
        res.last_step = trainer.state.global_step

        if res.interrupted:
            ckpt = latest_checkpoint(run_dir)
            write_json(run_dir / INTERRUPTED, {"step": res.last_step, "checkpoint": str(ckpt[1]) if ckpt else None})
            log(f"interrupted after step {res.last_step}; continue with: rvpo train --resume {run_dir}")
        else:
            trainer.save_model(str(run_dir / "final"))
            tok.save_pretrained(str(run_dir / "final"))
            if eval_rows:
                log("eval after training")
                policy = trainer.model.merge_and_unload() if cfg.lora.enabled else trainer.model
                res.eval_after = run_eval(cfg, task, policy, tok, eval_rows, run_dir / "eval_after.json", precision)
                t = lap("eval_after", t)
    plot_metrics(run_dir / "metrics.jsonl", run_dir / "plots")
    timings["total"] = round(time.perf_counter() - t_start, 1)
    write_summary(run_dir, cfg, res, final_logs=metrics.final)
    log(f"summary: {run_dir / 'summary.md'}")
    return res
