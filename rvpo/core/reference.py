"""Slow, obvious per-group Python-loop references for the estimators (tests and benchmarks only).

Written independently of the vectorised code, from the formulas in the module docstring of
:mod:`rvpo.core.estimators`, so that agreement between the two means something.
"""

from __future__ import annotations

import math

import torch

from rvpo.core.groups import DEFAULT_EPS


def _zscore(col: list[float | None], eps: float, unbiased: bool) -> list[float | None]:
    vals = [v for v in col if v is not None]
    if len(vals) < 2 or max(vals) == min(vals):
        return [0.0 if v is not None else None for v in col]
    mean = sum(vals) / len(vals)
    ddof = 1 if unbiased else 0
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof))
    return [(v - mean) / (std + eps) if v is not None else None for v in col]


def _whiten(xs: list[float | None], eps: float, unbiased: bool) -> list[float]:
    vals = [x for x in xs if x is not None]
    if not vals:
        return [0.0] * len(xs)
    mean = sum(vals) / len(vals)
    ddof = 1 if unbiased else 0
    if len(vals) <= ddof:
        return [x - mean if x is not None else 0.0 for x in xs]
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof))
    return [(x - mean) / (std + eps) if x is not None else 0.0 for x in xs]


def reference_advantages(
    rewards: torch.Tensor,
    group_size: int,
    estimator: str = "rvpo",
    k: float = 1.0,
    beta: float = 0.5,
    weights=None,
    eps: float = DEFAULT_EPS,
    unbiased: bool = True,
    whiten: bool = True,
) -> torch.Tensor:
    """Loop implementation of gdpo / rvpo / rvpo_explicit / hardmin.

    ``rewards``: ``(N, M)``, in contiguous groups of ``G = group_size``; ``k``: the soft-min's risk
    coefficient. Returns ``(N,)`` float64.
    """
    rows = rewards.double().tolist()
    n, m = len(rows), len(rows[0])
    w = [1.0] * m if weights is None else [float(x) for x in weights]
    r = [[v if math.isfinite(v) else None for v in row] for row in rows]
    z: list[list[float | None]] = [[None] * m for _ in range(n)]
    for start in range(0, n, group_size):
        for j in range(m):
            col = _zscore([r[i][j] for i in range(start, start + group_size)], eps, unbiased)
            for off, v in enumerate(col):
                z[start + off][j] = v
    agg: list[float | None] = []
    for i in range(n):
        if estimator == "gdpo":
            terms = [(w[j], z[i][j]) for j in range(m) if z[i][j] is not None]
            agg.append(sum(wj * zj for wj, zj in terms) if terms else None)
            continue
        terms = [(w[j], z[i][j]) for j in range(m) if z[i][j] is not None and w[j] > 0]
        if not terms:
            agg.append(None)
            continue
        wsum = sum(wj for wj, _ in terms)
        mean = sum(wj * zj for wj, zj in terms) / wsum
        if estimator == "rvpo":
            a = max(-k * zj for _, zj in terms)  # log-sum-exp by hand
            lse = a + math.log(sum(wj * math.exp(-k * zj - a) for wj, zj in terms))
            agg.append(-(lse - math.log(wsum)) / k)
        elif estimator == "rvpo_explicit":
            var = sum(wj * (zj - mean) ** 2 for wj, zj in terms) / wsum
            agg.append(mean - beta * var)
        elif estimator == "hardmin":
            agg.append(min(zj for _, zj in terms))
        else:
            raise ValueError(f"reference: no loop reference for {estimator!r}")
    out = _whiten(agg, eps, unbiased) if whiten else [a if a is not None else 0.0 for a in agg]
    return torch.tensor(out, dtype=torch.float64)
