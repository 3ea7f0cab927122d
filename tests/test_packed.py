"""Packed decode weights (rvpo.model.packed): the same products up to rounding, and nothing left behind.

Inside ``packed_linears`` a model must compute what it computes outside (LoRA adapters merged in,
weights packed for oneDNN), both on the few-row path of a decode step and on the many-row path of a
prefill; on leaving, every module must be exactly as before; where packing cannot apply, nothing
may change at all.
"""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from rvpo.model import packed  # noqa: E402
from rvpo.model.decoding import decode, resolved_config  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _model(lora: dict | None = None, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    if lora is not None:
        model = peft.get_peft_model(model, peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"], **lora))
        for name, p in model.named_parameters():
            if "lora_B" in name:  # peft starts B at 0: the adapter would change nothing
                torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _instance_forwards(model):
    return [name for name, m in model.named_modules() if "forward" in vars(m)]


@pytest.mark.parametrize("lora", [None, {}], ids=["plain", "lora"])
@pytest.mark.parametrize("rows", [3, 90], ids=["decode-rows", "prefill-rows"])
def test_packed_products_match_the_model(lora, rows):
    model = _model(lora)
    ids = torch.randint(3, 300, (1, rows)) if rows > packed.MAX_PACKED_ROWS else torch.randint(3, 300, (rows, 1))
    want = _logits(model, ids)
    with torch.no_grad(), packed.packed_linears(model, rows=rows) as n:
        got = model(ids).logits
    assert n == 2 * 7 + 1  # every projection of both layers, and the LM head
    assert not torch.equal(got, torch.zeros_like(got))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_the_adapter_is_merged_not_dropped():
    model = _model({})
    ids = torch.randint(3, 300, (4, 1))
    with torch.no_grad(), model.disable_adapter():
        base = model(ids).logits
    want = _logits(model, ids)
    assert (want - base).abs().max() > 1e-2  # the adapter matters for these logits
    with torch.no_grad(), packed.packed_linears(model, rows=4):
        got = model(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_leaving_the_block_restores_every_module_exactly():
    model = _model({})
    ids = torch.randint(3, 300, (2, 5))
    before = _logits(model, ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad(), packed.packed_linears(model, rows=2) as n:
        assert n > 0 and _instance_forwards(model)
    assert _instance_forwards(model) == []
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(_logits(model, ids), before)


def test_an_instance_forward_already_there_comes_back():
    model = _model(None)
    proj = model.model.layers[0].mlp.down_proj
    calls = []
    original = proj.forward

    def own(x):
        calls.append(x.shape)
        return original(x)

    proj.forward = own
    with torch.no_grad(), packed.packed_linears(model, rows=1):
        model(torch.tensor([[5]]))
    assert calls == []  # swapped inside the block
    assert proj.forward is own
    _logits(model, torch.tensor([[5]]))
    assert calls == [(1, 1, 128)]


def test_no_change_where_packing_cannot_apply():
    model = _model({})
    with packed.packed_linears(model, rows=2) as n:  # gradients on: a training forward
        assert n == 0 and _instance_forwards(model) == []
    model64 = _model(None).double()
    with torch.no_grad(), packed.packed_linears(model64, rows=2) as n:
        assert n == 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), packed.packed_linears(model, rows=2) as n:
        assert n == 0  # autocast's bf16 products stay autocast's


def test_lora_variants_keep_their_own_forward():
    model = _model({"use_dora": True})
    ids = torch.randint(3, 300, (3, 1))
    want = _logits(model, ids)
    with torch.no_grad(), packed.packed_linears(model, rows=3) as n:
        got = model(ids).logits
    assert n == 1  # only the LM head: every DoRA projection keeps peft's forward
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_merged_adapters_are_not_added_twice():
    model = _model({})
    ids = torch.randint(3, 300, (3, 1))
    want = _logits(model, ids)
    model.base_model.merge_adapter()
    with torch.no_grad(), packed.packed_linears(model, rows=3):
        got = model(ids).logits
    model.base_model.unmerge_adapter()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_greedy_decode_packed_or_not_gives_the_same_tokens():
    model = _model({}, seed=1)
    ids = torch.randint(3, 300, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    config = resolved_config(model, None, max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=0)
    plain = decode(model, ids, mask, config, pack=False)
    fast = decode(model, ids, mask, config, pack=True)
    assert _instance_forwards(model) == []
    assert torch.equal(plain, fast)
