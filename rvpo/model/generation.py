"""Batched local generation from chat prompts (used by the evaluation code).

``generate(model, tokenizer, prompts)`` renders each conversation with the tokenizer's chat
template (``add_generation_prompt=True``), left-pads a batch, and decodes only the new tokens.
Greedy when ``temperature == 0``; sampling otherwise (seeded with ``seed`` if given, so a run is
reproducible on the same machine and batch size). Decoding runs :func:`rvpo.model.decoding.decode`
(the same tokens as ``model.generate`` when greedy; the same distribution when sampling).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

Message = dict[str, Any]


@contextlib.contextmanager
def _left_padding(tokenizer: Any) -> Iterator[None]:
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = old


def render_prompts(tokenizer: Any, prompts: Sequence[Sequence[Message]]) -> list[str]:
    """Chat-template text of each conversation, ending with the assistant's generation prompt."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer: it has no chat template, so chat prompts cannot be rendered")
    out = []
    for i, msgs in enumerate(prompts):
        if isinstance(msgs, str) or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise ValueError(f"prompts[{i}]: expected a list of {{'role', 'content'}} messages, got {msgs!r:.80}")
        out.append(tokenizer.apply_chat_template(list(msgs), tokenize=False, add_generation_prompt=True))
    return out


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[Message]],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int | None = None,
) -> list[str]:
    """Generate one completion per chat prompt.

    Args:
        model: a causal LM (``model.generate``); put in eval mode for the call, restored after.
        tokenizer: its tokenizer, with a chat template (a pad token is taken from eos if missing).
        prompts: ``P`` conversations, each a list of ``{"role", "content"}`` messages.
        max_new_tokens: per completion.
        temperature: 0 for greedy decoding, > 0 to sample (with ``top_p``).
        batch_size: prompts per ``generate`` call.
        seed: seeds torch's RNG before sampling (ignored for greedy).

    Returns:
        ``P`` strings: the decoded new tokens, special tokens removed, in prompt order.
    """
    from rvpo.model.decoding import fast_generate  # deferred: optional dependency transformers (rvpo[trl])

    if temperature < 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"batch_size and max_new_tokens: must be >= 1, got {batch_size}, {max_new_tokens}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = render_prompts(tokenizer, prompts)
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
    else:
        gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if seed is not None and temperature > 0:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[str] = []
    try:
        with _left_padding(tokenizer):
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                # the chat template already holds the special tokens (bos etc.)
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                # (b, T_prompt + T_new); the lean loop where it implements the settings (same greedy output)
                out = fast_generate(model.generate, model, enc["input_ids"], enc["attention_mask"], **gen_kwargs)
                new = out[:, enc["input_ids"].shape[1] :]  # left padding: prompts end at the same column
                results.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return results


@contextlib.contextmanager
def patched_generate(model: Any, wrap: Callable[[Any], Any]) -> Iterator[Any]:
    """Within the block, ``model.generate`` is ``wrap(original)``; calls with positional arguments or
    without ``input_ids`` go to the original. On exit the original is back, whether it was the class's
    method or an instance attribute (an outer wrapper's), so wrappers nest."""
    had = "generate" in vars(model)
    original = model.generate
    wrapped = wrap(original)

    def generate(*args: Any, **kwargs: Any) -> torch.Tensor:
        if args or "input_ids" not in kwargs:
            return original(*args, **kwargs)
        return wrapped(**kwargs)

    model.generate = generate
    try:
        yield model
    finally:
        if had:
            model.generate = original
        else:
            del model.generate
