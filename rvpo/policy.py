"""Finding and loading trained policies: run directories, checkpoints, LoRA adapters.

A run directory (``rvpo train``) holds ``final/`` (the trained weights or LoRA adapter, written at
the end) and ``checkpoints/checkpoint-<step>/`` (HF Trainer checkpoints). :func:`load_policy`
accepts any of these, a plain model folder, or the embedded model's name, and returns a ready
``(model, tokenizer)``; a LoRA adapter is loaded onto its base model and merged (faster decoding).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the ``checkpoint-<step>`` folders in ``folder`` with a trainer state, by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(folder: str | os.PathLike) -> tuple[int, Path] | None:
    """The highest-step complete checkpoint in ``folder`` (or its ``checkpoints/``), or None."""
    folder = Path(folder)
    found = list_checkpoints(folder / "checkpoints") or list_checkpoints(folder)
    return found[-1] if found else None


def policy_folder(path: str | os.PathLike) -> Path:
    """The weights folder a run directory / checkpoint / model folder stands for.

    A run directory gives its ``final/`` (else its latest checkpoint); a checkpoint or model
    folder is returned as is. Raises ``FileNotFoundError`` when nothing loadable is there.
    """
    p = Path(path).expanduser()
    if (p / "adapter_config.json").is_file() or (p / "config.json").is_file():
        return p
    if (p / "final").is_dir():
        return p / "final"
    last = latest_checkpoint(p)
    if last is not None:
        return last[1]
    raise FileNotFoundError(
        f"model: {str(path)!r} holds no model (config.json), LoRA adapter (adapter_config.json), "
        "final/ or checkpoints/checkpoint-<step>/"
    )


def load_policy(name_or_path: str | os.PathLike | None = None, merge: bool = True,
                precision: str = "auto") -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a model name/folder, a run directory or a checkpoint.

    LoRA adapters (``adapter_config.json``) are applied to the base model recorded in the adapter
    config (``base_model_name_or_path``) and, with ``merge=True``, merged into it. ``precision``
    (``auto``, ``fp32``, ``bf16``; see :mod:`rvpo.precision`) sets the weights' dtype for inference;
    the choice is recorded as ``model.rvpo_precision``.
    """
    import torch

    from rvpo.models import load_model_and_tokenizer, prepare_tokenizer
    from rvpo.precision import resolve_cached

    choice = resolve_cached(precision, "cuda" if torch.cuda.is_available() else "cpu")
    dtype = choice.dtype

    def done(model: Any, tok: Any) -> tuple[Any, Any]:
        model.rvpo_precision = choice
        return model, tok

    if name_or_path is None or not Path(os.fspath(name_or_path)).expanduser().is_dir():
        return done(*load_model_and_tokenizer(name_or_path, dtype=dtype))
    folder = policy_folder(name_or_path)
    if not (folder / "adapter_config.json").is_file():
        return done(*load_model_and_tokenizer(str(folder), dtype=dtype))
    from peft import PeftModel

    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    if Path(base).is_dir() and not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"model: LoRA base model folder {base!r} (from {folder}/adapter_config.json) is missing")
    model, tok = load_model_and_tokenizer(base, dtype=dtype)
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = prepare_tokenizer(AutoTokenizer.from_pretrained(str(folder)))
    model = PeftModel.from_pretrained(model, str(folder))
    if merge:
        model = model.merge_and_unload()
    model.config._name_or_path = str(folder)
    return done(model, tok)
