"""Seeded fuzzing of the advantage core (tests and ``benchmarks/fuzz_core.py`` only).

:func:`fuzz_case` draws one hostile reward tensor and one estimator setting; :func:`check_case`
runs it and returns the problems found (empty list: it held). What must hold for every input:
advantages finite and in the caller's floating dtype (float32 for integer rewards), and every
diagnostic (``aggregate``, ``z``, ``binding``, ``metrics()``) finite.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from rvpo.core.adaptive import AdaptiveK
from rvpo.core.estimators import compute_advantages

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64)
ESTIMATORS = ("grpo", "gdpo", "rvpo", "rvpo_explicit", "hardmin")
_SPECIAL = (float("nan"), float("inf"), -float("inf"), 0.0, 1.0, -1.0, 1e30, -1e30, 6e4, -6e4, 1e-30,
            5e-324, 1e300, -1e300, 1e-45, 3e38)


def _values(rng: random.Random, gen: torch.Generator, n: int, m: int) -> torch.Tensor:
    kind = rng.choice(("uniform", "binary", "normal", "special", "const", "scaled", "mixed"))
    if kind == "uniform":
        r = torch.rand(n, m, generator=gen, dtype=torch.float64)
    elif kind == "binary":
        r = (torch.rand(n, m, generator=gen, dtype=torch.float64) < rng.random()).double()
    elif kind == "normal":
        r = torch.randn(n, m, generator=gen, dtype=torch.float64) * 10 ** rng.uniform(-8, 8)
    elif kind == "special":
        idx = torch.randint(len(_SPECIAL), (n, m), generator=gen)
        r = torch.tensor(_SPECIAL, dtype=torch.float64)[idx]
    elif kind == "const":
        r = torch.full((n, m), rng.choice((0.0, 1.0, 1e30, -7.5, 1e-300)), dtype=torch.float64)
    elif kind == "scaled":  # one channel tiny beside one huge (eps = 0's worst case)
        r = torch.rand(n, m, generator=gen, dtype=torch.float64)
        r[:, 0] *= 1e-310
        r[:, -1] = r[:, -1] * 1e30 + 1e30
    else:
        r = torch.rand(n, m, generator=gen, dtype=torch.float64) * 10 ** rng.uniform(-3, 3)
        mask = torch.rand(n, m, generator=gen) < 0.2
        idx = torch.randint(len(_SPECIAL), (n, m), generator=gen)
        r = torch.where(mask, torch.tensor(_SPECIAL, dtype=torch.float64)[idx], r)
    if rng.random() < 0.3:  # abstentions
        r[torch.rand(n, m, generator=gen) < rng.random()] = float("nan")
    return r


def fuzz_case(seed: int) -> dict[str, Any]:
    """One seeded case: ``{"rewards", "group_size", "estimator", "params"}``; rewards ``(N, M)``, ``N = B * G``."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    g = rng.choice((1, 2, 3, 4, 8, 16))
    n = g * rng.choice((1, 2, 3, 8, 32))
    m = rng.choice((1, 2, 3, 5, 17))
    dtype = rng.choice(DTYPES)
    r = _values(rng, gen, n, m)
    if dtype == torch.int64:
        r = torch.nan_to_num(r, nan=0.0, posinf=1e6, neginf=-1e6).clamp(-1e12, 1e12).round().long()
    else:
        r = r.to(dtype)  # out-of-range values become +-inf (abstain), as a caller's cast would
    est = rng.choice(ESTIMATORS)
    p: dict[str, Any] = {"eps": rng.choice((0.0, 0.0, 1e-6, 1e-4, 1.0)), "unbiased": rng.random() < 0.7,
                         "whiten": rng.random() < 0.7}
    if est == "grpo":
        p["scale"] = rng.choice(("group", "batch", "none"))
    if est in ("rvpo", "rvpo_explicit", "hardmin"):
        p["drop_zero_spread"] = rng.random() < 0.3
    if est == "rvpo":
        p["k"] = rng.choice((0.0, 1e-7, 1e-5, 1e-3, 0.3, 1.0, 2.0, 50.0, 1e3, math.inf,
                             AdaptiveK(rng.uniform(0.05, 1.0), 0.1, rng.choice((2.0, 8.0, 100.0)))))
    if est == "rvpo_explicit":
        p["beta"] = rng.choice((0.0, 0.5, 2.0, 1e6))
    u = rng.random()
    if u < 0.3:
        lo = 0.0 if est != "gdpo" else -1.0
        p["weights"] = [rng.uniform(lo, 1.0) * 10 ** rng.choice((0, 0, 3, 30, 300)) for _ in range(m)]
    if est != "grpo" and rng.random() < 0.2:
        p["noise_floor"] = [rng.choice((0.0, 0.5, 1e-3, 1e30)) for _ in range(m)]
    return {"rewards": r, "group_size": g, "estimator": est, "params": p}


def _bad(x: torch.Tensor | None) -> bool:
    return x is not None and x.is_floating_point() and not bool(torch.isfinite(x).all())


def check_case(case: dict[str, Any]) -> list[str]:
    """Run one case; return what did not hold (``[]`` when everything did)."""
    r = case["rewards"]
    out = compute_advantages(r, case["group_size"], case["estimator"], **case["params"])
    want = r.dtype if r.is_floating_point() else torch.float32
    problems = []
    if out.advantages.dtype != want:
        problems.append(f"dtype {out.advantages.dtype} != {want}")
    for name in ("advantages", "aggregate", "z", "binding"):
        if _bad(getattr(out, name)):
            problems.append(f"non-finite {name}")
    met = out.metrics()
    if not all(math.isfinite(v) for v in met.values()):
        problems.append("non-finite metrics")
    if out.k is not None and not isinstance(out.k, float):
        problems.append(f"k is {type(out.k).__name__}, not float")
    return problems


def precision_errors(ks, n: int = 256, m: int = 8, g: int = 4, seed: int = 0) -> dict[float, float]:
    """Largest ``|whitened rvpo float32 - float64|`` per k on uniform rewards (the issue's setting).

    ``(n, m)``: the rewards' shape ``(N, M)``; ``g``: the group size ``G``.
    """
    r = torch.rand(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = {}
    for k in ks:
        a = compute_advantages(r.float(), g, "rvpo", k=k).advantages.double()
        b = compute_advantages(r, g, "rvpo", k=k).advantages
        out[k] = float((a - b).abs().max())
    return out
