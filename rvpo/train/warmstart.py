"""Supervised warm start before RL: a few TRL ``SFTTrainer`` steps on gold answers.

A policy that never produces the required output format gives every completion of a group the
same rewards, so every advantage is 0 and RL cannot start. The warm start trains on the first
``steps * batch_size`` training examples (prompt + gold completion, loss on the completion only),
saves the adapter (or weights) to ``<run_dir>/warmstart/`` and hands the model to the RL stage,
which keeps training the same LoRA adapter.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rvpo.integrations.shared_prefix import vocab_chunk
from rvpo.integrations.trl_sft import compact_lm_head
from rvpo.train.config import ConfigError, TrainConfig


def lora_config(cfg: TrainConfig) -> Any:
    """The run's peft ``LoraConfig`` (None when LoRA is disabled)."""
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig  # deferred: optional dependency (rvpo[trl])

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")


def warm_start(cfg: TrainConfig, model: Any, tok: Any, train_rows: Sequence[dict], out_dir: Path,
               precision: Any = None) -> Any:
    """SFT ``model`` on gold answers (rows' ``gold``); return the trained model (a peft model when LoRA is on).

    ``precision`` (:class:`rvpo.model.precision.Precision`): bf16 runs the SFT forward/backward under autocast.
    """
    import datasets  # deferred: optional dependency (rvpo[trl])
    from datasets import Dataset  # deferred: optional dependency (rvpo[trl])
    from transformers import PrinterCallback, ProgressCallback  # deferred: optional dependency (rvpo[trl])
    from trl import SFTConfig, SFTTrainer  # deferred: optional dependency (rvpo[trl])

    datasets.disable_progress_bars()  # per-map bars for a few dozen rows are noise next to ours
    ws = cfg.warmstart
    n = ws.steps * ws.batch_size
    rows = [{"prompt": ex["prompt"], "completion": [{"role": "assistant", "content": ex["gold"]}]}
            for ex in [r for r in train_rows if r.get("gold")][:n]]
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    args = SFTConfig(
        output_dir=str(out_dir / "sft-tmp"), use_cpu=not cuda, per_device_train_batch_size=ws.batch_size,
        max_steps=ws.steps, learning_rate=ws.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=max(1, ws.steps // 4), save_strategy="no", report_to="none",
        bf16=bool(precision is not None and precision.bf16), fp16=False,
        gradient_checkpointing=False, seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=True,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=lora_config(cfg))
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    # off the GPU, TRL would score the prompt positions too, in tiles sized for a GPU
    with compact_lm_head(vocab_chunk(torch.device("cuda" if cuda else "cpu"))):
        trainer.train()
    trainer.save_model(str(out_dir / "warmstart"))
    shutil.rmtree(out_dir / "sft-tmp", ignore_errors=True)  # save_strategy "no": only empty scaffolding
    return trainer.model


def load_warm_start(cfg: TrainConfig, model: Any, path: Path) -> Any:
    """A saved warm start (a ``warmstart/`` folder), ready to keep training."""
    path = Path(path)
    if not cfg.lora.enabled:
        from transformers import AutoModelForCausalLM  # deferred: optional dependency (rvpo[trl])

        return AutoModelForCausalLM.from_pretrained(str(path))
    from peft import PeftModel  # deferred: optional dependency (rvpo[trl])

    return PeftModel.from_pretrained(model, str(path), is_trainable=True)


def check_warm_start_source(cfg: Any) -> None:
    """``warmstart.from_dir``, when used, must be a saved warm start (checked before any model loads)."""
    ws = getattr(cfg, "warmstart", None)
    if ws is None or not ws.enabled or not ws.from_dir:
        return
    p = Path(ws.from_dir).expanduser()
    if not p.is_dir():
        raise ConfigError(f"config field 'warmstart.from_dir': no such folder {ws.from_dir!r}")
    if not ((p / "adapter_config.json").is_file() or (p / "config.json").is_file()):
        raise ConfigError(f"config field 'warmstart.from_dir': {ws.from_dir!r} holds no saved warm start "
                          "(no adapter_config.json or config.json; expected a run's warmstart/ folder)")
