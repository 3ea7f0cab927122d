"""compact_lm_head: TRL's fused LM head skips unlabelled positions on the CPU, with the same loss and gradients."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


def _fused_loss(model, ids, labels, spy):
    """The fused head's loss and the gradient of the last layer's down projection."""
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grad = model.model.layers[-1].mlp.down_proj.weight.grad.clone()
    return out.loss.detach(), out.log_probs.detach(), grad, spy[-1]


def test_compact_head_scores_only_labelled_positions_with_the_same_loss(tiny_llama, monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils

    from rvpo.integrations.trl_sft import compact_lm_head

    seen: list[int] = []
    chunks: list[int] = []
    real = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            seen.append(hidden.shape[0])  # positions sent through the vocabulary projection
            chunks.append(args[4])  # vocabulary columns per tile
            return real.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    trl_utils.add_fused_lm_head(tiny_llama, outputs=("log_probs",))
    torch.manual_seed(1)
    ids = torch.randint(0, 1000, (3, 12))
    labels = ids.clone()
    labels[:, :8] = -100  # a prompt of 8 tokens
    labels[2, 10:] = -100  # and padding at the end of one row
    full = _fused_loss(tiny_llama, ids, labels, seen)
    original, chunk = trl_utils._use_triton, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE
    with compact_lm_head(vocab_chunk=256) as active:
        assert active
        compact = _fused_loss(tiny_llama, ids, labels, seen)
    assert trl_utils._use_triton is original and trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == chunk  # restored
    assert chunks == [chunk, 256]  # smaller tiles inside the block: the same sums, in more pieces
    assert full[3] == 3 * 11 and compact[3] == int((labels[:, 1:] != -100).sum()) == 4 + 4 + 2
    assert torch.allclose(full[0], compact[0], atol=1e-6)
    assert torch.allclose(full[1], compact[1], atol=1e-6)
    assert torch.allclose(full[2], compact[2], atol=1e-6)


def test_compact_head_is_a_no_op_on_an_untested_trl(monkeypatch):
    import trl
    import trl.trainer.utils as trl_utils

    from rvpo.integrations.trl_sft import compact_lm_head

    monkeypatch.setattr(trl, "__version__", "1.99.0")
    original = trl_utils._use_triton
    with compact_lm_head() as active:
        assert not active and trl_utils._use_triton is original
