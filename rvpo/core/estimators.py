"""Multi-reward advantage estimators and their registry.

Every estimator has one signature, ``fn(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput``,
so that callers (TRL, verl, the simulation) never branch on the estimator's name. The public entry
point is :func:`compute_advantages`. Shapes follow the notation of :mod:`rvpo.core.groups`.

| name           | per completion g (Z = per-channel group z-score)         | then           | source |
|----------------|-----------------------------------------------------------|----------------|--------|
| ``grpo``       | ``s = sum_j w_j r_j``; ``(s - mean_G s) / (std s + eps)``  | -              | DeepSeekMath 2402.03300 |
| ``gdpo``       | ``sum_j w_j Z_j``                                          | batch whitening| GDPO 2601.05242 |
| ``rvpo``       | ``-(1/k) log(sum_j w_j exp(-k Z_j) / sum_j w_j)``         | batch whitening| RVPO 2605.05750 |
| ``rvpo_explicit`` | ``mean_j Z_j - beta var_j Z_j``                        | batch whitening| RVPO 2605.05750 |
| ``hardmin``    | ``min_j Z_j``                                              | batch whitening| RVPO 2605.05750 (k -> inf) |

Abstentions (NaN / inf): left out of group statistics and of the completion's aggregate, so a
completion's M is its number of present channels (``m_eff``); a completion with none gets
advantage 0 and is left out of batch whitening. A channel of weight 0 (a monitor-only channel) is
treated like an abstaining one for the advantages of every estimator: it is out of every aggregate
(the soft-min's M, the hard-min, the mean-variance) and a completion scored only by such channels
counts as unscored; its diagnostics (z-scores, abstentions) are still reported. ``gdpo`` sums over present channels (as TRL's
``normalize_then_sum`` does), so with varying ``m_eff`` its scale differs from the mean-based
estimators; with every channel present, whitened ``rvpo`` at k -> 0 equals whitened ``gdpo``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rvpo.core.adaptive import AdaptiveK, solve_adaptive_k
from rvpo.core.aggregate import _soft_min, _soft_min_neg_kz, hard_min, mean_minus_var
from rvpo.core.groups import (
    DEFAULT_EPS,
    RewardBatch,
    _group_zscores,
    group_mean_std,
    make_batch,
    noise_reliability,
    whiten,
)
from rvpo.core.output import AdvantageOutput, finite


def _flag(name: str, v: Any) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise ValueError(f"{name}: expected True or False, got {v!r}")


@dataclass(frozen=True)
class AdvantageParams:
    """Hyper-parameters shared by all estimators (each reads the ones it needs)."""

    k: float | AdaptiveK = 1.0
    """risk coefficient of the soft-min (rvpo): 0 is the mean, inf the hard min; or an adaptive rule"""
    beta: float = 0.5
    """variance penalty of rvpo_explicit"""
    weights: Sequence[float] | torch.Tensor | None = None
    """one weight per channel (default all 1); must be >= 0 except for grpo and gdpo"""
    eps: float = DEFAULT_EPS
    """added to every std before dividing (TRL uses 1e-4, verl 1e-6); 0 is allowed"""
    unbiased: bool = True
    """unbiased (n-1) standard deviations, as TRL and verl use"""
    whiten: bool = True
    """batch whitening of the aggregate (gdpo, rvpo, rvpo_explicit, hardmin)"""
    drop_zero_spread: bool = False
    """rvpo / rvpo_explicit / hardmin: leave a channel out of a group's aggregate when it has no
    spread in that group (all completions scored alike). Default False: it takes part with Z = 0,
    as in the paper's formula (and so that whitened rvpo at k -> 0 equals whitened gdpo); then a
    channel everyone satisfied still pulls positive advantages towards 0 inside the soft-min"""
    scale: Literal["group", "batch", "none"] = "group"
    """grpo only: divide by the group std, the batch std, or nothing (Dr. GRPO)"""
    noise_floor: float | Sequence[float] | None = None
    """known measurement-noise std of each channel (one number for all, or one per channel, in
    reward units; None = off): a group's z-scores are shrunk by max(0, 1 - floor^2 / var), the
    share of the observed in-group variance that is signal, so a judge that answers at random
    (floor^2 = its variance) gives Z ~ 0 instead of binding the soft-min on noise"""
    extra: dict = field(default_factory=dict)
    """free-form parameters for user-registered estimators"""

    def __post_init__(self) -> None:
        names = ("beta", "eps") if isinstance(self.k, AdaptiveK) else ("k", "beta", "eps")
        for name in names:
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name}: expected a number, got {v!r}")
            v = float(v)  # numpy scalars too
            if math.isnan(v) or v < 0:
                raise ValueError(f"{name}: must be >= 0, got {v}")
            object.__setattr__(self, name, v)
        if math.isinf(self.beta) or math.isinf(self.eps):
            raise ValueError("beta and eps must be finite")
        for name in ("unbiased", "whiten", "drop_zero_spread"):
            object.__setattr__(self, name, _flag(name, getattr(self, name)))
        if self.scale not in ("group", "batch", "none"):
            raise ValueError(f"scale: expected 'group', 'batch' or 'none', got {self.scale!r}")
        if self.noise_floor is not None:
            try:
                nf = torch.as_tensor(self.noise_floor, dtype=torch.float64).flatten()
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"noise_floor: expected numbers, got {self.noise_floor!r}") from None
            if nf.numel() == 0 or not torch.isfinite(nf).all() or (nf < 0).any():
                raise ValueError(f"noise_floor: expected finite numbers >= 0, got {self.noise_floor!r}")

    def weight_tensor(self, m: int) -> torch.Tensor | None:
        """The channel weights as a float64 ``(M,)`` tensor, or None; checks their number."""
        if self.weights is None:
            return None
        try:
            w = torch.as_tensor(self.weights, dtype=torch.float64).flatten()  # callers cast to their dtype
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"weights: expected numbers, got {self.weights!r} ({e})") from None
        if w.numel() != m:
            raise ValueError(f"weights: got {w.numel()} weights for {m} reward channels")
        if not torch.isfinite(w).all():
            raise ValueError("weights: must be finite")
        return w

    def floor_tensor(self, m: int) -> torch.Tensor | None:
        """``noise_floor`` as a float64 ``(M,)`` tensor, or None."""
        if self.noise_floor is None:
            return None
        nf = torch.as_tensor(self.noise_floor, dtype=torch.float64).flatten()
        if nf.numel() == 1:
            return nf.expand(m)
        if nf.numel() != m:
            raise ValueError(f"noise_floor: got {nf.numel()} values for {m} reward channels")
        return nf


EstimatorFn = Callable[[RewardBatch, AdvantageParams], AdvantageOutput]
ESTIMATORS: dict[str, EstimatorFn] = {}


def register_estimator(name: str) -> Callable[[EstimatorFn], EstimatorFn]:
    """Decorator: register ``fn(batch, params) -> AdvantageOutput`` under ``name``.

    Registering a different function under a taken name raises ``ValueError``.
    """

    def decorator(fn: EstimatorFn) -> EstimatorFn:
        if name in ESTIMATORS and ESTIMATORS[name] is not fn:
            raise ValueError(f"estimator {name!r} is already registered ({ESTIMATORS[name].__module__})")
        ESTIMATORS[name] = fn
        return fn

    return decorator


def get_estimator(name: str) -> EstimatorFn:
    """Look up a registered estimator, or import one by dotted path (``pkg.mod:fn`` or ``pkg.mod.fn``)."""
    if name in ESTIMATORS:
        return ESTIMATORS[name]
    if "." in name or ":" in name:
        mod_name, _, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"estimator: cannot import {name!r}: {e}") from None
        if not callable(fn):
            raise ValueError(f"estimator: {name!r} is not callable")
        return fn
    raise ValueError(f"estimator: unknown name {name!r}; registered: {sorted(ESTIMATORS)} (or a dotted import path)")


def _finish(
    batch: RewardBatch,
    p: AdvantageParams,
    name: str,
    agg: torch.Tensor,
    *,
    z: Callable[[], torch.Tensor] | torch.Tensor | None,
    binding: Callable[[], torch.Tensor],
    zero_spread: torch.Tensor,
    k: float | None = None,
    whiten_batch: bool = True,
    eps: float | None = None,
    extra: dict | None = None,
    reliability: torch.Tensor | None = None,
) -> AdvantageOutput:
    """Shared tail: batch whitening, zero for unscored completions, the caller's dtype, diagnostics.

    ``eps``: the whitening eps (default ``p.eps``; rescaled when the aggregate was). A completion
    whose only present channels have weight 0 is unscored (advantage 0, out of the whitening), as if
    those channels abstained: a zero-weight (monitor-only) channel has no influence at all.
    """
    scored = _scored(batch, p)
    agg = torch.where(scored, finite(agg), torch.zeros((), dtype=agg.dtype))
    adv = whiten(agg, scored, p.eps if eps is None else eps, p.unbiased) if whiten_batch else agg
    big = torch.finfo(batch.dtype).max  # e.g. float16: clip instead of overflowing to inf
    adv = torch.nan_to_num(adv, nan=0.0, posinf=0.0, neginf=0.0).clamp_(-big, big)
    z_fn = z if callable(z) or z is None else (lambda: z)
    return AdvantageOutput(
        advantages=adv.to(batch.dtype), aggregate=agg, present=batch.present, m_eff=batch.m_eff,
        k=k, n_nan=batch.n_nan, n_inf=batch.n_inf, zero_spread=zero_spread, estimator=name,
        extra=extra or {}, reliability=reliability, z_fn=z_fn, binding_fn=binding,
    )


def _scored(batch: RewardBatch, p: AdvantageParams) -> torch.Tensor:
    """``(N,)`` bool: completions with at least one present channel of non-zero weight."""
    w = p.weight_tensor(batch.num_channels)
    if w is None or bool((w != 0).all()):
        return batch.m_eff > 0
    return (batch.present & (w != 0)).any(dim=1)


def _weight_shares(batch: RewardBatch, w: torch.Tensor | None):
    """Binding weights of a weighted sum, computed on first access: each present channel's share
    ``|w_j| / sum |w|`` (uniform over present channels when ``w`` is None)."""
    dtype = batch.presence.dtype
    if w is not None:  # shares are scale-free: normalise so that huge weights cannot overflow
        wmax = float(w.abs().max()) if w.numel() else 0.0
        w = w / wmax if wmax > 0 else w

    def binding() -> torch.Tensor:  # (N, M)
        if w is None:
            return batch.presence / batch.m_eff.clamp(min=1).unsqueeze(1).to(dtype)
        share = torch.where(batch.present, w.abs().to(dtype), torch.zeros((), dtype=dtype))
        return share / share.sum(dim=1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)

    return binding


def _unit_weights(w: torch.Tensor | None) -> tuple[torch.Tensor | None, float]:
    """``(w / max|w|, max|w|)``: the estimators are invariant to (or undo) this scale, and it
    keeps weighted sums of z-scores from overflowing whatever the weights' magnitude."""
    if w is None:
        return None, 1.0
    wmax = float(w.abs().max()) if w.numel() else 0.0
    return (w / wmax, wmax) if wmax > 0 else (w, 1.0)


def _zscores(batch: RewardBatch, p: AdvantageParams, factor: float = 1.0):
    """Z (times ``factor``), zero-spread ``(B, M)`` and the noise-floor reliability ``(B, M)`` (or None)."""
    z, zero_spread = _group_zscores(batch, p.eps, p.unbiased, factor)
    floor = p.floor_tensor(batch.num_channels)
    if floor is None:
        return z, zero_spread, None
    rel = noise_reliability(batch, floor, p.unbiased)  # (B, M)
    g, m = batch.group_size, batch.num_channels
    z = (z.view(-1, g, m) * rel.unsqueeze(1).to(z.dtype)).view(-1, m)
    return z, zero_spread | (rel == 0), rel


@register_estimator("grpo")
def grpo(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """GRPO: weighted sum of raw rewards over present channels, then group-normalise.

    ``scale``: ``group`` divides by the group std of the sums, ``batch`` by the std of all sums in
    the batch, ``none`` only centres (Dr. GRPO). No batch whitening.
    """
    m = batch.num_channels
    w, wmax = _unit_weights(p.weight_tensor(m))
    w = torch.ones(m, dtype=torch.float64) if w is None else w
    scored = _scored(batch, p).unsqueeze(1)  # (N, 1); weight-0 channels alone do not score
    # raw rewards times weights scaled to max 1, summed in float64: cannot overflow
    s = (batch.values.double() * w).sum(dim=1, keepdim=True)  # (N, 1); absent channels are 0
    mean, std, count = group_mean_std(s, scored, batch.group_size, p.unbiased)  # (B, 1, 1)
    adv = s.view(-1, batch.group_size, 1) - mean
    if p.scale == "group":
        adv = adv / (std + p.eps / wmax)  # = (s wmax - mean) / (std wmax + eps)
    elif p.scale == "batch":
        _, bstd, _ = group_mean_std(s, scored, s.shape[0], p.unbiased)
        adv = adv / (bstd + p.eps / wmax)
    else:
        adv = adv * wmax
    adv = torch.where(count >= 2, adv, torch.zeros((), dtype=adv.dtype)).view(-1)
    big = torch.finfo(batch.values.dtype).max
    adv = finite(adv).clamp_(-big, big).to(batch.values.dtype)
    binding = _weight_shares(batch, p.weight_tensor(m))
    zero = torch.zeros(batch.num_completions // batch.group_size, m, dtype=torch.bool)
    return _finish(batch, p, "grpo", adv, z=None, binding=binding, zero_spread=zero, whiten_batch=False)


@register_estimator("gdpo")
def gdpo(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """GDPO: per-channel group z-score, weighted sum over present channels, batch whitening."""
    z, zero_spread, rel = _zscores(batch, p)
    w0 = p.weight_tensor(batch.num_channels)
    w, wmax = _unit_weights(w0)
    agg = z.sum(dim=1) if w is None else (z * w.to(z.dtype)).sum(dim=1)  # (N,); absent channels have Z = 0
    eps = p.eps
    if wmax != 1.0:  # the aggregate is in units of wmax: whiten with eps / wmax (the same number)
        eps = p.eps / wmax
        if not p.whiten:
            big = torch.finfo(agg.dtype).max
            agg = (agg.double() * wmax).clamp_(-big, big).to(agg.dtype)
    return _finish(batch, p, "gdpo", agg, z=z, binding=_weight_shares(batch, w0), zero_spread=zero_spread,
                   whiten_batch=p.whiten, eps=eps, reliability=rel)


def _aggregation_mask(batch: RewardBatch, zero_spread: torch.Tensor, p: AdvantageParams):
    """``(N, M)`` 0/1 float mask of the channels in each completion's aggregate, and their ``(N,)`` count."""
    if not p.drop_zero_spread:
        return batch.presence, batch.m_eff
    g, m = batch.group_size, batch.num_channels
    informative = ~zero_spread.unsqueeze(1).expand(-1, g, m).reshape(-1, m)  # (N, M)
    mask = (batch.present & informative).to(batch.values.dtype)
    return mask, mask.sum(dim=1)


@register_estimator("rvpo")
def rvpo(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """RVPO: per-channel group z-score, weighted soft-min with risk ``k``, batch whitening."""
    # |Z| < sqrt(G) for a z-score over G values, so the soft-min can skip its overflow check
    bound = math.sqrt(batch.group_size)
    w, _ = _unit_weights(p.weight_tensor(batch.num_channels))
    extra: dict[str, float] = {}
    k = p.k
    if isinstance(k, AdaptiveK):
        z, zero_spread, rel = _zscores(batch, p)
        mask, m_agg = _aggregation_mask(batch, zero_spread, p)
        k, info = solve_adaptive_k(z, mask, k, w)
        extra = {f"k_adaptive/{key}": v for key, v in info.items()}
        agg, binding = _soft_min(z, k, mask, w, m_eff=m_agg, z_bound=bound)
    elif 1e-5 <= k < 60.0 / bound:
        # the common case: get -k Z in the z-score pass, Z itself lazily
        neg_kz, zero_spread, rel = _zscores(batch, p, factor=-k)
        mask, m_agg = _aggregation_mask(batch, zero_spread, p)
        if w is None:
            wa, wsum = mask, m_agg.to(neg_kz.dtype)
        else:  # weights of absent channels are 0; soft-min weights are >= 0
            if (w < 0).any():
                raise ValueError("weights: soft-min, mean-variance and hard-min need finite weights >= 0")
            wa = mask * w.to(neg_kz.dtype)
            wsum = wa.sum(dim=1)
        agg, binding = _soft_min_neg_kz(neg_kz, k, wa, wsum, bound)

        def z():
            return neg_kz * (-1.0 / k)
    else:
        z, zero_spread, rel = _zscores(batch, p)
        mask, m_agg = _aggregation_mask(batch, zero_spread, p)
        agg, binding = _soft_min(z, k, mask, w, m_eff=m_agg, z_bound=bound)
    return _finish(batch, p, "rvpo", agg, z=z, binding=binding, zero_spread=zero_spread, k=float(k),
                   whiten_batch=p.whiten, extra=extra, reliability=rel)


@register_estimator("rvpo_explicit")
def rvpo_explicit(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """RVPO-explicit: ``mean_j Z - beta * var_j Z`` over present channels, batch whitening."""
    z, zero_spread, rel = _zscores(batch, p)
    mask, _ = _aggregation_mask(batch, zero_spread, p)
    w, _ = _unit_weights(p.weight_tensor(batch.num_channels))
    agg, grad = mean_minus_var(z, p.beta, mask.bool(), w)
    return _finish(batch, p, "rvpo_explicit", agg, z=z, binding=lambda: grad, zero_spread=zero_spread,
                   whiten_batch=p.whiten, reliability=rel)


@register_estimator("hardmin")
def hardmin(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """Hard-min: ``min_j Z`` over present channels (the k -> inf limit of rvpo), batch whitening."""
    z, zero_spread, rel = _zscores(batch, p)
    mask, _ = _aggregation_mask(batch, zero_spread, p)
    w, _ = _unit_weights(p.weight_tensor(batch.num_channels))
    agg, onehot = hard_min(z, mask.bool(), w)
    return _finish(batch, p, "hardmin", agg, z=z, binding=lambda: onehot, zero_spread=zero_spread,
                   k=math.inf, whiten_batch=p.whiten, reliability=rel)


_PARAM_NAMES = {f.name for f in dataclasses.fields(AdvantageParams)}


def compute_advantages(
    rewards: torch.Tensor, group_size: int, estimator: str = "rvpo", **params: Any
) -> AdvantageOutput:
    """Advantages of ``N = B * G`` completions scored on ``M`` reward channels.

    Args:
        rewards: ``(N, M)`` float tensor (``(N,)`` means one channel); completions in contiguous
            groups of ``group_size`` per prompt; NaN (or +-inf) means the channel abstains.
        group_size: ``G``.
        estimator: a registered name (``grpo``, ``gdpo``, ``rvpo``, ``rvpo_explicit``,
            ``hardmin``, or your own) or a dotted import path.
        **params: fields of :class:`AdvantageParams` (``k``, ``beta``, ``weights``, ``eps``,
            ``unbiased``, ``whiten``, ``scale``, ``extra``).

    Returns:
        :class:`AdvantageOutput`; ``.advantages`` is ``(N,)``, finite whatever the input.

    >>> out = compute_advantages(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]), 4, k=1.0)
    >>> out.advantages.shape
    torch.Size([4])
    """
    unknown = set(params) - _PARAM_NAMES
    if unknown:
        raise ValueError(f"unknown advantage parameter(s) {sorted(unknown)}; valid: {sorted(_PARAM_NAMES)}")
    fn = get_estimator(estimator)
    p = AdvantageParams(**params)
    batch = make_batch(rewards, group_size)
    return fn(batch, p)
