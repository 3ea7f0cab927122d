"""Aggregation across reward channels: weighted mean, soft-min, mean-minus-variance, hard-min.

All functions take per-channel scores ``z`` of shape ``(N, M)`` (usually group z-scores), an
optional ``(N, M)`` bool ``mask`` of channels that count for each completion, and optional
non-negative channel ``weights`` of shape ``(M,)``. A channel is *active* for a completion when it
is masked in and its weight is positive; a completion with no active channel aggregates to 0.

Soft-min with risk coefficient ``k > 0`` (RVPO, arXiv 2605.05750), weighted form::

    A = -(1/k) * log( sum_j w_j exp(-k z_j) / sum_j w_j )        (over active j)

computed with logsumexp. Limits: k -> 0 gives the weighted mean, k -> inf gives ``min_j z``;
``min <= A <= mean``; ``A ~ mean - (k/2) var`` to second order. ``dA/dz_j = softmax(-k z + log w)_j``:
these *binding weights* sum to 1 and show which channel is the bottleneck.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

_TAYLOR_K = 1e-5  # below this k, use the cumulant series: the direct formula loses digits to cancellation


def _active(z: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None):
    """Return ``(w, active)``: weights broadcast to ``(N, M)`` (0 where inactive) and the bool mask."""
    n, m = z.shape
    if weights is None:
        w = torch.ones(m, dtype=z.dtype, device=z.device)
    else:
        w = torch.as_tensor(weights, dtype=z.dtype, device=z.device)
        if w.shape != (m,):
            raise ValueError(f"weights: expected {m} channel weights, got shape {tuple(w.shape)}")
        if (w < 0).any() or not torch.isfinite(w).all():
            raise ValueError("weights: soft-min, mean-variance and hard-min need finite weights >= 0")
    active = w > 0 if mask is None else mask & (w > 0)
    if active.dim() == 1:
        active = active.expand(n, m)
    wa = torch.where(active, w.expand(n, m), torch.zeros((), dtype=z.dtype))
    return wa, active


def weighted_mean_var(
    z: torch.Tensor, mask: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted mean and population variance across active channels.

    Returns ``mean (N,)``, ``var (N,)`` and the normalised weights ``(N, M)`` (sum to 1 per row
    with any active channel, all 0 otherwise).
    """
    wa, active = _active(z, mask, weights)
    wsum = wa.sum(dim=1, keepdim=True)  # (N, 1)
    p = wa / wsum.clamp(min=torch.finfo(z.dtype).tiny)  # (N, M)
    zc = torch.where(active, z, torch.zeros((), dtype=z.dtype))
    mean = (p * zc).sum(dim=1)  # (N,)
    var = (p * (zc - mean.unsqueeze(1)).square()).sum(dim=1)  # (N,)
    return mean, var, p


def soft_min(
    z: torch.Tensor,
    k: float,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    m_eff: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted soft-min of ``z`` across channels with risk coefficient ``k >= 0``.

    Args:
        z: ``(N, M)`` scores.  k: 0 gives the weighted mean, ``inf`` gives the hard min.
        mask: ``(N, M)`` bool, or 0/1 floats (faster), of the channels that count.
        m_eff: optional ``(N,)`` count of masked-in channels, if the caller has it already.
    Returns:
        agg ``(N,)`` and binding weights ``(N, M)`` = ``softmax(-k z + log w)`` over active
        channels (0 on inactive channels and on rows with none).
    """
    agg, binding = soft_min_lazy(z, k, mask, weights, m_eff)
    return agg, binding()


def soft_min_lazy(
    z: torch.Tensor,
    k: float,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    m_eff: torch.Tensor | None = None,
    z_bound: float | None = None,
    neg_kz: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """:func:`soft_min` with the binding weights deferred: returns ``agg`` and a function that
    computes them (one more pass over ``(N, M)``, paid only by callers who log them).

    ``z_bound``: a known bound on ``|z|`` (z-scores of a group of G satisfy ``|Z| < sqrt(G)``),
    which spares a pass over ``z`` to decide whether exp() needs a shift.
    ``neg_kz``: ``-k * z`` if the caller has it already (then ``z`` is not read; requires
    ``k * z_bound < 60`` and ``k >= 1e-5``, i.e. no shift and no series).
    """
    k = float(k)
    if math.isnan(k) or k < 0:
        raise ValueError(f"k: the risk coefficient must be >= 0, got {k}")
    if math.isinf(k):
        agg, onehot = hard_min(z, None if mask is None else mask.bool(), weights)
        return agg, lambda: onehot
    zero = torch.zeros((), dtype=z.dtype)
    tiny = torch.finfo(z.dtype).tiny
    # log-sum-exp by hand, so that exp() is computed once and serves both the aggregate and the
    # binding weights. When k * max|z| is small (always, for z-scores and moderate k: |Z| <= (G-1)/sqrt(G))
    # exp(-k z) can neither overflow nor underflow and no shift is needed; otherwise shift each row
    # by its smallest active score.
    if weights is None:  # uniform weights: M = number of active channels
        if mask is None:
            wa = torch.ones_like(z)
        else:  # (N, M) 0/1 floats: multiplying by them is cheaper than torch.where
            wa = mask if mask.is_floating_point() else mask.to(z.dtype)
        wsum = wa.sum(dim=1) if m_eff is None else m_eff.to(z.dtype)  # (N,)
        active = None  # only needed (as wa > 0) on the rare shifted path
    else:
        wa, active = _active(z, None if mask is None else mask.bool(), weights)
        wsum = wa.sum(dim=1)
    if z_bound is None:
        lo, hi = torch.aminmax(z) if z.numel() else (zero, zero)
        z_bound = max(abs(float(lo)), abs(float(hi)))
    # one (N, M) buffer, updated in place: fresh multi-MB tensors cost page faults on every call
    if neg_kz is not None:
        if not (k * z_bound < 60.0 and k >= _TAYLOR_K):
            raise ValueError("neg_kz: only for k >= 1e-5 with k * z_bound < 60")
        shift = None
        e = neg_kz.exp()  # (N, M)
    elif k * z_bound < 60.0:
        shift = None
        e = z.mul(-k).exp_()  # (N, M)
    else:
        active = wa > 0 if active is None else active
        shift = torch.where(active, z, torch.inf).amin(dim=1, keepdim=True)  # (N, 1)
        shift = torch.where(torch.isfinite(shift), shift, zero)
        # <= 1 on active channels; inactive ones could overflow (z = 0 far below the shift): exp(-inf) = 0
        e = torch.where(active, (z - shift).mul_(-k), -torch.inf).exp_()  # (N, M)
    # masked row sums as a batched dot product: one read of e and wa, no (N, M) write
    total = torch.bmm(e.unsqueeze(1), wa.unsqueeze(2)).view(-1, 1)  # (N, 1), > 0 where any active

    def binding() -> torch.Tensor:  # (N, M) = softmax(-k z + log w) over active channels
        return (e * wa).div_(total.clamp(min=tiny))  # 0 on inactive channels (e is finite)

    if shift is None and k >= _TAYLOR_K:  # the common case, in four (N,)-sized steps
        # A = log(sum w / sum w exp(-k z)) / k; e >= exp(-60) here, so total > 0 wherever sum w > 0,
        # and a row with no active channel is 0 / 0 -> NaN -> 0
        return torch.log(wsum / total.view(-1)).div_(k).nan_to_num_(0.0), binding
    any_active = total.squeeze(1) > 0  # (N,)
    lse = total.squeeze(1).clamp(min=tiny).log()  # (N,)
    if shift is not None:
        lse = lse - k * shift.squeeze(1)
    if k < _TAYLOR_K:
        # -(1/k) log E_w[exp(-k z)] = mean - k/2 var + k^2/6 kappa3 - ...  (cumulant expansion)
        mean, var, p = weighted_mean_var(z, wa > 0, weights)
        zc = torch.where(p > 0, z - mean.unsqueeze(1), zero)
        kappa3 = (p * zc.pow(3)).sum(dim=1)
        agg = mean - 0.5 * k * var + (k * k / 6.0) * kappa3
    else:
        agg = (wsum.clamp(min=tiny).log() - lse) / k
    return torch.where(any_active, agg, zero), binding


def mean_minus_var(
    z: torch.Tensor, beta: float, mask: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit variance penalty ``mean_j z - beta * var_j z`` (RVPO-explicit).

    Returns agg ``(N,)`` and its gradient weights ``(N, M)``: ``p_j (1 - 2 beta (z_j - mean))``.
    Unlike the soft-min these can be negative: the quadratic penalty is unbounded.
    """
    beta = float(beta)
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: the variance penalty must be finite and >= 0, got {beta}")
    mean, var, p = weighted_mean_var(z, mask, weights)
    grad = p * (1.0 - 2.0 * beta * (z - mean.unsqueeze(1)))
    return mean - beta * var, torch.where(p > 0, grad, torch.zeros((), dtype=z.dtype))


def hard_min(
    z: torch.Tensor, mask: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``min_j z`` over active channels. Returns agg ``(N,)`` and a one-hot ``(N, M)`` at the argmin."""
    _, active = _active(z, mask, weights)
    masked = torch.where(active, z, torch.tensor(torch.inf, dtype=z.dtype))
    agg, idx = masked.min(dim=1)
    any_active = active.any(dim=1)
    onehot = torch.zeros_like(z).scatter_(1, idx.unsqueeze(1), 1.0)
    onehot = torch.where(any_active.unsqueeze(1), onehot, torch.zeros((), dtype=z.dtype))
    return torch.where(any_active, agg, torch.zeros((), dtype=z.dtype)), onehot
