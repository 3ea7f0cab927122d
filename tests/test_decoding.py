"""The lean decode loop (rvpo.model.decoding) against transformers' generate.

Greedy output must equal ``generate``'s token for token (same forward, same cache values); sampling
must draw from the distribution ``generate`` samples from (the processed scores' softmax); anything
the loop does not implement must go to ``generate`` unchanged.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, GenerationConfig
from transformers.cache_utils import DynamicLayer

from rvpo.integrations.shared_prefix import shared_prefix_generation
from rvpo.model.decoding import (
    GrowingLayer,
    decode,
    fast_generation,
    growing,
    logits_processors,
    plain_config,
    resolved_config,
    sample,
)


def _batch(tok):
    tok.padding_side = "left"
    prompts = ["<|im_start|>user\nWrite about the sea and its long waves.<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"]
    return tok(prompts, return_tensors="pt", padding=True)


def test_growing_layer_holds_what_dynamic_layer_holds():
    torch.manual_seed(0)
    plain, grown = DynamicLayer(), GrowingLayer(room=2)
    for t in (5, 1, 1, 3, 1, 1, 1, 8):  # a prefill, decode steps, a longer chunk: the buffer grows twice
        k, v = torch.randn(2, 3, t, 4), torch.randn(2, 3, t, 4)
        a, b = plain.update(k, v), grown.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert grown.get_seq_length() == plain.get_seq_length() == 21
    # code that assigns keys/values (a batch selection, a repeated shared prefix) is followed
    idx = torch.tensor([1, 1, 0])
    plain.batch_select_indices(idx)
    grown.batch_select_indices(idx)
    k, v = torch.randn(3, 3, 1, 4), torch.randn(3, 3, 1, 4)
    a, b = plain.update(k, v), grown.update(k, v)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    grown.crop(-4)
    plain.crop(-4)
    a, b = plain.update(k, v), grown.update(k, v)
    assert torch.equal(a[0], b[0]) and grown.get_seq_length() == 19


def test_growing_converts_only_plain_layers(tiny_llama):
    cache = growing(None, tiny_llama.config)
    assert all(type(layer) is GrowingLayer for layer in cache.layers)


def test_sample_draws_the_given_distribution():
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.0, 0.2, 0.3, 0.0])
    probs = torch.stack([p, p.flip(0)] * 20000)
    draws = sample(probs, g)
    for row, q in ((0, p), (1, p.flip(0))):
        freq = torch.bincount(draws[row::2], minlength=5).double() / 20000
        assert torch.all(freq[q == 0] == 0)  # never a zero-probability entry
        assert torch.allclose(freq, q.double(), atol=0.012)  # 4 sigma of a binomial at n=20000
    one_hot = torch.zeros(3, 49152)
    one_hot[torch.arange(3), torch.tensor([0, 777, 49151])] = 1.0
    assert sample(one_hot, g).tolist() == [0, 777, 49151]  # the ends of the vocabulary too


def test_greedy_decode_equals_generate(tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, tiny_llama.eval()
    enc = _batch(tok)
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        ref = model.generate(**enc, generation_config=cfg)
        out = decode(model, enc["input_ids"], enc["attention_mask"], resolved_config(model, cfg))
        assert torch.equal(out, ref)
        # an end token mid-way: that row continues with pad, and decoding stops when every row has ended
        P = enc["input_ids"].shape[1]
        eos = int(ref[0, P + 3])
        cfg_eos = GenerationConfig(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        ref = model.generate(**enc, generation_config=cfg_eos)
        out = decode(model, enc["input_ids"], enc["attention_mask"], resolved_config(model, cfg_eos))
    assert torch.equal(out, ref)
    assert (out[0, P + 4:] == tok.pad_token_id).all()


def test_sampling_keeps_the_processed_distribution(tiny_llama, smollm2_tokenizer):
    """top_k=1 leaves one token: sampling then is greedy decoding, through every warper."""
    tok, model = smollm2_tokenizer, tiny_llama.eval()
    enc = _batch(tok)
    greedy = GenerationConfig(max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    top1 = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=0.7, top_k=1, top_p=0.9, min_p=0.01,
                            pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        ref = model.generate(**enc, generation_config=greedy)
        out = decode(model, enc["input_ids"], enc["attention_mask"], resolved_config(model, top1))
    assert torch.equal(out, ref)
    names = [type(p).__name__ for p in logits_processors(resolved_config(model, top1))]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"]


def test_first_token_frequencies_match_softmax(tiny_llama, smollm2_tokenizer):
    """Sampled first tokens of one prompt follow softmax(logits / T) over the top_k = 5 likeliest (chi-square)."""
    tok, model = smollm2_tokenizer, tiny_llama.eval()
    enc = tok(["<|im_start|>user\nHi<|im_end|>\n"] * 400, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0, -1].float()
    top = torch.topk(logits, 5)
    T = float(top.values[0] - top.values[4]) / 2  # spreads the 5 over a few units of log-probability
    cfg = resolved_config(model, GenerationConfig(max_new_tokens=1, do_sample=True, temperature=T, top_k=5,
                                                  pad_token_id=tok.pad_token_id))
    torch.manual_seed(3)
    with torch.no_grad():
        firsts = torch.cat([decode(model, enc["input_ids"], enc["attention_mask"], cfg)[:, -1] for _ in range(3)])
    expected = torch.softmax(top.values / T, dim=-1).double() * firsts.numel()
    observed = torch.tensor([(firsts == t).sum().item() for t in top.indices], dtype=torch.float64)
    assert observed.sum() == firsts.numel()  # only the top 5 are ever drawn
    keep = expected > 5
    chi2 = (((observed - expected) ** 2) / expected)[keep].sum().item()
    assert keep.sum() >= 3 and chi2 < 18.5  # p = 0.001 at 4 degrees of freedom


def test_plain_config_names_what_it_does_not_implement(tiny_llama):
    trl_like = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=1.0, top_k=0, min_p=None,
                                repetition_penalty=1.0, pad_token_id=2, bos_token_id=1, eos_token_id=[2],
                                disable_compile=True)
    assert plain_config(resolved_config(tiny_llama, trl_like)) is None
    for extra in ({"num_beams": 2}, {"min_new_tokens": 3}, {"no_repeat_ngram_size": 2}, {"typical_p": 0.5}):
        cfg = GenerationConfig(max_new_tokens=8, do_sample=True, **extra)
        assert plain_config(resolved_config(tiny_llama, cfg)).startswith(next(iter(extra)))
    assert plain_config(GenerationConfig(do_sample=False)) == "max_new_tokens (unset)"


def test_fast_generation_hands_other_settings_to_generate(tiny_llama, smollm2_tokenizer):
    tok, model = smollm2_tokenizer, tiny_llama.eval()
    enc = _batch(tok)
    calls = []
    original = model.generate

    def spy(*a, **kw):
        calls.append(kw.get("generation_config"))
        return original(*a, **kw)

    model.generate = spy
    try:
        with torch.no_grad(), fast_generation(model):
            model.generate(**enc, generation_config=GenerationConfig(max_new_tokens=4, do_sample=False))
            assert calls == []  # decoded by the loop
            beams = GenerationConfig(max_new_tokens=4, num_beams=2, do_sample=False)
            model.generate(**enc, generation_config=beams)
            assert calls == [beams]
        assert model.generate is spy  # the instance attribute that was there is restored
    finally:
        del model.generate


def test_shared_prefix_and_fast_decode_nest(tiny_llama, smollm2_tokenizer):
    """The RL path: fast decode entered first, the shared prefix around it hands it the pre-filled cache."""
    tok, model = smollm2_tokenizer, tiny_llama.eval()
    tok.padding_side = "left"
    enc = tok(["<|im_start|>user\nHi there<|im_end|>\n"] * 3 + ["<|im_start|>user\nWhy?<|im_end|>\n"] * 3,
              return_tensors="pt", padding=True)
    cfg = GenerationConfig(max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    seen = []
    with torch.no_grad():
        ref = model.generate(**enc, generation_config=cfg)
        with fast_generation(model), shared_prefix_generation(model):
            import rvpo.model.decoding as decoding

            real = decoding.decode

            def spy(m, ids, mask, config, cache=None, **kw):
                seen.append(None if cache is None else cache.get_seq_length())
                return real(m, ids, mask, config, cache=cache, **kw)

            decoding.decode = spy
            try:
                out = model.generate(**enc, generation_config=cfg)
            finally:
                decoding.decode = real
    assert "generate" not in vars(model)
    assert seen == [enc["input_ids"].shape[1] - 1]  # decode got the shared prompt cache
    assert torch.equal(out, ref)


def test_decode_refuses_a_cache_longer_than_the_prompt(tiny_llama):
    ids = torch.tensor([[5, 6, 7]])
    cache = DynamicCache(config=tiny_llama.config)
    with torch.no_grad():
        tiny_llama(input_ids=torch.tensor([[5, 6, 7, 8]]), cache=cache, use_cache=True)
    cfg = resolved_config(tiny_llama, GenerationConfig(max_new_tokens=2, do_sample=False, pad_token_id=0))
    with pytest.raises(ValueError, match="holds 4 positions"):
        decode(tiny_llama, ids, None, cfg, cache=cache)


@pytest.mark.parametrize("on", [True, False])
def test_rvpo_trainer_samples_with_the_loop_when_asked(tiny_llama_dir, tmp_path, monkeypatch, on):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rvpo.model.decoding as decoding
    from rvpo.integrations.trl import RVPOConfig, RVPOTrainer

    calls = []
    real = decoding.decode

    def spy(*a, **kw):
        calls.append(kw.get("cache") is not None)  # the shared prefix pre-filled the prompts
        return real(*a, **kw)

    monkeypatch.setattr(decoding, "decode", spy)
    rows = [{"prompt": [{"role": "user", "content": f"Say something about {w}."}]} for w in ("rain", "snow")]
    args = RVPOConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=8,
                      max_completion_length=6, max_steps=1, learning_rate=1e-3, save_strategy="no", report_to="none",
                      use_cpu=True, seed=0, disable_tqdm=True, gradient_checkpointing=False, rvpo_fast_decode=on)
    trainer = RVPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                          reward_funcs=[lambda completions, **kw: [float(len(c[0]["content"])) for c in completions]],
                          args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(tiny_llama_dir))
    trainer.train()
    assert calls == ([True] if on else [])
    assert "generate" not in vars(trainer.model)
