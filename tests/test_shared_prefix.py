"""Prompts computed once per group (rvpo.integrations.shared_prefix) give TRL's numbers.

Checked against the unshared computation on a random 2-layer Llama with LoRA adapters (non-zero, so
the adapters matter): greedy generation token for token, per-token logprobs and entropies to float
rounding, and the LoRA gradients of a logprob sum; and one RVPOTrainer step with and without it.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from rvpo.integrations.shared_prefix import (  # noqa: E402
    shared_prefix_generation,
    shared_prefix_logps,
    supports_shared_prefix,
    unique_prompts,
)


def test_unique_prompts_keeps_first_appearance_order():
    ids = torch.tensor([[5, 6], [1, 2], [5, 6], [1, 2], [3, 3]])
    mask = torch.ones_like(ids)
    first, inverse = unique_prompts(ids, mask)
    assert first.tolist() == [0, 1, 4]
    assert inverse.tolist() == [0, 1, 0, 1, 2]
    assert torch.equal(ids[first][inverse], ids)
    # the same ids under another mask are another prompt
    mask2 = mask.clone()
    mask2[2, 0] = 0
    first2, _ = unique_prompts(ids, mask2)
    assert first2.tolist() == [0, 1, 2, 4]


def _peft_tiny(tiny_llama):
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(tiny_llama, temperature=0.7, outputs=("log_probs", "entropy"))
    torch.manual_seed(1)
    return get_peft_model(tiny_llama, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                 init_lora_weights=False))


def _batch(tok, G=3):
    tok.padding_side = "left"
    prompts = ["<|im_start|>user\nWrite about the sea and its long waves.<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"]
    return tok([p for p in prompts for _ in range(G)], return_tensors="pt", padding=True)


def test_generation_and_logps_equal_the_unshared_computation(tiny_llama, smollm2_tokenizer):
    model = _peft_tiny(tiny_llama)
    tok = smollm2_tokenizer
    enc = _batch(tok)
    assert supports_shared_prefix(model)
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        with shared_prefix_generation(model):
            shared = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "generate" not in model.__dict__  # the patch is gone
    assert torch.equal(plain, shared)

    P = enc["input_ids"].shape[1]
    C = plain.shape[1] - P
    mask = torch.cat([enc["attention_mask"], torch.ones(plain.shape[0], C, dtype=torch.long)], dim=1)
    mask[0, -3:] = 0  # a completion that ended early
    labels = plain.masked_fill(mask == 0, -100)
    labels[:, :-C] = -100
    model.train()
    ref = model(input_ids=plain, attention_mask=mask, labels=labels, fused_lm_head=True)
    logps, ent = shared_prefix_logps(model, plain, mask, C, temperature=0.7, compute_entropy=True)
    valid = mask[:, -C:].bool()
    assert logps.shape == ent.shape == (plain.shape[0], C)
    torch.testing.assert_close(logps[valid], ref.log_probs[:, -C:][valid], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ent[valid], ref.entropy[:, -C:][valid], atol=1e-4, rtol=1e-4)

    params = [p for p in model.parameters() if p.requires_grad]
    g_ref = torch.autograd.grad((ref.log_probs[:, -C:] * valid).sum(), params)
    g_new = torch.autograd.grad((logps * valid).sum(), params)
    for a, b in zip(g_ref, g_new, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)
    assert max(a.abs().max().item() for a in g_ref) > 0  # the comparison is not between zeros


def test_rvpo_trainer_step_same_loss_with_and_without(tiny_llama_dir, tmp_path):
    """One RVPOTrainer step (greedy-free: the same sampled batch by seed) with the shared prefix on and off."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rvpo.integrations.trl import RVPOConfig, RVPOTrainer

    def r_len(prompts, completions, **kw):
        return [min(len(c[0]["content"]) / 40.0, 1.0) for c in completions]

    def r_e(prompts, completions, **kw):
        return [c[0]["content"].count("e") / 10.0 for c in completions]

    rows = [{"prompt": [{"role": "user", "content": f"Say something about {w}."}]} for w in ("rain", "snow", "sun", "fog")]
    losses = {}
    for on in (False, True):
        tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        args = RVPOConfig(output_dir=str(tmp_path / str(on)), num_generations=4, per_device_train_batch_size=8,
                          max_completion_length=8, max_steps=1, learning_rate=1e-3, logging_steps=1,
                          save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
                          gradient_checkpointing=False, rvpo_shared_prefix=on)
        trainer = RVPOTrainer(model=model, reward_funcs=[r_len, r_e], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok)
        calls = []
        if on:
            import rvpo.integrations.trl as adapter

            orig = adapter.shared_prefix_logps

            def spy(*a, calls=calls, orig=orig, **kw):
                calls.append(1)
                return orig(*a, **kw)

            adapter.shared_prefix_logps = spy
        try:
            trainer.train()
        finally:
            if on:
                adapter.shared_prefix_logps = orig
        assert bool(calls) == on
        losses[on] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)
