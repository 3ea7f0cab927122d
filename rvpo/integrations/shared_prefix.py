"""Compute a prompt once for its G completions: in sampling and in the policy's logprob pass.

A GRPO batch holds each prompt G times (TRL's sampler repeats it), so a plain forward spends
``(G - 1) / G`` of its prompt tokens on copies. On a CPU, where the forward is FLOP-bound, and with
prompts longer than completions (a chat template's system message alone is ~20 tokens), that is
most of the step. Both functions here run the transformer once over the ``U`` distinct prompts,
repeat the resulting key/value cache ``B / U`` times, and run the completions on top of it:

* :func:`generate_shared_prefix` — ``model.generate`` with the prompts pre-filled once.
* :func:`shared_prefix_logps` — the per-token logprobs (and entropies) TRL's
  ``_get_per_token_logps_and_entropies`` returns, with gradients flowing through the shared cache
  back into the prompt's computation (the cache's repeat is an ordinary differentiable index). Only
  completion positions go through the LM head (TRL's fused head scores every position off-GPU).

Numerics: the same positions (``arange`` over the padded row, as TRL's own forward uses), the same
attention mask and the same chunked logprob kernel (``trl.kernels.ChunkedLogProbFunction``) as TRL,
so results equal TRL's up to float summation order (tested: ``tests/test_shared_prefix.py``).

Notation: ``B`` rows (prompts x G), ``U`` distinct prompts, ``P`` padded prompt length, ``C``
completion length (``logits_to_keep``), ``H`` hidden size.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from rvpo.model.generation import patched_generate


def unique_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, inverse)``: row indices of the ``U`` distinct (ids, mask) rows, and for each of the ``B``
    rows the index of its distinct row, so ``prompt_ids[first][inverse] == prompt_ids``.

    ``prompt_ids``, ``prompt_mask``: ``(B, P)``. Order of first appearance is kept.
    """
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    # torch.unique sorts; renumber by first appearance so the shared rows keep the batch order
    order: dict[int, int] = {}
    firsts: list[int] = []
    remap = []
    for i, u in enumerate(inverse.tolist()):
        if u not in order:
            order[u] = len(firsts)
            firsts.append(i)
        remap.append(order[u])
    device = prompt_ids.device
    return torch.tensor(firsts, device=device), torch.tensor(remap, device=device)


def _cache_of(output: Any) -> Any:
    """The key/value cache of a model output (``cache`` in transformers 5; ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _repeat_cache(cache: Any, index: torch.Tensor) -> Any:
    """Select batch rows ``index`` of every layer of a transformers ``DynamicCache`` (differentiable)."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)
        layer.values = layer.values.index_select(0, index)
    return cache


def _backbone_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder stack (returns ``last_hidden_state``, takes ``cache``) and the LM head of a causal LM,
    looking through a peft wrapper (its LoRA layers live inside the same modules)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.base_model, base.get_output_embeddings()


def supports_shared_prefix(model: Any) -> bool:
    """True for a plain decoder-only text model whose logits need no scaling or soft-capping, trained
    without gradient checkpointing (the others fall back to TRL's own path)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "is_encoder_decoder", False):
        return False
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    if text is not cfg:  # vision-language models: their own input handling
        return False
    for attr in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                 "logits_scaling", "output_router_logits"):
        if getattr(text, attr, None):
            return False
    if getattr(base, "is_gradient_checkpointing", False):  # recomputed layers would write the cache twice
        return False
    return base.get_output_embeddings() is not None and hasattr(base, "base_model")


def shared_prefix_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                        temperature: float = 1.0, compute_entropy: bool = False,
                        lm_head_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs of the last ``C = logits_to_keep`` tokens of each row, prompts computed once.

    Args:
        model: a causal LM (optionally peft-wrapped); train or eval mode as the caller wants.
        input_ids, attention_mask: ``(B, P + C)``, prompts left-padded, completions right-padded (TRL's layout).
        logits_to_keep: ``C``.
        temperature: logits are divided by it (TRL's sampling temperature).
        compute_entropy: also return the per-token entropy of the tempered distribution.
        lm_head_fp32: run the LM head in fp32 outside autocast (TRL's ``cast_lm_head_to_fp32``).

    Returns:
        ``(logps (B, C), entropy (B, C) or None)``; values at padded completion positions are
        computed like any other (the caller masks them, as TRL does).
    """
    from trl.kernels import ChunkedLogProbFunction  # deferred: optional dependency trl (rvpo[trl])

    C = int(logits_to_keep)
    B, T = input_ids.shape
    P = T - C
    if P < 1 or C < 1:
        raise ValueError(f"shared_prefix_logps: need a prompt and a completion, got {T} tokens and logits_to_keep={C}")
    backbone, head = _backbone_and_head(model)
    first, inverse = unique_prompts(input_ids[:, :P], attention_mask[:, :P])
    from transformers import DynamicCache  # deferred: optional dependency transformers (rvpo[trl])

    pre = backbone(input_ids=input_ids[first, :P], attention_mask=attention_mask[first, :P],
                   cache=DynamicCache(config=backbone.config), use_cache=True)
    cache = _repeat_cache(_cache_of(pre), inverse)
    post = backbone(input_ids=input_ids[:, P:], attention_mask=attention_mask, cache=cache, use_cache=True)
    # token P + t is predicted by position P + t - 1: the last prompt position, then completion positions
    hidden = torch.cat([pre.last_hidden_state[:, -1:].index_select(0, inverse), post.last_hidden_state[:, :-1]], dim=1)
    targets = input_ids[:, P:]
    weight = head.weight.to(hidden.device)
    ctx = contextlib.nullcontext()
    if lm_head_fp32:
        hidden = hidden.float()
        ctx = torch.autocast(hidden.device.type, enabled=False)
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
    with ctx:
        logps, entropy, *_ = ChunkedLogProbFunction.apply(hidden.reshape(B * C, -1), weight, head.bias,
                                                          targets.reshape(-1), float(temperature),
                                                          vocab_chunk(hidden.device), None, 1.0, outputs)
    return logps.view(B, C), (entropy.view(B, C) if compute_entropy and entropy is not None else None)


def vocab_chunk(device: torch.device) -> int:
    """Vocabulary columns per tile of the chunked logprob kernel. On a GPU, TRL's 32768. On a CPU the
    tile's several passes (scale, max, exp, sum) run at memory speed unless it stays in cache:
    768 completion tokens x 2048 columns took 1.0 s forward and backward here, against 2.2 s at 32768."""
    return 2048 if device.type == "cpu" else 32768


@torch.no_grad()
def generate_shared_prefix(generate: Any, model: Any, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
    """``generate(input_ids=..., attention_mask=..., **kwargs)`` with each distinct prompt pre-filled once.

    ``generate`` is the model's original ``generate``; ``model`` the module whose forward fills the
    cache (the same weights). The first ``P - 1`` tokens of the ``U`` distinct prompts are run once
    (positions from the attention mask, as ``generate`` computes them), the cache is repeated to
    ``B`` rows, and ``generate`` continues from it (it then feeds only the last prompt token).
    Falls back to a plain call when no prompt repeats or a cache is already given.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    first, inverse = unique_prompts(input_ids, attention_mask)
    P = input_ids.shape[1]
    if first.numel() == input_ids.shape[0] or P < 2 or "cache" in kwargs or "past_key_values" in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    mask = attention_mask[first, : P - 1]
    position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(input_ids=input_ids[first, : P - 1], attention_mask=mask, position_ids=position_ids,
                use_cache=True, logits_to_keep=1)
    cache = _repeat_cache(_cache_of(out), inverse)
    return generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)


def shared_prefix_generation(model: Any) -> contextlib.AbstractContextManager[Any]:
    """Within the block, ``model.generate`` pre-fills each distinct prompt once (:func:`generate_shared_prefix`)."""

    def wrap(original: Any) -> Any:
        def generate(**kwargs: Any) -> torch.Tensor:
            if kwargs.get("inputs_embeds") is not None:
                return original(**kwargs)
            return generate_shared_prefix(original, model, kwargs.pop("input_ids"),
                                          kwargs.pop("attention_mask", None), **kwargs)
        return generate

    return patched_generate(model, wrap)
