"""A lean decode loop for sampling and greedy decoding on the CPU (RL rollouts and evals).

``transformers``' ``generate`` serves every decoding strategy. At the batch sizes of RL on a CPU
(4-32 rows) three of its habits cost about a quarter of the decode time (docs/train.md, "Step speed"):

* ``DynamicCache`` concatenates: every token copies the whole key/value cache of every layer.
  :class:`GrowingLayer` writes a token in place into a buffer with room to grow.
* ``torch.multinomial`` draws one exponential variate per vocabulary entry: 49k per row, every
  token. :func:`sample` draws one uniform variate per row and inverts the CDF.
* the per-token bookkeeping of a general loop (stopping criteria objects, unused processors).

:func:`decode` runs the model's forward exactly as ``generate`` does (same positions, same mask,
same cache values, fp32 scores), so greedy output is identical to ``generate``'s (tested), and it
samples from the same distribution: ``softmax`` of the scores after the same logits processors
(repetition penalty, temperature, top-k, top-p, min-p; ``transformers``' own classes, in
``generate``'s order). The sampled tokens differ from ``generate``'s for the same seed, because the
random numbers are used differently. Any other generation setting (beams, stop strings, ...) makes
:func:`fast_generate` hand the call to ``generate`` unchanged: :func:`plain_config` says which.

A fourth cost is the weights' own: at 12 rows MKL prepares every weight matrix again for each token.
With ``pack`` (the default), an fp32 model on the CPU multiplies by weights packed once for oneDNN,
LoRA merged in (:mod:`rvpo.model.packed`): the same products up to float rounding, so greedy output
matches ``generate``'s up to rounding (token for token in the tests and on SmolLM2's samples).

Notation: ``B`` rows, ``P`` prompt length (left-padded), ``V`` vocabulary, ``T`` new tokens.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, GenerationConfig
from transformers.cache_utils import DynamicLayer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from rvpo.model.generation import patched_generate
from rvpo.model.packed import packed_linears


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values live in a buffer with room to grow.

    A new token is copied into place (``DynamicLayer`` concatenates, copying the whole layer); ``keys``
    and ``values`` are views ``(B, H, n, D)`` of the filled part. When the buffer is full it doubles.
    Code that assigns ``keys``/``values`` directly (``batch_select_indices``, a repeated shared-prefix
    cache, ``crop``) is followed: the next update adopts the assigned tensors into a new buffer.
    """

    def __init__(self, room: int = 64) -> None:
        super().__init__()
        self.room = room
        """positions of spare room kept when a buffer is (re)made"""
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self.get_seq_length()
        end = n + key_states.shape[-2]
        if not self._owns_views() or end > self._buffers[0].shape[-2]:
            self._adopt(key_states, capacity=max(2 * end, end + self.room))
        kbuf, vbuf = self._buffers
        kbuf[..., n:end, :].copy_(key_states)
        vbuf[..., n:end, :].copy_(value_states)
        self.keys, self.values = kbuf[..., :end, :], vbuf[..., :end, :]
        return self.keys, self.values

    def _owns_views(self) -> bool:
        """Whether ``keys`` is still the view of this layer's buffer that the last update left."""
        if self._buffers is None or self.keys is None:
            return False
        kbuf = self._buffers[0]
        return (self.keys.data_ptr() == kbuf.data_ptr() and self.keys.shape[:-2] == kbuf.shape[:-2]
                and self.keys.stride() == kbuf.stride())

    def _adopt(self, like: torch.Tensor, capacity: int) -> None:
        """Make buffers of ``capacity`` positions (shaped as ``like``) holding the current keys/values."""
        n = self.get_seq_length()
        shape = (*like.shape[:-2], capacity, like.shape[-1])
        kbuf, vbuf = like.new_empty(shape), like.new_empty(shape)
        if n:
            kbuf[..., :n, :].copy_(self.keys)
            vbuf[..., :n, :].copy_(self.values)
        self._buffers = (kbuf, vbuf)

    def reset(self) -> None:
        self._buffers = None
        super().reset()


def growing(cache: DynamicCache | None, config: Any) -> DynamicCache:
    """``cache`` (a new one when None) with each plain ``DynamicLayer`` made a :class:`GrowingLayer`.

    Filled layers keep their tensors (adopted at the next update). Layers of other kinds (sliding
    window, quantized, ...) are left as they are: they stay correct, only not faster.
    """
    cache = DynamicCache(config=config) if cache is None else cache
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            grown = GrowingLayer()
            grown.keys, grown.values, grown.is_initialized = layer.keys, layer.values, layer.is_initialized
            if layer.is_initialized:
                grown.device = layer.device
            cache.layers[i] = grown
    return cache


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``probs`` ``(B, V)`` (non-negative, rows summing to about 1), drawn with
    probability ``probs[b, v] / probs[b].sum()``.

    Inverse CDF with one uniform variate per row; the CDF is summed in float64, so a token of
    probability 1e-9 keeps its share. Zero-probability entries are never drawn.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


# generation settings decode() implements; any other one left at a value that changes nothing
_HANDLED = {"max_new_tokens", "max_length", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
            "eos_token_id", "pad_token_id", "bos_token_id", "disable_compile", "use_cache", "cache_implementation"}


def plain_config(config: GenerationConfig) -> str | None:
    """None when :func:`decode` implements ``config`` exactly; else the first setting it does not.

    ``config`` is the resolved one (the model's defaults filled in). Settings outside ``_HANDLED``
    must keep ``generate``'s global defaults (e.g. ``num_beams=1``, no stop strings); ``max_length``
    is ignored, as ``generate`` ignores it when ``max_new_tokens`` is set.
    """
    if config.max_new_tokens is None:
        return "max_new_tokens (unset)"
    if config.cache_implementation is not None:
        return f"cache_implementation={config.cache_implementation!r}"
    if config.do_sample and not (config.temperature or 0) > 0:
        return f"temperature={config.temperature!r} with do_sample"
    fresh = GenerationConfig()
    fresh.update(**fresh._get_default_generation_params())  # what generate fills in for unset settings
    fresh = fresh.to_dict()
    for key, value in config.to_dict().items():
        if key in _HANDLED or key.startswith("_") or key == "transformers_version":
            continue
        if key in fresh and value != fresh[key] and (value or fresh[key]):  # None, False, 0: all "off"
            return f"{key}={value!r}"
    return None


def logits_processors(config: GenerationConfig) -> LogitsProcessorList:
    """The processors ``generate`` applies for the settings :func:`decode` handles, in its order
    (penalties, then the sampling warpers, which greedy decoding skips)."""
    out = LogitsProcessorList()
    if config.repetition_penalty is not None and config.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(penalty=config.repetition_penalty))
    if not config.do_sample:
        return out
    if config.temperature is not None and config.temperature != 1.0:
        out.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        out.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
    if config.top_p is not None and config.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
    if config.min_p is not None:
        out.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=1))
    return out


def _token_ids(value: int | Sequence[int] | None) -> list[int]:
    return [] if value is None else [int(value)] if isinstance(value, int) else [int(v) for v in value]


@torch.no_grad()
def decode(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: GenerationConfig,
           cache: DynamicCache | None = None, generator: torch.Generator | None = None,
           pack: bool = True) -> torch.Tensor:
    """Decode up to ``config.max_new_tokens`` tokens after each left-padded prompt.

    Args:
        model: a causal LM (``model(input_ids, attention_mask, position_ids, cache, logits_to_keep)``).
        input_ids, attention_mask: ``(B, P)``, prompts left-padded (mask 0 on padding).
        config: resolved generation settings that :func:`plain_config` accepts.
        cache: a cache already holding the first ``n < P`` prompt positions (a shared prefix), or None.
        generator: the random generator for sampling (torch's default when None).
        pack: multiply by LoRA-merged, oneDNN-packed weights where :mod:`rvpo.model.packed` applies
            (fp32 on the CPU); the tokens then match ``generate``'s up to rounding.

    Returns:
        ``(B, P + t)``, ``t <= T``: the prompts and their new tokens, as ``generate`` returns them: a
        row that has produced an end token continues with the pad token, and decoding stops when every
        row has ended or ``T`` tokens are made.
    """
    B, P = input_ids.shape
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    eos = torch.tensor(_token_ids(config.eos_token_id), dtype=input_ids.dtype, device=input_ids.device)
    pad = _token_ids(config.pad_token_id) or _token_ids(config.eos_token_id)[:1]
    if not pad:
        raise ValueError("generation config: no pad_token_id or eos_token_id to fill ended rows with")
    processors = logits_processors(config)
    cache = growing(cache, model.config)
    done = cache.get_seq_length()
    if not 0 <= done < P:
        raise ValueError(f"cache: holds {done} positions; expected fewer than the {P} prompt positions")
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as generate computes them
    feed, feed_positions = input_ids[:, done:], positions[:, done:]
    sequences = input_ids
    running = torch.ones(B, dtype=torch.bool, device=input_ids.device)
    with packed_linears(model, rows=B) if pack else contextlib.nullcontext():
        for _ in range(int(config.max_new_tokens)):
            out = model(input_ids=feed, attention_mask=mask, position_ids=feed_positions, cache=cache, use_cache=True,
                        logits_to_keep=1)
            scores = processors(sequences, out.logits[:, -1, :].float())
            if config.do_sample:
                token = sample(torch.softmax(scores, dim=-1), generator)
            else:
                token = scores.argmax(dim=-1)
            token = torch.where(running, token, pad[0])
            sequences = torch.cat([sequences, token[:, None]], dim=-1)
            running &= ~torch.isin(token, eos)
            if not running.any():
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=-1)
            feed, feed_positions = token[:, None], feed_positions[:, -1:] + 1
    return sequences


def resolved_config(model: Any, config: GenerationConfig | None = None, **kwargs: Any) -> GenerationConfig | None:
    """``config`` (or the model's) with the model's defaults filled in and ``kwargs`` applied, as
    ``generate`` resolves it (``transformers``' ``_prepare_generation_config``); None when ``kwargs``
    hold model inputs (which only ``generate`` passes on) or the settings cannot be resolved."""
    try:
        resolved = model._prepare_generation_config(config, **kwargs)
    except (TypeError, ValueError, AttributeError):
        return None
    config, model_kwargs = resolved if isinstance(resolved, tuple) else (resolved, {})
    return None if model_kwargs else config


def fast_generate(generate: Any, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  generation_config: GenerationConfig | None = None, cache: DynamicCache | None = None,
                  pack: bool = True, **kwargs: Any) -> torch.Tensor:
    """``generate(input_ids=..., attention_mask=..., ...)``, run by :func:`decode` when the settings allow.

    ``generate`` is the model's own ``generate`` (called, unchanged, for settings :func:`plain_config`
    refuses or arguments :func:`decode` does not take); ``model`` the module whose forward decodes;
    ``pack`` as in :func:`decode`.
    """
    config = resolved_config(model, generation_config, **kwargs)
    if config is None or plain_config(config) is not None:
        if cache is not None:
            kwargs["cache"] = cache
        return generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config,
                        **kwargs)
    return decode(model, input_ids, attention_mask, config, cache=cache, pack=pack)


def fast_generation(model: Any, pack: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Within the block, ``model.generate(input_ids=..., ...)`` runs :func:`fast_generate`."""
    return patched_generate(model, lambda original: functools.partial(fast_generate, original, model, pack=pack))
