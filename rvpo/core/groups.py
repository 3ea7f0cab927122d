"""NaN-aware group statistics: sanitising rewards, per-channel group z-scores, batch whitening.

Notation used for tensor shapes throughout ``rvpo.core``:
    N  completions in the batch, in contiguous groups of ``G`` (``group_size``) per prompt
    B  prompts (groups), ``N = B * G``
    M  reward channels (the largest M of any prompt; a prompt with fewer channels pads with NaN)

Conventions (one place, used by every estimator):
    * A reward that is NaN, +inf or -inf *abstains*: it is left out of its group's statistics and
      out of its completion's aggregate. NaN is the declared abstention (a reward function returned
      ``None``); +-inf is counted separately as a non-finite input, then treated the same way.
    * Statistics are computed in the rewards' dtype (float32, or float64 when given float64).
      Finite inputs are clipped to ``finfo.max / (4 G)`` so that group sums cannot overflow, and
      when magnitudes are too large to square safely, deviations are rescaled by their largest
      magnitude before squaring: nothing non-finite leaves here, whatever comes in.
    * A (group, channel) with fewer than two present values, or with zero spread, gives Z = 0.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch

DEFAULT_EPS = 1e-4
"""The one eps default (added to every std before dividing), of every function and layer: TRL's, so
that ``gdpo`` with the defaults is exactly TRL's ``normalize_then_sum``. It damps a z-score by
``eps / std`` (3e-4 relative for a binary channel with one success in 16), so it only matters for
channels whose in-group spread is below ~1e-2. verl's own estimators use 1e-6: pass it for
bit-parity with them."""



@dataclass(frozen=True)
class RewardBatch:
    """Sanitised rewards of one batch, grouped by prompt.

    Attributes:
        values: ``(N, M)`` float32/float64 rewards; 0.0 where the channel abstains.
        present: ``(N, M)`` bool, True where the reward is finite (the channel scores this completion).
        presence: ``(N, M)`` the same as 0/1 floats (counts are float sums: much faster than bool sums).
        m_eff: ``(N,)`` int64, number of channels present for each completion.
        group_size: ``G``; completions ``[b*G, (b+1)*G)`` answer prompt ``b``.
        n_nan: ``(M,)`` int64, NaN entries per channel (declared abstentions).
        n_inf: ``(M,)`` int64, +-inf entries per channel (non-finite inputs, treated as abstentions).
        dtype: dtype of the caller's rewards; outputs are returned in it.
    """

    values: torch.Tensor
    present: torch.Tensor
    presence: torch.Tensor
    m_eff: torch.Tensor
    group_size: int
    n_nan: torch.Tensor
    n_inf: torch.Tensor
    dtype: torch.dtype

    @property
    def num_completions(self) -> int:
        return self.values.shape[0]

    @property
    def num_channels(self) -> int:
        return self.values.shape[1]


def _as_rewards(rewards) -> torch.Tensor:
    """Tensor view of ``rewards``: lists may hold ``None`` (abstain); ints become float32."""
    if isinstance(rewards, torch.Tensor):
        r = rewards
    elif getattr(rewards, "dtype", None) is not None and getattr(rewards.dtype, "kind", "O") in "biufc":
        r = torch.as_tensor(rewards)  # a numpy array keeps its dtype (float64 stays float64)
    else:
        try:
            r = torch.as_tensor(rewards, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            import numpy as np

            try:  # numpy turns None into NaN: the documented abstention
                r = torch.as_tensor(np.array(rewards, dtype=np.float64)).to(torch.float32)
            except (TypeError, ValueError) as e:
                raise ValueError(f"rewards: expected an (N, M) array of numbers (None = abstain): {e}") from None
    if r.is_complex():
        raise ValueError(f"rewards: complex values are not rewards (dtype {r.dtype})")
    if r.dtype == torch.bool or not r.is_floating_point():
        r = r.to(torch.float32)
    return r


def _group_size(group_size) -> int:
    if isinstance(group_size, bool):
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
    try:
        g = operator.index(group_size)  # int, numpy integers, 0-d integer tensors
    except TypeError:
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}") from None
    if g < 1:
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
    return int(g)


def make_batch(rewards: torch.Tensor, group_size: int) -> RewardBatch:
    """Validate and sanitise ``rewards`` of shape ``(N, M)`` (or ``(N,)`` for one channel).

    Accepts tensors of any real dtype (float16 / bfloat16 / integers are computed in float32,
    float64 in float64), numpy arrays and nested lists (``None`` = abstain). Raises ``ValueError``
    naming the offending argument for a bad shape, dtype or group size.
    """
    rewards = _as_rewards(rewards)
    if rewards.dim() == 1:
        rewards = rewards.unsqueeze(1)  # (N,) -> (N, 1)
    if rewards.dim() != 2:
        raise ValueError(f"rewards: expected a (N, M) tensor, got shape {tuple(rewards.shape)}")
    if rewards.shape[1] == 0:
        raise ValueError(f"rewards: need at least one reward channel, got shape {tuple(rewards.shape)}")
    group_size = _group_size(group_size)
    n = rewards.shape[0]
    if n % group_size != 0:
        raise ValueError(
            f"group_size: N={n} completions is not a multiple of group_size={group_size} "
            "(completions must come in contiguous, complete groups)"
        )
    r = rewards.detach()
    if r.dtype not in (torch.float32, torch.float64):
        r = r.to(torch.float32)  # half/bfloat16 rewards are summed and squared in float32
    # presence as 0/1 floats: r - r is 0 where finite and NaN elsewhere (cheaper than isfinite, and
    # float sums are much cheaper than bool sums)
    presence = torch.nan_to_num_((r - r).add_(1.0), nan=0.0)  # (N, M)
    missing = n - presence.sum(dim=0)  # (M,)
    if missing.any() and not torch.isfinite(torch.nansum(r)):  # maybe an inf (or a huge sum): count
        n_nan = torch.isnan(r).to(r.dtype).sum(dim=0)
        n_inf = missing - n_nan
    else:  # only NaN is missing
        n_nan, n_inf = missing, torch.zeros_like(missing)
    # clip so that a sum over a group cannot overflow (|r| <= max / (4 G)); inputs that large carry
    # no usable precision anyway
    lim = torch.finfo(r.dtype).max / (4 * group_size)
    values = torch.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0).clamp_(-lim, lim)
    return RewardBatch(
        values=values,
        present=presence.bool(),
        presence=presence,
        m_eff=presence.sum(dim=1).to(torch.int64),
        group_size=group_size,
        n_nan=n_nan.to(torch.int64),
        n_inf=n_inf.to(torch.int64),
        dtype=rewards.dtype,
    )


def group_mean_std(
    values: torch.Tensor, present: torch.Tensor, group_size: int, unbiased: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked per-group, per-channel mean and std.

    Args:
        values: ``(N, M)`` float, 0 where absent (any number of columns: ``grpo`` passes its
            summed score as ``M = 1``).  present: ``(N, M)`` bool.  group_size: ``G``.
    Returns:
        mean ``(B, 1, M)``, std ``(B, 1, M)``, count ``(B, 1, M)`` (present values per group).
        ``std`` is 0 where fewer than two values are present (unbiased) or none (biased).
    """
    n, m = values.shape
    v = values.view(-1, group_size, m)  # (B, G, M)
    p = present.view(-1, group_size, m)  # (B, G, M)
    count = p.sum(dim=1, keepdim=True)  # (B, 1, M)
    mean = v.sum(dim=1, keepdim=True) / count.clamp(min=1)  # (B, 1, M)
    dev = torch.where(p, v - mean, torch.zeros((), dtype=v.dtype))  # (B, G, M)
    ddof = 1 if unbiased else 0
    var = dev.square().sum(dim=1, keepdim=True) / (count - ddof).clamp(min=1)
    std = torch.where(count > ddof, var.sqrt(), torch.zeros((), dtype=v.dtype))
    return mean, std, count


def group_zscores(batch: RewardBatch, eps: float = DEFAULT_EPS, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel group z-scores ``Z = (r - mean_G r) / (std_G r + eps)``.

    Returns ``z`` ``(N, M)`` (0 where absent, where a group has fewer than two present values or
    no spread) and ``zero_spread`` ``(B, M)`` bool. See :func:`_group_zscores` for the numerics.
    """
    return _group_zscores(batch, eps, unbiased)


def noise_reliability(batch: RewardBatch, floor: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """``(B, M)`` share of each group's observed variance that is signal: ``max(0, 1 - floor^2 / var)``.

    ``floor``: ``(M,)`` known measurement-noise std per channel (0 = noiseless: factor 1). An
    empirical-Bayes shrinkage: with observed deviation = signal + noise, the best linear estimate
    of the signal is the deviation times this factor.
    """
    g = batch.group_size
    _, std, count = group_mean_std(batch.values.double(), batch.present, g, unbiased)  # (B, 1, M)
    var = std.square().squeeze(1)  # (B, M)
    f2 = floor.to(torch.float64).square().expand_as(var)
    rel = torch.where(var > 0, (1.0 - f2 / var.clamp(min=torch.finfo(torch.float64).tiny)).clamp(min=0.0), 0.0)
    return torch.where(f2 == 0, torch.ones((), dtype=torch.float64), rel).to(batch.values.dtype)


def _group_zscores(
    batch: RewardBatch, eps: float = DEFAULT_EPS, unbiased: bool = True, factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`group_zscores` times ``factor`` (the fused path: the soft-min gets ``-k Z`` in the
    same pass that divides by the std).

    A spread at the rounding level of the group mean (equal values whose computed mean is off by
    an ulp) is zero spread. When any ``|r|`` is too large for its square to be summed safely, the
    deviations are first divided by their largest magnitude ``s`` and ``Z = u / (std(u) + eps / s)``
    with ``u = (r - mean) / s`` (the same number); a spread whose square underflows counts as zero.

    Returns:
        z: ``(N, M)`` in the rewards' dtype; 0 where the channel abstains, where its group has fewer
           than two present values, or where the group has zero spread on that channel.
        zero_spread: ``(B, M)`` bool, True where a group's channel gave no signal (all Z = 0).
    """
    g, m = batch.group_size, batch.num_channels
    v = batch.values.view(-1, g, m)  # (B, G, M)
    pf = batch.presence.view(-1, g, m)  # (B, G, M) 0/1
    count = pf.sum(dim=1, keepdim=True)  # (B, 1, M)
    mean = v.sum(dim=1, keepdim=True) / count.clamp(min=1)  # (B, 1, M)
    dev = (v - mean).mul_(pf)  # (B, G, M), 0 where absent
    ddof = 1 if unbiased else 0
    dof = (count - ddof).clamp(min=1)
    noise = (g * torch.finfo(v.dtype).eps) * mean.abs()  # rounding level of the mean
    lo, hi = torch.aminmax(batch.values) if batch.values.numel() else (v.new_zeros(()), v.new_zeros(()))
    if max(-float(lo), float(hi)) <= math.sqrt(torch.finfo(v.dtype).max / (8 * g)):
        # (not torch.linalg.vector_norm: over the middle dim it is ~30x slower on CPU)
        std = (dev.square().sum(dim=1, keepdim=True) / dof).sqrt()  # (B, 1, M)
        signal = (count >= 2) & (std > noise)
        denom = torch.where(signal, std + eps, torch.inf)  # no signal: Z = dev / inf = 0 exactly
        z = dev.div_(denom if factor == 1.0 else denom / factor)  # (B, G, M), in place: dev is done
    else:  # huge magnitudes: rescale before squaring
        scale = dev.abs().amax(dim=1, keepdim=True)  # (B, 1, M)
        signal = (count >= 2) & (scale > noise)
        safe = torch.where(signal, scale, torch.inf)
        u = dev / safe  # |u| <= 1; exactly 0 where there is no signal
        std_u = (u.square().sum(dim=1, keepdim=True) / dof).sqrt()
        # (a tensor quotient: torch computes float / tensor as float * (1 / tensor), and 1 / subnormal = inf)
        eps_s = torch.div(torch.tensor(eps, dtype=v.dtype), safe)
        denom = torch.where(signal, std_u + eps_s, torch.ones((), dtype=v.dtype))
        z = u / denom if factor == 1.0 else u / (denom / factor)
    return z.reshape(-1, m), ~signal.squeeze(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = DEFAULT_EPS, unbiased: bool = True) -> torch.Tensor:
    """Batch whitening ``(x - mean) / (std + eps)`` over the entries where ``mask`` is True.

    Args:
        x: ``(N,)`` float.  mask: ``(N,)`` bool (completions that have an aggregate).
    Returns:
        ``(N,)``: whitened where ``mask``, 0 elsewhere. With fewer than two masked entries the
        result is only centred (there is no spread to divide by). A spread at the rounding level
        of the values (equal aggregates computed along different paths) is no spread: 0, not
        rounding noise blown up to +-1 (which ``eps = 0`` would otherwise do).
    """
    n = mask.sum()
    if n == 0:
        return torch.zeros_like(x)
    xm = torch.where(mask, x, torch.zeros((), dtype=x.dtype))
    mean = xm.sum() / n
    dev = torch.where(mask, x - mean, torch.zeros((), dtype=x.dtype))
    ddof = 1 if unbiased else 0
    if n <= ddof:
        return dev
    scale = dev.abs().max()
    # rounding level: a few ulps of the largest |x| (x itself carries ~M ulps of rounding)
    if scale <= 64 * torch.finfo(x.dtype).eps * xm.abs().max():
        return torch.zeros_like(x)
    u = dev / scale  # |u| <= 1: no underflow or overflow in the square
    std_u = (u.square().sum() / (n - ddof)).sqrt()
    return u / (std_u + torch.div(torch.tensor(eps, dtype=x.dtype), scale))
