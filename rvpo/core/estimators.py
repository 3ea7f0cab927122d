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
advantage 0 and is left out of batch whitening. ``gdpo`` sums over present channels (as TRL's
``normalize_then_sum`` does), so with varying ``m_eff`` its scale differs from the mean-based
estimators; with every channel present, whitened ``rvpo`` at k -> 0 equals whitened ``gdpo``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import torch

from rvpo.core.aggregate import hard_min, mean_minus_var, soft_min_lazy
from rvpo.core.groups import RewardBatch, group_mean_std, group_zscores, make_batch, whiten


@dataclass(frozen=True)
class AdvantageParams:
    """Hyper-parameters shared by all estimators (each reads the ones it needs)."""

    k: float = 1.0
    """risk coefficient of the soft-min (rvpo): 0 is the mean, inf the hard min"""
    beta: float = 0.5
    """variance penalty of rvpo_explicit"""
    weights: Sequence[float] | torch.Tensor | None = None
    """one weight per channel (default all 1); must be >= 0 except for grpo and gdpo"""
    eps: float = 1e-6
    """added to every std before dividing (verl uses 1e-6, TRL 1e-4)"""
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
    extra: dict = field(default_factory=dict)
    """free-form parameters for user-registered estimators"""

    def __post_init__(self) -> None:
        for name in ("k", "beta", "eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name}: expected a number, got {v!r}")
            if math.isnan(v) or v < 0:
                raise ValueError(f"{name}: must be >= 0, got {v}")
        if math.isinf(self.beta) or math.isinf(self.eps):
            raise ValueError("beta and eps must be finite")
        if self.scale not in ("group", "batch", "none"):
            raise ValueError(f"scale: expected 'group', 'batch' or 'none', got {self.scale!r}")

    def weight_tensor(self, m: int) -> torch.Tensor | None:
        """The channel weights as a float64 ``(M,)`` tensor, or None; checks their number."""
        if self.weights is None:
            return None
        w = torch.as_tensor(self.weights, dtype=torch.float64).flatten()  # callers cast to their dtype
        if w.numel() != m:
            raise ValueError(f"weights: got {w.numel()} weights for {m} reward channels")
        if not torch.isfinite(w).all():
            raise ValueError("weights: must be finite")
        return w


@dataclass
class AdvantageOutput:
    """Advantages and diagnostics of one batch.

    Attributes:
        advantages: ``(N,)`` in the rewards' dtype; finite; 0 for completions with no channel.
        aggregate: ``(N,)`` the per-completion aggregate before batch whitening.
        z: ``(N, M)`` per-channel group z-scores (0 where absent) or None (grpo).
        binding: ``(N, M)`` gradient weight of each channel in the aggregate, ``dA/dZ_j``
            (``softmax(-k Z)`` for rvpo); 0 where a channel is absent.
        present: ``(N, M)`` bool, True where the channel scored the completion.
        m_eff: ``(N,)`` int64 number of present channels per completion.
        k: the risk coefficient used (None for estimators without one).
        n_nan / n_inf: ``(M,)`` abstentions (NaN) and non-finite inputs (+-inf) per channel.
        zero_spread: ``(B, M)`` True where a group's channel had no spread (gave Z = 0).
        estimator: the registry name.
    """

    advantages: torch.Tensor
    aggregate: torch.Tensor
    z_source: torch.Tensor | Callable[[], torch.Tensor] | None
    binding_source: torch.Tensor | Callable[[], torch.Tensor]
    present: torch.Tensor
    m_eff: torch.Tensor
    k: float | None
    n_nan: torch.Tensor
    n_inf: torch.Tensor
    zero_spread: torch.Tensor
    estimator: str = ""

    @property
    def z(self) -> torch.Tensor | None:
        """``(N, M)`` per-channel group z-scores (0 where absent), or None (grpo)."""
        if callable(self.z_source):
            self.z_source = self.z_source()
        return self.z_source

    @property
    def binding(self) -> torch.Tensor:
        """``(N, M)`` binding weights, computed on first access (they cost one more ``(N, M)`` pass)."""
        if callable(self.binding_source):
            self.binding_source = self.binding_source()
        return self.binding_source

    @property
    def scored(self) -> torch.Tensor:
        """``(N,)`` bool: completions with at least one present channel."""
        return self.m_eff > 0

    @property
    def binding_mean(self) -> torch.Tensor:
        """``(M,)`` mean binding weight per channel over scored completions (sums to 1 for rvpo)."""
        s = self.scored
        if not s.any():
            return torch.zeros(self.binding.shape[1], dtype=torch.float64)
        return self.binding[s].double().mean(dim=0)

    @property
    def min_frac(self) -> torch.Tensor:
        """``(M,)`` fraction of scored completions whose lowest present Z is channel j."""
        m = self.binding.shape[1]
        s = self.scored
        if self.z is None or not s.any():
            return torch.zeros(m, dtype=torch.float64)
        zz = torch.where(self.present, self.z, torch.tensor(torch.inf, dtype=self.z.dtype))[s]
        idx = zz.argmin(dim=1)
        return torch.bincount(idx, minlength=m).double() / idx.numel()

    def metrics(self, channel_names: Sequence[str] | None = None, prefix: str = "rvpo/") -> dict[str, float]:
        """Flat ``{name: float}`` diagnostics for loggers (TRL, verl, JSONL)."""
        m = self.binding.shape[1]
        names = list(channel_names) if channel_names is not None else [str(j) for j in range(m)]
        if len(names) != m:
            raise ValueError(f"channel_names: got {len(names)} names for {m} channels")
        out: dict[str, float] = {}
        if self.k is not None:
            out[f"{prefix}k"] = float(self.k)
        out[f"{prefix}m_eff_mean"] = float(self.m_eff.double().mean()) if self.m_eff.numel() else 0.0
        out[f"{prefix}unscored_frac"] = float((~self.scored).double().mean()) if self.m_eff.numel() else 0.0
        bm, mf = self.binding_mean, self.min_frac
        zs = self.zero_spread.double().mean(dim=0) if self.zero_spread.numel() else torch.zeros(m)
        for j, name in enumerate(names):
            out[f"{prefix}binding/{name}"] = float(bm[j])
            out[f"{prefix}min_frac/{name}"] = float(mf[j])
            out[f"{prefix}abstain/{name}"] = float(self.n_nan[j])
            out[f"{prefix}nonfinite/{name}"] = float(self.n_inf[j])
            out[f"{prefix}zero_spread_frac/{name}"] = float(zs[j])
        return out


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
    z: torch.Tensor | Callable[[], torch.Tensor] | None,
    zero_spread: torch.Tensor,
    binding: torch.Tensor | Callable[[], torch.Tensor],
    k: float | None,
    whiten_batch: bool,
) -> AdvantageOutput:
    """Shared tail: batch whitening, zero for unscored completions, dtype, diagnostics."""
    scored = batch.m_eff > 0
    agg = torch.where(scored, agg, torch.zeros((), dtype=agg.dtype))
    adv = whiten(agg, scored, p.eps, p.unbiased) if whiten_batch else agg
    adv = torch.nan_to_num(adv, nan=0.0, posinf=0.0, neginf=0.0)  # belt and braces: never leaks
    return AdvantageOutput(
        advantages=adv.to(batch.dtype),
        aggregate=agg,
        z_source=z,
        binding_source=binding,
        present=batch.present,
        m_eff=batch.m_eff,
        k=k,
        n_nan=batch.n_nan,
        n_inf=batch.n_inf,
        zero_spread=zero_spread,
        estimator=name,
    )


def _weight_shares(batch: RewardBatch, w: torch.Tensor | None):
    """Binding weights of a weighted sum, computed on first access: each present channel's share
    ``|w_j| / sum |w|`` (uniform over present channels when ``w`` is None)."""
    dtype = batch.presence.dtype

    def binding() -> torch.Tensor:  # (N, M)
        if w is None:
            return batch.presence / batch.m_eff.clamp(min=1).unsqueeze(1).to(dtype)
        share = torch.where(batch.present, w.abs().to(dtype), torch.zeros((), dtype=dtype))
        return share / share.sum(dim=1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)

    return binding


@register_estimator("grpo")
def grpo(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """GRPO: weighted sum of raw rewards over present channels, then group-normalise.

    ``scale``: ``group`` divides by the group std of the sums, ``batch`` by the std of all sums in
    the batch, ``none`` only centres (Dr. GRPO). No batch whitening.
    """
    m = batch.num_channels
    w = p.weight_tensor(m)
    w = torch.ones(m, dtype=torch.float64) if w is None else w
    scored = batch.present.any(dim=1, keepdim=True)  # (N, 1)
    # raw rewards times arbitrary weights: sum in float64 (cheap: one (N, M) pass) so it cannot overflow
    s = (batch.values.double() * w).sum(dim=1, keepdim=True)  # (N, 1); absent channels are 0
    mean, std, count = group_mean_std(s, scored, batch.group_size, p.unbiased)  # (B, 1, 1)
    sg = s.view(-1, batch.group_size, 1)
    adv = sg - mean
    if p.scale == "group":
        adv = adv / (std + p.eps)
    elif p.scale == "batch":
        _, bstd, _ = group_mean_std(s, scored, s.shape[0], p.unbiased)
        adv = adv / (bstd + p.eps)
    adv = torch.where(count >= 2, adv, torch.zeros((), dtype=adv.dtype)).view(-1)
    binding = _weight_shares(batch, p.weight_tensor(m))
    zero = torch.zeros(batch.num_completions // batch.group_size, m, dtype=torch.bool)
    return _finish(batch, p, "grpo", adv, None, zero, binding, None, whiten_batch=False)


@register_estimator("gdpo")
def gdpo(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """GDPO: per-channel group z-score, weighted sum over present channels, batch whitening."""
    z, zero_spread = group_zscores(batch, p.eps, p.unbiased)
    w = p.weight_tensor(batch.num_channels)
    agg = z.sum(dim=1) if w is None else (z * w.to(z.dtype)).sum(dim=1)  # (N,); absent channels have Z = 0
    binding = _weight_shares(batch, w)
    return _finish(batch, p, "gdpo", agg, z, zero_spread, binding, None, p.whiten)


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
    w = p.weight_tensor(batch.num_channels)
    if 1e-5 <= p.k < 60.0 / bound:  # the common case: get -k Z in the z-score pass, Z itself lazily
        neg_kz, zero_spread = group_zscores(batch, p.eps, p.unbiased, factor=-p.k)
        mask, m_agg = _aggregation_mask(batch, zero_spread, p)
        agg, binding = soft_min_lazy(neg_kz, p.k, mask, w, m_eff=m_agg, z_bound=bound, neg_kz=neg_kz)

        def z():
            return neg_kz * (-1.0 / p.k)
    else:
        z, zero_spread = group_zscores(batch, p.eps, p.unbiased)
        mask, m_agg = _aggregation_mask(batch, zero_spread, p)
        agg, binding = soft_min_lazy(z, p.k, mask, w, m_eff=m_agg, z_bound=bound)
    return _finish(batch, p, "rvpo", agg, z, zero_spread, binding, float(p.k), p.whiten)


@register_estimator("rvpo_explicit")
def rvpo_explicit(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """RVPO-explicit: ``mean_j Z - beta * var_j Z`` over present channels, batch whitening."""
    z, zero_spread = group_zscores(batch, p.eps, p.unbiased)
    mask, _ = _aggregation_mask(batch, zero_spread, p)
    agg, binding = mean_minus_var(z, p.beta, mask.bool(), p.weight_tensor(batch.num_channels))
    return _finish(batch, p, "rvpo_explicit", agg, z, zero_spread, binding, None, p.whiten)


@register_estimator("hardmin")
def hardmin(batch: RewardBatch, p: AdvantageParams) -> AdvantageOutput:
    """Hard-min: ``min_j Z`` over present channels (the k -> inf limit of rvpo), batch whitening."""
    z, zero_spread = group_zscores(batch, p.eps, p.unbiased)
    mask, _ = _aggregation_mask(batch, zero_spread, p)
    agg, binding = hard_min(z, mask.bool(), p.weight_tensor(batch.num_channels))
    return _finish(batch, p, "hardmin", agg, z, zero_spread, binding, math.inf, p.whiten)


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
