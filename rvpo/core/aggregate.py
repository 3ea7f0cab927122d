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

Public: :func:`soft_min`, :func:`hard_min`, :func:`mean_minus_var`, :func:`weighted_mean_var`.
Private, for the estimators: ``_soft_min`` (binding weights deferred) and ``_soft_min_neg_kz``
(the fused fast path that starts from ``-k Z``); tests pin both to :func:`soft_min`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    """Weighted soft-min of ``z`` across channels with risk coefficient ``k >= 0``::

        A = -(1/k) log( sum_j w_j exp(-k z_j) / sum_j w_j )      over active channels j

    Args:
        z: ``(N, M)`` scores.  k: 0 gives the weighted mean, ``inf`` gives the hard min.
        mask: ``(N, M)`` bool, or 0/1 floats, of the channels that count.
        weights: optional ``(M,)`` weights >= 0.  m_eff: optional ``(N,)`` count of masked-in channels.
    Returns:
        agg ``(N,)`` and binding weights ``(N, M)`` = ``softmax(-k z + log w)`` over active
        channels (0 on inactive channels and on rows with none).
    """
    agg, binding = _soft_min(z, k, mask, weights, m_eff)
    return agg, binding()


def _check_k(k) -> float:
    k = float(k)
    if math.isnan(k) or k < 0:
        raise ValueError(f"k: the risk coefficient must be >= 0, got {k}")
    return k


def _soft_min(
    z: torch.Tensor,
    k: float,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    m_eff: torch.Tensor | None = None,
    z_bound: float | None = None,
) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """:func:`soft_min` with the binding weights deferred: returns ``agg`` and a function that
    computes them (one more pass over ``(N, M)``, paid only by callers who log them).

    ``z_bound``: a known bound on ``|z|`` (z-scores of a group of G satisfy ``|Z| < sqrt(G)``),
    which spares a pass over ``z`` to decide whether exp() needs a shift.
    """
    k = _check_k(k)
    if math.isinf(k):
        agg, onehot = hard_min(z, None if mask is None else mask.bool(), weights)
        return agg, lambda: onehot
    zero = torch.zeros((), dtype=z.dtype)
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
    if k < _TAYLOR_K:
        # -(1/k) log E_w[exp(-k z)] = mean - k/2 var + k^2/6 kappa3 - ...  (cumulant expansion)
        mean, var, p = weighted_mean_var(z, wa > 0, weights)
        zc = torch.where(p > 0, z - mean.unsqueeze(1), zero)
        kappa3 = (p * zc.pow(3)).sum(dim=1)
        agg = mean - 0.5 * k * var + (k * k / 6.0) * kappa3
        any_active = wsum > 0
        return torch.where(any_active, agg, zero), _binding_fn(z.mul(-k), wa, k, z_bound)
    if k * z_bound < 60.0:  # exp(-k z) can neither overflow nor underflow: no shift needed
        return _soft_min_neg_kz(z.mul(-k), k, wa, wsum, z_bound)
    active = wa > 0 if active is None else active
    shift = torch.where(active, z, torch.inf).amin(dim=1, keepdim=True)  # (N, 1)
    shift = torch.where(torch.isfinite(shift), shift, zero)
    # <= 1 on active channels; inactive ones could overflow (z = 0 far below the shift): exp(-inf) = 0
    e = torch.where(active, (z - shift).mul_(-k), -torch.inf).exp_()  # (N, M)
    total = torch.bmm(e.unsqueeze(1), wa.unsqueeze(2)).view(-1)  # (N,), >= w of the binding channel
    tiny = torch.finfo(z.dtype).tiny
    agg = (wsum.clamp(min=tiny).log() - total.clamp(min=tiny).log()) / k + shift.squeeze(1)
    return torch.where(total > 0, agg, zero), lambda: (e * wa).div_(total.clamp(min=tiny).unsqueeze(1))


def _binding_fn(neg_kz: torch.Tensor, wa: torch.Tensor, k: float, z_bound: float) -> Callable[[], torch.Tensor]:
    """Deferred ``softmax(-k z + log w)`` from ``-k z`` (shifted per row when ``k * z_bound`` is large)."""

    def binding() -> torch.Tensor:
        y = neg_kz
        if k * z_bound >= 60.0:
            y = torch.where(wa > 0, neg_kz, -torch.inf)
            y = y - y.amax(dim=1, keepdim=True).nan_to_num(0.0, posinf=0.0, neginf=0.0)
        e = torch.where(wa > 0, y.exp() * wa, torch.zeros((), dtype=wa.dtype))
        return e / e.sum(dim=1, keepdim=True).clamp(min=torch.finfo(wa.dtype).tiny)

    return binding


def _soft_min_neg_kz(
    neg_kz: torch.Tensor, k: float, wa: torch.Tensor, wsum: torch.Tensor, z_bound: float
) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """The fused fast path: soft-min from ``-k Z`` (already computed in the z-score pass).

    Requires ``k >= 1e-5`` and ``k * z_bound < 60`` (no shift). ``wa``: ``(N, M)`` active weights
    (0 off), ``wsum``: ``(N,)`` their sums. For ``k * z_bound <= 2`` it sums ``expm1(-k Z)`` and takes
    ``log1p``, which keeps float32's digits at small k (the direct ``log(sum exp)`` cancels to
    ``k * mean`` and loses ``log10(1/k)`` of them); otherwise ``exp`` and ``log``.
    """
    tiny = torch.finfo(neg_kz.dtype).tiny
    if k * z_bound <= 2.0:
        em1 = neg_kz.expm1()  # (N, M)
        s1 = torch.bmm(em1.unsqueeze(1), wa.unsqueeze(2)).view(-1)  # (N,) sum_j w_j expm1(-k z_j)
        # mean expm1 >= exp(-2) - 1: log1p is well conditioned; a row with no active channel is 0/0 -> 0
        agg = torch.log1p(s1 / wsum).div_(-k).nan_to_num_(0.0)

        def binding() -> torch.Tensor:
            return (em1 + 1.0).mul_(wa).div_((s1 + wsum).clamp(min=tiny).unsqueeze(1))

        return agg, binding
    e = neg_kz.exp()  # (N, M), in [exp(-60), exp(60)]
    # masked row sums as a batched dot product: one read of e and wa, no (N, M) write
    total = torch.bmm(e.unsqueeze(1), wa.unsqueeze(2)).view(-1)  # (N,), > 0 where any active
    # A = log(sum w / sum w exp(-k z)) / k; a row with no active channel is 0 / 0 -> NaN -> 0
    agg = torch.log(wsum / total).div_(k).nan_to_num_(0.0)
    return agg, lambda: (e * wa).div_(total.clamp(min=tiny).unsqueeze(1))


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
