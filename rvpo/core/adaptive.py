"""Adaptive risk coefficient: choose k from the batch's own z-scores (a pure function of Z).

The soft-min's binding weights ``p_i = softmax(-k Z_i + log w)`` over completion i's active
channels say how many channels its advantage listens to. Their *effective number*

    neff_i(k) = M_i * exp(-KL(p_i(k) || q_i)),     q_i = w / sum w over the active channels

(``exp(entropy)`` for equal weights) is ``M_i`` at k = 0 (the mean) and falls to the number of
tied minima as k -> inf (the hard min). A fixed k does not mean the same risk at M = 2 and M = 33:
z-scores have unit spread per channel, so for roughly Gaussian Z the soft-min at a given k keeps
the same *fraction* ``exp(-k^2/2)`` of its channels whatever M is, while the number of
channels a single bad one must outweigh grows with M. The adaptive rule fixes the risk in units
of channels instead:

    choose k in [k_min, k_max] such that  mean_i (neff_i(k) - 1) / (M_i - 1) = target

over completions with at least two active channels that differ (for the others k changes
nothing). ``target`` = 1 is the mean, 0 the hard min; ``form="power"`` uses
``mean_i log(neff_i) / log(M_i) = target`` instead (a target of ``M_i ** target`` channels:
the extreme-value scale, k grows like sqrt(log M) for Gaussian Z).

Both sides are monotone in k (``d KL(p_k || q) / dk = k Var_p(Z) >= 0`` for this exponential
family), so the root is unique; it is found by Newton's method on ``log k`` safeguarded by
bisection (typically 4-8 evaluations). It is solved on at most 8192 of the batch's completions
(a fixed stride, so still a pure function of Z): the target is a mean over completions, which
that many estimate to well under 1%. No state is carried between steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

FORMS = ("linear", "power")


@dataclass(frozen=True)
class AdaptiveK:
    """A rule for k, resolved per batch by :func:`solve_adaptive_k` (pass it as ``k=``).

    ``target``: the effective-channel fraction to hold, in (0, 1]; ``k_min`` / ``k_max``: bounds
    on k (``0 < k_min <= k_max < inf``); ``form``: ``"linear"`` or ``"power"`` (module docstring).
    """

    target: float = 0.35
    k_min: float = 0.25
    k_max: float = 8.0
    form: str = "power"
    type: str = field(default="adaptive_k", init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("target", "k_min", "k_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"target: the effective-channel fraction must be in (0, 1], got {self.target}")
        if not 0.0 < self.k_min <= self.k_max:
            raise ValueError(f"k_min, k_max: need 0 < k_min <= k_max, got {self.k_min}, {self.k_max}")
        if self.form not in FORMS:
            raise ValueError(f"form: expected one of {FORMS}, got {self.form!r}")


def _neff(d: torch.Tensor, d0: torch.Tensor, d2: torch.Tensor, q: torch.Tensor, m: torch.Tensor, k: float):
    """``(R,)`` effective number of channels of ``softmax(-k z + log q)`` and ``(R,)`` the variance
    of z under those weights (Newton's step), from ``d = min_j z - z`` ``(R, M)`` (``-inf`` off the
    active channels, so ``exp(k d) <= 1`` with 1 at the binding channel), ``d0`` (0 off) and
    ``d2 = d0^2``. ``R``: the rows the rule is solved on (at most ``_MAX_ROWS`` of the ``N`` completions)."""
    e = (d * k).exp_().mul_(q).unsqueeze(1)  # (R, 1, M)
    s = e.sum(dim=2).squeeze(1)  # (R,) >= q of the binding channel > 0
    ed = torch.bmm(e, d0.unsqueeze(2)).view(-1) / s  # E_p[d]
    ed2 = torch.bmm(e, d2.unsqueeze(2)).view(-1) / s  # E_p[d^2]
    kl = k * ed - s.log()  # KL(p || q) = E_p[log p/q] = k E_p[d] - log s >= 0
    return m * torch.exp(-kl.clamp(min=0.0)), (ed2 - ed.square()).clamp(min=0.0)


_MAX_ROWS = 8192  # the statistic is a mean over completions: a fixed stride of rows estimates it


def solve_adaptive_k(
    z: torch.Tensor, mask: torch.Tensor, rule: AdaptiveK, weights: torch.Tensor | None = None,
    max_iter: int = 40, tol: float = 1e-4,
) -> tuple[float, dict[str, float]]:
    """Resolve ``rule`` on one batch.

    Args:
        z: ``(N, M)`` per-channel group z-scores.  mask: ``(N, M)`` bool or 0/1, channels that count.
        weights: optional ``(M,)`` non-negative channel weights (a 0 weight is inactive).
    Returns:
        ``k`` (float in ``[k_min, k_max]``) and diagnostics: ``target``, ``neff_target`` and
        ``neff`` (mean over the completions used), ``frac`` (achieved mean fraction), ``clipped``
        (-1 at k_min, +1 at k_max, 0 inside), ``rows`` (completions used), ``iters``.
    """
    work = torch.float64 if z.dtype == torch.float64 else torch.float32
    z = z.detach().to(work)
    active = mask.bool() if mask.dtype != torch.bool else mask
    if weights is not None:
        w = torch.as_tensor(weights, dtype=work).flatten()
        active = active & (w > 0)
        wa = torch.where(active, w.expand_as(z), torch.zeros((), dtype=work))
    else:
        wa = active.to(work)
    m = active.sum(dim=1)  # (N,)
    big = torch.finfo(work).max
    zmin = torch.where(active, z, big).amin(dim=1)
    zmax = torch.where(active, z, -big).amax(dim=1)
    rows = (m >= 2) & (zmax - zmin > 1e-6)  # completions whose aggregate depends on k
    info = {"target": rule.target, "neff_target": math.nan, "neff": math.nan, "frac": math.nan,
            "clipped": 0.0, "rows": float(rows.sum()), "iters": 0.0}
    if not rows.any():
        return rule.k_min, info  # k changes nothing in this batch: the low-risk end
    idx = rows.nonzero().squeeze(1)
    if idx.numel() > _MAX_ROWS:  # deterministic: every s-th informative completion
        idx = idx[:: -(-idx.numel() // _MAX_ROWS)]
    z, active, wa, mf, zmin = z[idx], active[idx], wa[idx], m[idx].to(work), zmin[idx]
    q = wa / wa.sum(dim=1, keepdim=True)
    d = torch.where(active, zmin.unsqueeze(1) - z, -torch.inf)  # (R, M) <= 0
    d0 = torch.where(active, d, torch.zeros((), dtype=work))
    d2 = d0.square()
    if rule.form == "linear":
        denom = mf - 1.0  # (R,)
        tgt = 1.0 + rule.target * denom

        def frac(neff):
            return ((neff - 1.0) / denom).mean()

        def dfrac(neff, var, k):  # d frac / d log k
            return (-neff * var * k * k / denom).mean()
    else:
        logm = mf.log()
        tgt = mf.pow(rule.target)

        def frac(neff):
            return (neff.log() / logm).mean()

        def dfrac(neff, var, k):
            return (-var * k * k / logm).mean()

    def f(k):
        neff, var = _neff(d, d0, d2, q, mf, k)
        return float(frac(neff)) - rule.target, neff, var

    lo, hi = math.log(rule.k_min), math.log(rule.k_max)
    f_lo, neff, _ = f(rule.k_min)
    iters = 1
    if f_lo <= 0:  # already below the target at k_min: the batch is risky enough
        k, info["clipped"] = rule.k_min, -1.0
    else:
        f_hi, neff, var = f(rule.k_max)
        iters += 1
        if f_hi >= 0:
            k, info["clipped"] = rule.k_max, 1.0
        else:
            u = 0.5 * (lo + hi)
            for _ in range(max_iter):
                k = math.exp(u)
                fu, neff, var = f(k)
                iters += 1
                if abs(fu) < tol or hi - lo < 1e-6:
                    break
                if fu > 0:
                    lo = u
                else:
                    hi = u
                slope = float(dfrac(neff, var, k))
                step = u - fu / slope if slope < 0 else math.nan
                u = step if lo < step < hi else 0.5 * (lo + hi)  # Newton inside the bracket, else bisect
    info.update(neff_target=float(tgt.mean()), neff=float(neff.mean()), frac=float(frac(neff)), iters=float(iters))
    return float(k), info
