"""benchmarks/gpu_smoke.py in its tiny CPU mode: the GPU check's code path runs end to end here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_cpu_mode_trains_and_times_the_core(tmp_path, capsys):
    mod = _load()
    out = tmp_path / "smoke.json"
    assert mod.main(["--tiny", "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["trainer"]["steps"] == 1 and res["trainer"]["finite"]
    assert res["trainer"]["gen_tokens_per_s"] > 0
    assert res["core"]["n"] == 4096 and res["core"]["rvpo_finite"] and res["core"]["gdpo_s"] > 0
    assert "RVPOTrainer: 1 steps" in capsys.readouterr().out


def test_full_size_refuses_a_cpu_without_tiny(capsys):
    mod = _load()
    assert mod.main(["--device", "cpu"]) == 2
    assert "--tiny" in capsys.readouterr().err


def test_architecture_is_the_default_models(smollm2_dir):
    """The random model has the embedded default's shapes (read from its converted config)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(smollm2_dir)
    arch = _load().SMOLLM2_135M
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "tie_word_embeddings"):
        assert getattr(cfg, key) == arch[key], key
