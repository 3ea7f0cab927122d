"""Which floating-point precision runs the model: ``auto``, ``fp32`` or ``bf16``.

``auto`` decides per machine:

- CUDA: bf16 when ``torch.cuda.is_bf16_supported()``, else fp32 (the usual rule).
- CPU: bf16 only when the CPU has native bf16 matrix units, which torch reports
  (``torch.cpu._is_avx512_bf16_supported()`` or ``_is_amx_tile_supported()``), *and* a 0.05 s
  micro-benchmark (a 384 x 384 matmul, bf16 against fp32) confirms that bf16 is at least 1.5x faster.
  Without native units bf16 is emulated and slower than fp32, so ``auto`` falls back to fp32.

What runs in bf16 when chosen (see docs/train.md, "Precision"): the frozen base weights and their
matmuls (generation, logprob recomputation, the training forward/backward under
``torch.autocast``). What stays fp32: LoRA adapter weights and their gradients (peft keeps adapters
in fp32), the optimizer state, the loss, logprob ratios and the advantage core (rewards are cast to
fp32 before :func:`rvpo.compute_advantages`). A full fine-tune (no LoRA) keeps fp32 master weights
and runs its matmuls under autocast.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

PRECISIONS = ("auto", "fp32", "bf16")
PrecisionName = Literal["auto", "fp32", "bf16"]
MIN_SPEEDUP = 1.5


@dataclass(frozen=True)
class Precision:
    """The resolved choice: ``name`` ("fp32" or "bf16"), how it was decided, the measured speed-up."""

    name: Literal["fp32", "bf16"]
    reason: str
    speedup: float | None = None

    @property
    def dtype(self) -> Any:
        import torch  # deferred: torch (start-up time: light modules such as rvpo.model.policy import this one)

        return torch.bfloat16 if self.name == "bf16" else torch.float32

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def as_dict(self) -> dict[str, Any]:
        return {"precision": self.name, "reason": self.reason, "bf16_speedup": self.speedup}


def cpu_bf16_units() -> tuple[bool, str]:
    """``(has_native_bf16_matmul, which)`` from torch's own CPU capability report."""
    import torch  # deferred: torch (start-up time: light modules such as rvpo.model.policy import this one)

    found = [name for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_tile", "_is_amx_tile_supported"))
             if getattr(torch.cpu, probe, lambda: False)()]
    return bool(found), "+".join(found) or "none"


def matmul_speedup(n: int = 384, reps: int = 6) -> float:
    """fp32 time / bf16 time of an ``n x n`` matmul on this CPU (best of ``reps``; about 0.05 s)."""
    import torch  # deferred: torch (start-up time: light modules such as rvpo.model.policy import this one)

    def best(dtype: Any) -> float:
        a = torch.randn(n, n).to(dtype)
        a @ a  # warm up (kernel selection)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(torch.float32) / max(best(torch.bfloat16), 1e-9)


def resolve(precision: str = "auto", device: str = "cpu", *,
            units: Callable[[], tuple[bool, str]] = cpu_bf16_units,
            bench: Callable[[], float] = matmul_speedup) -> Precision:
    """Resolve ``precision`` for ``device`` ("cpu" or "cuda"); ``units``/``bench`` are injectable for tests.

    Raises ``ValueError`` for an unknown name, or bf16 asked for on a GPU without bf16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device == "cuda":
        import torch  # deferred: torch (start-up time: light modules such as rvpo.model.policy import this one)

        ok = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not ok:
            raise ValueError("precision: bf16 asked for, but this GPU does not support bf16")
        if precision == "fp32" or not ok:
            return Precision("fp32", "asked for" if precision == "fp32" else "GPU without bf16")
        return Precision("bf16", "asked for" if precision == "bf16" else "GPU supports bf16")
    if precision != "auto":
        return Precision(precision, "asked for")  # type: ignore[arg-type]
    return _auto_cpu(units, bench)


def _auto_cpu(units: Callable[[], tuple[bool, str]], bench: Callable[[], float]) -> Precision:
    has, which = units()
    if not has:
        return Precision("fp32", f"auto: the CPU reports no native bf16 matrix units ({which})")
    speedup = round(bench(), 2)
    if speedup < MIN_SPEEDUP:
        return Precision("fp32", f"auto: CPU has {which}, but bf16 matmul was only {speedup}x fp32 "
                                 f"(< {MIN_SPEEDUP}x)", speedup)
    return Precision("bf16", f"auto: CPU has {which}; bf16 matmul {speedup}x fp32", speedup)


@functools.cache
def resolve_cached(precision: str = "auto", device: str = "cpu") -> Precision:
    """:func:`resolve` once per process (the micro-benchmark runs at most once)."""
    return resolve(precision, device)


def autocast(precision: Precision | None, model: Any = None) -> Any:
    """``torch.autocast`` to bf16 on the model's device when ``precision`` is bf16, else a no-op context.

    Used around inference (generation, evals): fp32 weights (a full fine-tune) and fp32 LoRA
    adapters on a bf16 base then run their matmuls in bf16 as well.
    """
    import torch  # deferred: torch (start-up time: light modules such as rvpo.model.policy import this one)

    if precision is None or not precision.bf16:
        return contextlib.nullcontext()
    device = "cpu"
    if model is not None:
        try:
            device = next(model.parameters()).device.type
        except (StopIteration, AttributeError):
            pass
    return torch.autocast(device_type=device, dtype=torch.bfloat16)
