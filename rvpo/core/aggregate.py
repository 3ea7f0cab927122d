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
        m_eff: optional ``(N,)`` count of masked-in channels, if the caller has it already.
    Returns:
        agg ``(N,)`` and binding weights ``(N, M)`` = ``softmax(-k z + log w)`` over active
        channels (0 on inactive channels and on rows with none).
    """
    k = float(k)
    if math.isnan(k) or k < 0:
        raise ValueError(f"k: the risk coefficient must be >= 0, got {k}")
    if math.isinf(k):
        return hard_min(z, mask, weights)
    zero = torch.zeros((), dtype=z.dtype)
    # log-sum-exp by hand, shifted by the smallest active score, so that exp() is computed once and
    # serves both the aggregate and the binding weights
    if weights is None:  # uniform weights: M = number of active channels
        active = torch.ones_like(z, dtype=torch.bool) if mask is None else mask
        if m_eff is None:
            m_eff = active.to(z.dtype).sum(dim=1)
        log_wsum = m_eff.to(z.dtype).log()  # (N,)
        zmin = torch.where(active, z, torch.inf).amin(dim=1, keepdim=True)  # (N, 1)
        e = torch.where(active, ((z - zmin) * (-k)).exp(), zero)  # (N, M), <= 1
    else:
        wa, active = _active(z, mask, weights)
        log_wsum = wa.sum(dim=1).log()
        zmin = torch.where(active, z, torch.inf).amin(dim=1, keepdim=True)
        e = torch.where(active, ((z - zmin) * (-k)).exp() * wa, zero)
    any_active = torch.isfinite(zmin.squeeze(1))  # (N,)
    zmin = torch.where(any_active.unsqueeze(1), zmin, zero)
    total = e.sum(dim=1, keepdim=True)  # (N, 1), >= w of the min channel > 0 where any active
    binding = e / total.clamp(min=torch.finfo(z.dtype).tiny)  # (N, M) = softmax(-k z + log w)
    lse = -k * zmin.squeeze(1) + total.squeeze(1).clamp(min=torch.finfo(z.dtype).tiny).log()
    if k < _TAYLOR_K:
        # -(1/k) log E_w[exp(-k z)] = mean - k/2 var + k^2/6 kappa3 - ...  (cumulant expansion)
        mean, var, p = weighted_mean_var(z, mask, weights)
        zc = torch.where(p > 0, z - mean.unsqueeze(1), zero)
        kappa3 = (p * zc.pow(3)).sum(dim=1)
        agg = mean - 0.5 * k * var + (k * k / 6.0) * kappa3
    else:
        agg = (log_wsum - lse) / k
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
