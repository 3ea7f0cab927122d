"""Precision: the auto decision (capability report and micro-benchmark mocked), bf16 loading, and
sampling from merged LoRA weights (same policy, base weights restored bit for bit)."""

from __future__ import annotations

import pytest
import torch

from rvpo.model.precision import MIN_SPEEDUP, Precision, autocast, resolve


def _never():
    raise AssertionError("the micro-benchmark must not run here")


def test_auto_without_bf16_units_is_fp32_and_skips_the_benchmark():
    p = resolve("auto", "cpu", units=lambda: (False, "none"), bench=_never)
    assert p.name == "fp32" and p.dtype == torch.float32 and "no native bf16" in p.reason


@pytest.mark.parametrize("speedup, expected", [(4.1, "bf16"), (MIN_SPEEDUP, "bf16"), (1.2, "fp32"), (0.4, "fp32")])
def test_auto_with_bf16_units_follows_the_measured_speedup(speedup, expected):
    p = resolve("auto", "cpu", units=lambda: (True, "avx512_bf16"), bench=lambda: speedup)
    assert p.name == expected and p.speedup == speedup and "avx512_bf16" in p.reason


def test_explicit_choices_are_taken_as_asked_and_bad_names_rejected():
    assert resolve("fp32", "cpu", units=_never, bench=_never).name == "fp32"
    assert resolve("bf16", "cpu", units=_never, bench=_never).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision: expected one of auto, fp32, bf16"):
        resolve("fp16", "cpu")


def test_autocast_is_a_no_op_for_fp32_and_bf16_for_bf16():
    with autocast(Precision("fp32", "x")):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(Precision("bf16", "x")):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16


def test_load_policy_honours_precision(tiny_llama_dir):
    from rvpo.model.policy import load_policy

    m16, _ = load_policy(tiny_llama_dir, precision="bf16")
    m32, _ = load_policy(tiny_llama_dir, precision="fp32")
    assert {p.dtype for p in m16.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in m32.parameters()} == {torch.float32}
    assert m16.rvpo_precision.name == "bf16"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_lora_matches_the_adapters_and_restores_the_base_exactly(tiny_llama_dir, dtype):
    from peft import LoraConfig, get_peft_model

    from rvpo.model.loading import load_model_and_tokenizer
    from rvpo.model.policy import merged_lora

    model, _ = load_model_and_tokenizer(tiny_llama_dir, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0: give the adapters an effect
            p.data.normal_(0, 0.05)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(3, 1000, (2, 12))
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits.float()
        with merged_lora(model):
            merged = model(input_ids=ids).logits.float()
        with model.disable_adapter():
            base_only = model(input_ids=ids).logits.float()
    effect = (base_only - ref).abs().max()  # what the adapters change in the logits
    err = (merged - ref).abs().max()
    print(f"{dtype}: adapter effect {effect:.4f}, merged vs unmerged {err:.5f}")
    assert err < (1e-3 if dtype == torch.float32 else 0.05) * effect  # merged = the adapted policy, to rounding
    for n, p in model.named_parameters():  # every weight is back, bit for bit
        assert torch.equal(p, before[n]), n
