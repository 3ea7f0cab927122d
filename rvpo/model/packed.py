"""Linear layers for decoding on the CPU: LoRA merged in, weights packed once for oneDNN.

A decode step multiplies a few rows (4-32) by every weight matrix of the model. On a CPU two
costs dominate that product (docs/train.md, "Step speed"):

* MKL's fp32 GEMM prepares the weight matrix again on every call. oneDNN can prepare ("pack") it
  once (``torch.ops.mkldnn._reorder_linear_weight``) and reuse it for every token: at 12 rows the
  product against a packed 1536 x 576 weight took 265 us against 421 us here.
* an unmerged LoRA adapter adds two thin products, a scale and an add to each of the 210
  projections of SmolLM2, every token: a quarter of the decode step at 12 rows.

:func:`packed_linears` swaps, inside a ``no_grad`` block, the forward of every linear layer for a
product against ``W + sum_a delta_a`` (the active adapters' ``get_delta_weight``, peft's own merge
arithmetic), packed once when the block opens. Outside the block every module is as it was, so
training, checkpoints and the adapter's parameters never see it. Only the rounding differs from the
unpacked, unmerged forward (tests/test_packed.py bounds it).

It applies where it can help and is safe: fp32 weights on the CPU, oneDNN present, gradients and
autocast off.
Elsewhere the block changes nothing; so does any layer it does not understand (a LoRA variant
such as DoRA, an adapter with a bias, a quantized base layer), which keeps its own forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

MAX_PACKED_ROWS = 64
"""inputs with more rows (a prompt's prefill) use the merged weight unpacked: there MKL is as fast"""


def available(model: torch.nn.Module) -> bool:
    """Whether packing can apply to ``model``: fp32 parameters on the CPU, oneDNN, gradients and
    autocast off (under autocast the products belong to autocast's dtype)."""
    if torch.is_grad_enabled() or torch.is_autocast_enabled("cpu") or not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    if not (hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")):
        return False
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu" and p.dtype == torch.float32


def merged_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The weight ``(out, in)`` that ``module``'s forward multiplies by, adapters merged in; None when
    ``module`` is neither a plain ``nn.Linear`` nor a vanilla peft LoRA linear layer."""
    if type(module) is torch.nn.Linear:
        return module.weight.detach()
    base = getattr(module, "base_layer", None)
    if type(base) is not torch.nn.Linear or not hasattr(module, "get_delta_weight"):
        return None
    weight = base.weight.detach()
    if module.disable_adapters or module.merged:
        return weight
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if name in getattr(module, "lora_variant", {}) or getattr(module, "lora_bias", {}).get(name, False):
            return None  # DoRA and friends, or a bias on lora_B: not a plain weight delta
        weight = weight + module.get_delta_weight(name).detach().to(weight.dtype)
    return weight


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Any:
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        if flat.shape[0] > MAX_PACKED_ROWS or flat.dtype != weight.dtype:
            return F.linear(x, weight, bias)
        y = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
        return y.reshape(*x.shape[:-1], y.shape[-1])

    return forward


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module, rows: int) -> Iterator[int]:
    """Within the block, every linear layer of ``model`` multiplies by its merged, packed weight.

    Args:
        model: the module whose linear layers (``nn.Linear`` and peft LoRA linears) are swapped.
        rows: the rows a decode step feeds (the batch), which oneDNN packs for.

    Yields:
        how many layers were swapped (0 when :func:`available` is false: nothing changed).
    """
    if not available(model):
        yield 0
        return
    swapped: list[tuple[torch.nn.Module, Any]] = []
    inner: set[int] = set()
    modules = list(model.modules())
    for module in modules:
        if type(module) is not torch.nn.Linear and hasattr(module, "base_layer"):
            inner.update(id(m) for m in module.modules() if m is not module)
    try:
        for module in modules:
            if id(module) in inner:
                continue  # the base and adapter layers of a swapped LoRA layer are not called
            weight = merged_weight(module)
            if weight is None:
                continue
            bias = getattr(getattr(module, "base_layer", module), "bias", None)
            bias = None if bias is None else bias.detach()
            swapped.append((module, module.__dict__.get("forward")))
            module.forward = _packed_forward(weight, bias, max(1, min(rows, MAX_PACKED_ROWS)))
        yield len(swapped)
    finally:
        for module, own in reversed(swapped):
            if own is None:
                del module.forward
            else:
                module.forward = own
