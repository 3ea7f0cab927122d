"""Finding and loading trained policies: run directories, checkpoints, LoRA adapters.

A run directory (``rvpo train``) holds ``final/`` (the trained weights or LoRA adapter, written at
the end) and ``checkpoints/checkpoint-<step>/`` (HF Trainer checkpoints). :func:`load_policy`
accepts any of these, a plain model folder, or the embedded model's name, and returns a ready
``(model, tokenizer)``; a LoRA adapter is loaded onto its base model and merged (faster decoding).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

from rvpo.model import loading as models  # models.load_model_and_tokenizer is looked up per call (tests replace it)
from rvpo.model.precision import resolve_cached

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


def latest_checkpoint(folder: str | os.PathLike, warn: Any = None) -> tuple[int, Path] | None:
    """The highest-step intact checkpoint in ``folder`` (or its ``checkpoints/``), or None.

    A checkpoint with an unreadable file (:func:`checkpoint_problem`) is skipped with a warning
    naming the file and the checkpoint used instead (through ``warn``, default stderr; once per file).
    """
    folder = Path(folder)
    found = list_checkpoints(folder / "checkpoints") or list_checkpoints(folder)
    for i in range(len(found) - 1, -1, -1):
        problem = checkpoint_problem(found[i][1])
        if problem is None:
            return found[i]
        if problem not in _WARNED:
            _WARNED.add(problem)
            instead = next((f"checkpoint-{s}" for s, p in reversed(found[:i]) if checkpoint_problem(p) is None),
                           "none (training starts again from step 0)")
            msg = f"warning: corrupt checkpoint: {problem}; using the earlier intact checkpoint: {instead}"
            (warn or (lambda m: print(f"rvpo: {m}", file=sys.stderr, flush=True)))(msg)
    return None


_WARNED: set[str] = set()
_CHECKED: dict[tuple, str | None] = {}


def _file_problem(f: Path) -> str | None:
    """Why file ``f`` of a checkpoint is unreadable, or None (structure checks, no tensors loaded)."""
    size = f.stat().st_size
    if f.suffix == ".json":
        try:
            obj = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return f"not valid JSON ({' '.join(str(e).split())[:80]})"
        if f.name == "trainer_state.json" and not isinstance(obj, dict):
            return "not a JSON object (not a trainer state)"
    elif f.suffix == ".safetensors":
        with f.open("rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if n <= 0 or n > size - 8:
                return "not a safetensors file (bad header length; truncated or overwritten?)"
            try:
                header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                return "not a safetensors file (unreadable header)"
        if 8 + n + end != size:
            return f"safetensors data is {size - 8 - n} bytes, the header says {end} (truncated?)"
    elif f.suffix in (".pt", ".pth", ".bin"):
        if not zipfile.is_zipfile(f):
            return "not a torch.save archive (truncated or overwritten?)"
        try:
            with zipfile.ZipFile(f) as z:
                bad = z.testzip() if size < (1 << 30) else None  # CRC of every entry (a read of the file)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            return f"a broken torch.save archive ({e})"
        if bad is not None:
            return f"a broken torch.save archive (bad CRC in {bad})"
    return None


def checkpoint_problem(ckpt: str | os.PathLike) -> str | None:
    """``"<file>: <why>"`` for the first unreadable file of checkpoint folder ``ckpt``, or None if intact.

    Checked: ``*.json`` parse (``trainer_state.json`` has ``global_step``), ``*.safetensors`` headers
    and sizes, ``*.pt``/``*.pth``/``*.bin`` archives (CRC). Results are cached per file size and mtime.
    """
    ckpt = Path(ckpt)
    try:
        files = sorted(p for p in ckpt.iterdir() if p.is_file())
    except OSError as e:
        return f"{ckpt}: unreadable ({e.strerror or e})"
    if not (ckpt / "trainer_state.json").is_file():
        return f"{ckpt / 'trainer_state.json'}: missing"
    for f in files:
        try:
            st = f.stat()
            key = (str(f), st.st_size, st.st_mtime_ns)
            if key not in _CHECKED:
                _CHECKED[key] = _file_problem(f)
            why = _CHECKED[key]
        except OSError as e:
            why = f"unreadable ({e.strerror or e})"
        if why:
            return f"{f}: {why}"
    return None


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
    (``auto``, ``fp32``, ``bf16``; see :mod:`rvpo.model.precision`) sets the weights' dtype for inference;
    the choice is recorded as ``model.rvpo_precision``.
    """
    import torch  # deferred: torch (start-up time: the checkpoint helpers here need none)

    choice = resolve_cached(precision, "cuda" if torch.cuda.is_available() else "cpu")
    dtype = choice.dtype

    def done(model: Any, tok: Any) -> tuple[Any, Any]:
        model.rvpo_precision = choice
        return model, tok

    if name_or_path is None or not Path(os.fspath(name_or_path)).expanduser().is_dir():
        return done(*models.load_model_and_tokenizer(name_or_path, dtype=dtype))
    folder = policy_folder(name_or_path)
    if not (folder / "adapter_config.json").is_file():
        return done(*models.load_model_and_tokenizer(str(folder), dtype=dtype))
    from peft import PeftModel  # deferred: optional dependency peft (rvpo[trl]; LoRA adapters only)

    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    if Path(base).is_dir() and not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"model: LoRA base model folder {base!r} (from {folder}/adapter_config.json) is missing")
    model, tok = models.load_model_and_tokenizer(base, dtype=dtype)
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer  # deferred: optional dependency (rvpo[trl])

        tok = models.prepare_tokenizer(AutoTokenizer.from_pretrained(str(folder)))
    model = PeftModel.from_pretrained(model, str(folder))
    if merge:
        model = model.merge_and_unload()
    model.config._name_or_path = str(folder)
    return done(model, tok)


def is_peft(model: Any) -> bool:
    """Whether ``model`` is a peft model (False where peft is not installed)."""
    try:
        from peft import PeftModel  # deferred: optional dependency peft (rvpo[trl])
    except ImportError:  # pragma: no cover - peft is a dependency of the trl extra
        return False
    return isinstance(model, PeftModel)


@contextlib.contextmanager
def merged_lora(model: Any):
    """Within the block, every LoRA layer's base weight is ``W + scaling * B @ A`` and adapters are off.

    The merged weight is a new tensor computed in fp32 and stored in ``W``'s dtype; the original
    ``W`` tensor is swapped back untouched on exit (peft's merge/unmerge would round ``W`` twice
    per step, which drifts a bf16 base). Memory: one extra copy of the adapted weights. A model
    without LoRA layers is left as is. Only for inference (``torch.no_grad``): gradients would not
    reach the adapters.
    """
    if not is_peft(model):
        yield model
        return
    import torch  # deferred: torch (start-up time: the checkpoint helpers here need none)
    from peft.tuners.lora import LoraLayer  # deferred: optional dependency peft (rvpo[trl]; LoRA models only)

    swapped = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if not isinstance(module, LoraLayer) or module.merged or not hasattr(module, "get_delta_weight"):
                    continue
                base = module.get_base_layer()
                delta = sum(module.get_delta_weight(name).float() for name in module.active_adapters
                            if name in module.lora_A)
                if isinstance(delta, int):  # no active adapter on this layer
                    continue
                original = base.weight.data
                base.weight.data = (original.float() + delta).to(original.dtype)
                swapped.append((base, original))
        with model.disable_adapter():
            yield model
    finally:
        for base, original in swapped:
            base.weight.data = original
