"""Small statistics used by experiments and evaluations (numpy/scipy; no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


def mean_std(xs: Sequence[float]) -> MeanStd:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values of ``xs``."""
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    if a.size == 0:
        return MeanStd(float("nan"), float("nan"), 0)
    return MeanStd(float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0, int(a.size))


def welch_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's two-sided t-test of mean(a) != mean(b): returns ``(t, p)`` (nan when undefined)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return float("nan"), float("nan")
    if a.std() == 0 and b.std() == 0:
        return (0.0, 1.0) if a.mean() == b.mean() else (math.copysign(math.inf, a.mean() - b.mean()), 0.0)
    res = _st.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def bootstrap_se(values: Sequence[float], n_boot: int = 1000, seed: int = 0, clip: tuple[float, float] | None = None) -> float:
    """Bootstrap standard error of the mean (optionally of the mean clipped to ``clip``)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    if clip is not None:
        means = np.clip(means, *clip)
    return float(means.std(ddof=1)) if n_boot > 1 else 0.0


def wilson_ci(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mean_ci(xs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of the finite values of ``xs`` (nan for fewer than 2).

    ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` with the sample std ``s`` (ddof=1): the interval
    for a mean over a handful of seeds, where a normal approximation would be too narrow.
    """
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    if a.size < 2:
        return float("nan"), float("nan")
    half = float(_st.t.ppf((1 + level) / 2, a.size - 1)) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return float(a.mean()) - half, float(a.mean()) + half


def bootstrap_diff_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(a) - mean(b)`` for two independent samples.

    Each resample draws ``len(a)`` values of ``a`` and ``len(b)`` values of ``b`` with replacement
    (independently); the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
    the ``n_boot`` resampled differences. Non-finite values are dropped; an empty sample gives nan.
    With 3 values per side there are only 10 distinct resampled means each: read the interval as
    coarse, and as too narrow rather than too wide (the bootstrap ignores the small-sample t tails).
    """
    x = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0 or y.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
    my = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)  # (n_boot,)
    lo, hi = np.quantile(mx - my, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def fisher_exact(kept_a: int, n_a: int, kept_b: int, n_b: int) -> tuple[float, float]:
    """Fisher's exact two-sided test of ``kept_a / n_a`` against ``kept_b / n_b``: ``(odds ratio, p)``
    (scipy's conditional-free sample odds ratio, may be 0 or inf; nan when a group is empty)."""
    if n_a <= 0 or n_b <= 0 or not (0 <= kept_a <= n_a and 0 <= kept_b <= n_b):
        return float("nan"), float("nan")
    res = _st.fisher_exact([[kept_a, n_a - kept_a], [kept_b, n_b - kept_b]], alternative="two-sided")
    return float(res.statistic), float(res.pvalue)
