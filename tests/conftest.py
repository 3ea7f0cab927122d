"""Shared fixtures: the embedded SmolLM2 converted ONCE per test session (about 25 s), and a tiny policy."""

from __future__ import annotations

import os
import time
from pathlib import Path

# Before torch is imported: OpenMP threads that spin while waiting make torch 10-20x slower when the
# 2 cores are shared with other processes (measured: 8-token generation 2 s -> 21-41 s). Passive
# waiting costs nothing measurable on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def smollm2_conversion(tmp_path_factory):
    """``(folder, cache_dir, seconds)``: SmolLM2-135M-Instruct converted from its GGUF into a fresh cache."""
    from rvpo.model.loading import resolve_model

    cache = tmp_path_factory.mktemp("rvpo_models")
    t0 = time.perf_counter()
    folder = resolve_model(None, cache_dir=cache)
    return folder, cache, time.perf_counter() - t0


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_conversion) -> str:
    """Folder of the converted SmolLM2-135M-Instruct (safetensors + tokenizer with chat template)."""
    return smollm2_conversion[0]


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    """SmolLM2's tokenizer (pad token set, left padding). Callers must not mutate it."""
    from transformers import AutoTokenizer

    from rvpo.model.loading import prepare_tokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(smollm2_dir))


@pytest.fixture
def tiny_llama(smollm2_tokenizer):
    """A fresh random 2-layer LlamaForCausalLM (hidden 64) over SmolLM2's vocabulary; seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = smollm2_tokenizer
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> str:
    """A saved model folder: random 2-layer LlamaForCausalLM (hidden 64) + SmolLM2's tokenizer; seeded.

    For end-to-end tests of ``rvpo train`` / ``rvpo eval`` that need a loadable model path but not
    a good policy (one training step takes well under a second).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


# ----------------------------------------------------------------------------- public data

SHARED_DATA = Path(os.environ.get("RVPO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
"""The public data sets (../shared/data beside the checkout; CI has it, a user's plain clone does not)."""


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.needs_shared("healthbench")``: skip, naming the folder, when that data is absent."""
    for item in items:
        for mark in item.iter_markers("needs_shared"):
            folder = SHARED_DATA / mark.args[0]
            if not folder.is_dir():
                item.add_marker(pytest.mark.skip(reason=f"needs the public data folder {folder} (absent: a plain "
                                                        "clone has no ../shared; CI runs this test)"))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """(tests/test_bad_inputs*.py) A fresh working folder, a clean judge environment, and model loading forbidden."""
    import rvpo.model.loading

    def no_llm(*a, **k):
        raise AssertionError("an LLM was loaded: a bad input must be rejected before that")

    monkeypatch.setattr(rvpo.model.loading, "load_model_and_tokenizer", no_llm)
    monkeypatch.setattr(rvpo.model.loading, "ensure_converted", no_llm)
    for var in ("RVPO_JUDGE_BASE_URL", "OPENAI_BASE_URL", "RVPO_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RVPO_JUDGE_CACHE", str(tmp_path / "cache" / "judge.sqlite"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
