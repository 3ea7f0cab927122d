"""The result of :func:`rvpo.compute_advantages`: advantages plus lazily computed diagnostics.

Shapes: ``N`` completions, ``M`` channels, ``B`` groups (see :mod:`rvpo.core.groups`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch


def finite(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN -> 0 and +-inf -> the dtype's largest finite value (diagnostics never leak them)."""
    if not x.is_floating_point():
        return x
    big = torch.finfo(x.dtype).max
    return torch.nan_to_num(x, nan=0.0, posinf=big, neginf=-big)


@dataclass(eq=False)
class AdvantageOutput:
    """Advantages and diagnostics of one batch.

    Attributes:
        advantages: ``(N,)`` in the rewards' floating dtype (float32 for integer rewards); finite;
            0 for completions with no channel.
        aggregate: ``(N,)`` the per-completion aggregate before batch whitening (compute dtype).
        present: ``(N, M)`` bool, True where the channel scored the completion.
        m_eff: ``(N,)`` int64 number of present channels per completion.
        k: the risk coefficient used, a float (None for estimators without one); for an
            adaptive rule, the k it resolved to on this batch.
        n_nan / n_inf: ``(M,)`` abstentions (NaN) and non-finite inputs (+-inf) per channel.
        zero_spread: ``(B, M)`` True where a group's channel gave no signal (Z = 0).
        estimator: the registry name.
        extra: further scalar diagnostics (``k_adaptive/...`` for an adaptive k).
        reliability: ``(B, M)`` shrinkage factor of each group's channel under ``noise_floor``, or None.
        z: ``(N, M)`` per-channel group z-scores (0 where absent) or None (grpo); computed on first read.
        binding: ``(N, M)`` gradient weight of each channel in the aggregate, ``dA/dZ_j``
            (``softmax(-k Z)`` for rvpo); 0 where a channel is absent; computed on first read.
    """

    advantages: torch.Tensor
    aggregate: torch.Tensor
    present: torch.Tensor
    m_eff: torch.Tensor
    k: float | None
    n_nan: torch.Tensor
    n_inf: torch.Tensor
    zero_spread: torch.Tensor
    estimator: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    reliability: torch.Tensor | None = None
    z_fn: Callable[[], torch.Tensor] | None = field(default=None, repr=False)
    binding_fn: Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    @cached_property
    def z(self) -> torch.Tensor | None:
        """``(N, M)`` per-channel group z-scores (0 where absent), or None (grpo)."""
        return None if self.z_fn is None else self.z_fn()  # finite by construction (fuzz-tested)

    @cached_property
    def binding(self) -> torch.Tensor:
        """``(N, M)`` binding weights (one more ``(N, M)`` pass, paid on first read only)."""
        if self.binding_fn is None:
            return torch.zeros(self.present.shape, dtype=self.aggregate.dtype)
        return self.binding_fn()  # finite by construction (fuzz-tested)

    @property
    def scored(self) -> torch.Tensor:
        """``(N,)`` bool: completions with at least one present channel."""
        return self.m_eff > 0

    @property
    def binding_mean(self) -> torch.Tensor:
        """``(M,)`` mean binding weight per channel over scored completions (sums to 1 for rvpo)."""
        s = self.scored
        if not s.any():
            return torch.zeros(self.present.shape[1], dtype=torch.float64)
        return self.binding[s].double().mean(dim=0)

    @property
    def zero_spread_frac(self) -> torch.Tensor:
        """``(M,)`` share of the groups that score channel j in which it has no spread (0 if none scores it).

        Groups where the channel is absent (a prompt without that instruction or rubric item) are
        not counted: with variable M they would drown the signal.
        """
        b, m = self.zero_spread.shape if self.zero_spread.dim() == 2 else (0, self.present.shape[1])
        if b == 0:
            return torch.zeros(m, dtype=torch.float64)
        scored = self.present.reshape(b, -1, m).any(dim=1)  # (B, M)
        return (self.zero_spread & scored).sum(dim=0).double() / scored.sum(dim=0).clamp(min=1).double()

    @property
    def min_frac(self) -> torch.Tensor:
        """``(M,)`` fraction of scored completions whose lowest present Z is channel j."""
        m = self.present.shape[1]
        s = self.scored
        if self.z is None or not s.any():
            return torch.zeros(m, dtype=torch.float64)
        zz = torch.where(self.present, self.z, torch.tensor(torch.inf, dtype=self.z.dtype))[s]
        idx = zz.argmin(dim=1)
        return torch.bincount(idx, minlength=m).double() / idx.numel()

    def metrics(self, channel_names: Sequence[str] | None = None, prefix: str = "rvpo/") -> dict[str, float]:
        """Flat ``{name: float}`` diagnostics for loggers (TRL, verl, JSONL); every value finite."""
        m = self.present.shape[1]
        names = list(channel_names) if channel_names is not None else [str(j) for j in range(m)]
        if len(names) != m:
            raise ValueError(f"channel_names: got {len(names)} names for {m} channels")
        out: dict[str, float] = {}
        if self.k is not None and abs(float(self.k)) != float("inf"):  # hardmin (k = inf) logs no k
            out[f"{prefix}k"] = float(self.k)
        for key, v in self.extra.items():
            out[f"{prefix}{key}"] = float(v)
        out[f"{prefix}m_eff_mean"] = float(self.m_eff.double().mean()) if self.m_eff.numel() else 0.0
        out[f"{prefix}unscored_frac"] = float((~self.scored).double().mean()) if self.m_eff.numel() else 0.0
        bm, mf = self.binding_mean, self.min_frac
        zs = self.zero_spread_frac
        rel = None
        if self.reliability is not None and self.reliability.numel():
            rel = self.reliability.double().mean(dim=0)
        for j, name in enumerate(names):
            out[f"{prefix}binding/{name}"] = float(bm[j])
            out[f"{prefix}min_frac/{name}"] = float(mf[j])
            out[f"{prefix}abstain/{name}"] = float(self.n_nan[j])
            out[f"{prefix}nonfinite/{name}"] = float(self.n_inf[j])
            out[f"{prefix}zero_spread_frac/{name}"] = float(zs[j])
            if rel is not None:
                out[f"{prefix}reliability/{name}"] = float(rel[j])
        return {key: (v if v == v and abs(v) != float("inf") else 0.0) for key, v in out.items()}
