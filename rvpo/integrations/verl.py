"""verl (0.9.x) plug-in: RVPO, RVPO-explicit and hard-min as verl advantage estimators.

Importing this module registers ``rvpo``, ``rvpo_explicit`` and ``hardmin`` in verl's
``ADV_ESTIMATOR_REGISTRY`` (``verl.trainer.ppo.core_algos.register_adv_est``); select one with
``algorithm.adv_estimator=rvpo``. The math is :func:`rvpo.compute_advantages`; this module only
moves data between verl's layout and the core's.

Notation: ``N`` responses in the batch (``bs`` in verl), ``L`` response length (padded), ``M``
reward components, ``G`` responses per prompt (``actor_rollout_ref.rollout.n``).

Where the components come from (verl 0.9.1 passes ``non_tensor_batch`` to ``gdpo`` only, and its
default V1 trainer does not even fetch the reward-extra keys), in this order:
  1. ``non_tensor_batch`` given to the estimator (a future verl that passes it to every estimator;
     tests; direct calls);
  2. the :func:`batch_context` set by the trainer hook (:mod:`rvpo.integrations.verl_runner`,
     ``trainer.v1.trainer_mode=rvpo_sync``), which also carries the global step for the k schedule;
  3. otherwise a ``RuntimeError`` naming the supported route, unless ``algorithm.rvpo_allow_scalar``
     is true (then the summed scalar reward is used as one component, with a loud warning).

``algorithm.*`` keys (add them with Hydra's ``+algorithm.rvpo_k=...``); the advantage settings are
:class:`rvpo.core.AdvantageSpec`'s fields (same defaults, same checks as ``rvpo train`` and TRL):
  rvpo_reward_keys     list of ``compute_score`` dict keys, one component each (falls back to
                       ``gdpo_reward_keys``); a ``None``/NaN value means the component abstains
  rvpo_reward_weights  the spec's ``weights``, one per key (falls back to ``gdpo_reward_weights``
                       when the keys did)
  rvpo_k_schedule      the spec's ``k``: a number or a schedule string/dict (default
                       ``"linear:0.5:2.0"``, which needs the step from the trainer hook;
                       ``"adaptive:0.2"`` is chosen per batch and needs none)
  rvpo_k               a constant k, the short form of ``rvpo_k_schedule`` (which wins)
  rvpo_beta, rvpo_eps, rvpo_unbiased, rvpo_drop_zero_spread, rvpo_noise_floor   the spec's fields
                       (eps default 1e-4, TRL's; set 1e-6 for bit-parity with verl's own gdpo)
  rvpo_whiten          ``"token"`` (default; verl's ``masked_whiten`` over response tokens, as its
                       ``gdpo``), ``"sequence"`` (the spec's ``whiten=True``: one weight per response)
                       or ``"none"``
  rvpo_allow_scalar    fall back to the scalar reward when components are missing (default false)
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rvpo.core import Adaptive, AdvantageSpec, Constant, compute_advantages

try:
    from verl.trainer.ppo import core_algos as _core_algos
    from verl.utils import torch_functional as _verl_F
except ImportError as e:  # pragma: no cover - exercised only without verl
    raise ImportError(
        "rvpo.integrations.verl needs verl 0.9.x: pip install 'rvpo[verl]' "
        "(on a CPU-only machine pin torch first, see docs/verl.md)"
    ) from e

logger = logging.getLogger(__name__)

ESTIMATORS = ("rvpo", "rvpo_explicit", "hardmin")
WHITEN_MODES = ("token", "sequence", "none")
ROUTE_HINT = (
    "verl 0.9.1 passes the per-reward components only to its own 'gdpo' estimator. Launch with "
    "`python -m rvpo.integrations.verl_runner ... trainer.v1.trainer_mode=rvpo_sync` (V1 trainer), "
    "whose trainer hook passes the components listed in algorithm.rvpo_reward_keys; see docs/verl.md. "
    "Set +algorithm.rvpo_allow_scalar=true to fall back to the summed scalar reward instead."
)


# ---------------------------------------------------------------------------------------------
# the batch context set by the trainer hook
# ---------------------------------------------------------------------------------------------


@dataclass
class BatchContext:
    """What the trainer hook knows about the batch whose advantages are being computed.

    Attributes:
        non_tensor_batch: ``{key: (N,) array}`` reward components, rows in the batch's order.
        uids: ``(N,)`` the prompt uid of each row (checked against the estimator's ``index``).
        global_steps: verl's 1-based ``trainer.global_steps`` of the current step.
        total_training_steps: verl's ``trainer.total_training_steps``.
        metrics: the trainer's metrics dict; the estimator adds its ``rvpo/*`` diagnostics to it.
    """

    non_tensor_batch: Mapping[str, Any] | None = None
    uids: Sequence[Any] | None = None
    global_steps: int | None = None
    total_training_steps: int | None = None
    metrics: dict | None = field(default=None, repr=False)


_CONTEXT: contextvars.ContextVar[BatchContext | None] = contextvars.ContextVar("rvpo_verl_batch", default=None)


@contextlib.contextmanager
def batch_context(**kwargs: Any) -> Iterator[BatchContext]:
    """Make components / step / metrics visible to the estimator while verl computes advantages."""
    ctx = BatchContext(**kwargs)
    token = _CONTEXT.set(ctx)
    try:
        yield ctx
    finally:
        _CONTEXT.reset(token)


def current_context() -> BatchContext | None:
    return _CONTEXT.get()


# ---------------------------------------------------------------------------------------------
# settings from algorithm.*
# ---------------------------------------------------------------------------------------------


def _cfg_get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if hasattr(config, "get"):
        try:
            v = config.get(key, default)
        except Exception:  # a dataclass config whose .get rejects unknown keys
            v = getattr(config, key, default)
    else:
        v = getattr(config, key, default)
    if hasattr(v, "_metadata"):  # OmegaConf ListConfig / DictConfig -> plain python
        from omegaconf import OmegaConf  # deferred: optional dependency (verl's Hydra configs only)

        v = OmegaConf.to_container(v, resolve=True)
    return default if v is None else v


VERL_NAMES = {"k": "rvpo_k_schedule", "weights": "rvpo_reward_weights", "whiten": "rvpo_whiten"}
"""``AdvantageSpec`` field -> ``algorithm.*`` key where the key is not ``rvpo_<field>``."""
_SPEC_KEYS = ("k", "beta", "eps", "unbiased", "drop_zero_spread", "noise_floor")
"""The spec fields read from ``algorithm.rvpo_<field>`` (estimator: verl's ``adv_estimator``; weights
and whitening: below; ``scale`` is grpo's, which verl runs itself)."""


@dataclass(frozen=True)
class RVPOSettings:
    """The estimator's settings, read from verl's ``algorithm`` config.

    ``advantage`` is the core's :class:`~rvpo.core.AdvantageSpec`, with the same defaults and checks
    as ``rvpo train`` and the TRL config; the other fields are verl's layout only."""

    advantage: AdvantageSpec = field(default_factory=AdvantageSpec)
    reward_keys: tuple[str, ...] = ()
    whiten: str = "token"
    allow_scalar: bool = False

    @classmethod
    def from_config(cls, config: Any, estimator: str = "rvpo") -> RVPOSettings:
        keys = _cfg_get(config, "rvpo_reward_keys")
        weights = _cfg_get(config, "rvpo_reward_weights")
        if keys is None:
            keys = _cfg_get(config, "gdpo_reward_keys")
            if weights is None:
                weights = _cfg_get(config, "gdpo_reward_weights")
        if isinstance(keys, str):
            keys = [keys]
        keys = tuple(str(x) for x in (keys or ()))
        if weights is not None and len(weights) != len(keys):
            raise ValueError(
                f"algorithm.rvpo_reward_weights: {len(weights)} weights for {len(keys)} reward keys {list(keys)}"
            )
        whiten = str(_cfg_get(config, "rvpo_whiten", "token")).lower()
        if whiten not in WHITEN_MODES:
            raise ValueError(f"algorithm.rvpo_whiten: expected one of {WHITEN_MODES}, got {whiten!r}")
        values: dict[str, Any] = {"estimator": estimator, "weights": weights, "whiten": whiten == "sequence"}
        for name in _SPEC_KEYS:
            v = _cfg_get(config, VERL_NAMES.get(name, f"rvpo_{name}"))
            if v is not None:
                values[name] = v
        if "k" not in values and _cfg_get(config, "rvpo_k") is not None:
            values["k"] = _cfg_get(config, "rvpo_k")  # a constant k, the short form of rvpo_k_schedule
        names = {f: VERL_NAMES.get(f, f"rvpo_{f}") for f in AdvantageSpec.help()}
        spec = AdvantageSpec.from_dict(values, where="algorithm.", names=names)  # checks every setting, naming it
        return cls(advantage=spec, reward_keys=keys, whiten=whiten,
                   allow_scalar=bool(_cfg_get(config, "rvpo_allow_scalar", False)))

    def resolve_k(self, global_steps: int | None, total_training_steps: int | None, m: int = 2):
        """``k`` for verl's 1-based ``global_steps`` (schedule step ``global_steps - 1``): a float,
        or an adaptive rule that the core resolves on the batch (it needs no step). With one
        component (``m == 1``) k has no effect, and the step is not needed."""
        sched = self.advantage.schedule
        if isinstance(sched, (Constant, Adaptive)) or m == 1:
            return sched(0, 1)
        if global_steps is None or total_training_steps is None:
            raise RuntimeError(
                f"algorithm.rvpo_k_schedule={self.advantage.k!r} needs the training step, which verl does not "
                "pass to advantage estimators; run through the rvpo trainer hook "
                "(trainer.v1.trainer_mode=rvpo_sync), or use a constant algorithm.rvpo_k or an adaptive schedule"
            )
        return float(sched(max(int(global_steps) - 1, 0), int(total_training_steps)))


# ---------------------------------------------------------------------------------------------
# layout helpers (no math)
# ---------------------------------------------------------------------------------------------


def _as_float(v: Any, key: str, row: int) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"reward component {key!r}, row {row}: expected a number or None, got {v!r}") from None


def stack_components(non_tensor_batch: Mapping[str, Any], keys: Sequence[str], n: int) -> torch.Tensor:
    """``(N, M)`` float64 rewards from ``non_tensor_batch[key]`` columns; ``None`` becomes NaN."""
    missing = [k for k in keys if k not in non_tensor_batch]
    if missing:
        raise KeyError(
            f"reward component key(s) {missing} not in the batch; available: {sorted(non_tensor_batch)}. "
            "algorithm.rvpo_reward_keys must name keys of the dict your compute_score returns."
        )
    cols = []
    for key in keys:
        col = list(non_tensor_batch[key])
        if len(col) != n:
            raise ValueError(f"reward component {key!r}: {len(col)} values for a batch of {n} responses")
        cols.append([_as_float(v, key, i) for i, v in enumerate(col)])
    return torch.tensor(cols, dtype=torch.float64).T.reshape(n, len(keys))


def group_permutation(index: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Stable permutation putting rows of the same uid together (groups in first-seen order).

    Returns ``(perm, G)``: ``rows[perm]`` is contiguous groups of ``G``. Raises ``ValueError``
    when the groups have different sizes.
    """
    first: dict[Any, int] = {}
    members: list[list[int]] = []
    for i, uid in enumerate(index):
        j = first.setdefault(uid, len(members))
        if j == len(members):
            members.append([])
        members[j].append(i)
    sizes = sorted({len(m) for m in members})
    if len(sizes) != 1:
        raise ValueError(
            f"rvpo needs the same number of responses for every prompt uid (actor_rollout_ref.rollout.n); "
            f"got group sizes {sizes} over {len(members)} uids. Multi-output agent loops and partially "
            "filtered groups are not supported."
        )
    return np.asarray([i for m in members for i in m], dtype=np.int64), sizes[0]


def _check_index(index: Any, ctx_uids: Sequence[Any] | None, n: int) -> list:
    if index is None:
        if ctx_uids is None:
            raise ValueError("rvpo needs the prompt uids ('uid' in non_tensor_batch) to form groups")
        index = ctx_uids
    index = list(index)
    if len(index) != n:
        raise ValueError(f"index: {len(index)} uids for a batch of {n} responses")
    if ctx_uids is not None and list(ctx_uids) != index:
        raise RuntimeError("rvpo trainer hook: the components' row order does not match the batch's uids")
    return index


def _component_metrics(rewards: torch.Tensor, keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for j, key in enumerate(keys):
        col = rewards[:, j]
        ok = torch.isfinite(col)
        out[f"rvpo/reward/{key}/mean"] = float(col[ok].mean()) if ok.any() else float("nan")
        out[f"rvpo/reward/{key}/present_frac"] = float(ok.double().mean()) if col.numel() else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# the estimators
# ---------------------------------------------------------------------------------------------


def compute_multireward_advantage(
    estimator: str,
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    non_tensor_batch: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl estimator body shared by ``rvpo``, ``rvpo_explicit`` and ``hardmin``.

    Args:
        token_level_rewards: ``(N, L)`` verl's scalar reward at the last token (used only by the
            ``rvpo_allow_scalar`` fallback).
        response_mask: ``(N, L)`` 1 on response tokens.
        index: ``(N,)`` prompt uids (``non_tensor_batch["uid"]``).
        config: verl's ``algorithm`` config (see the module docstring for the keys).
        non_tensor_batch: ``{key: (N,)}`` with the reward components; else the hook's context.
        kwargs: ``global_steps`` / ``total_training_steps`` override the context's step.
    Returns:
        ``(advantages, returns)``, both ``(N, L)`` in ``token_level_rewards``' dtype, zero off
        the response mask.
    """
    s = RVPOSettings.from_config(config, estimator)
    ctx = current_context()
    n = response_mask.shape[0]
    ctx_uids = None
    if non_tensor_batch is None and ctx is not None and ctx.non_tensor_batch is not None:
        non_tensor_batch, ctx_uids = ctx.non_tensor_batch, ctx.uids
    index = _check_index(index, ctx_uids, n)

    if non_tensor_batch is not None and s.reward_keys:
        keys = list(s.reward_keys)
        rewards = stack_components(non_tensor_batch, keys, n)  # (N, M)
    elif s.allow_scalar:
        logger.warning(
            "RVPO estimator %r: NO PER-REWARD COMPONENTS (%s); falling back to the summed scalar reward "
            "because algorithm.rvpo_allow_scalar=true. This is NOT multi-reward RVPO.",
            estimator, "algorithm.rvpo_reward_keys is empty" if not s.reward_keys else "none passed to the estimator",
        )
        keys = ["score"]
        rewards = token_level_rewards.detach().sum(dim=-1, dtype=torch.float64).cpu().unsqueeze(1)  # (N, 1)
    elif not s.reward_keys:
        raise ValueError(
            "rvpo: set algorithm.rvpo_reward_keys (e.g. +algorithm.rvpo_reward_keys='[format_reward,accuracy_reward]') "
            "to the compute_score dict keys of the reward components"
        )
    else:
        raise RuntimeError(f"rvpo estimator {estimator!r} got no reward components. {ROUTE_HINT}")

    step = kwargs.get("global_steps", ctx.global_steps if ctx else None)
    total = kwargs.get("total_training_steps", ctx.total_training_steps if ctx else None)
    k = s.resolve_k(step, total, rewards.shape[1])

    perm, g = group_permutation(index)
    params = s.advantage.params()
    params["k"] = k  # the schedule at verl's step (a float or an adaptive rule)
    out = compute_advantages(rewards[perm], g, **params)
    per_seq = torch.empty(n, dtype=torch.float64)
    per_seq[torch.as_tensor(perm)] = out.advantages.double()  # un-permute; (N,)
    scored = torch.empty(n, dtype=torch.bool)
    scored[torch.as_tensor(perm)] = out.scored

    mask = response_mask.detach().to(torch.float64).cpu()  # (N, L)
    adv = per_seq.unsqueeze(-1) * mask  # broadcast over response tokens
    if s.whiten == "token":
        # verl's gdpo convention: token-weighted mean / unbiased var, rsqrt(var + 1e-8), over
        # response tokens of scored responses (unscored ones keep advantage 0)
        wmask = mask * scored.unsqueeze(-1).to(mask.dtype)
        adv = _verl_F.masked_whiten(adv, wmask) * wmask if wmask.sum() >= 2 else torch.zeros_like(adv)
    adv = adv.to(device=token_level_rewards.device, dtype=token_level_rewards.dtype)

    if ctx is not None and ctx.metrics is not None:
        ctx.metrics.update(out.metrics(keys, prefix="rvpo/"))
        ctx.metrics.update(_component_metrics(rewards, keys))
    return adv, adv


def _make(name: str):
    def estimator(token_level_rewards, response_mask, index=None, config=None, non_tensor_batch=None, **kwargs):
        return compute_multireward_advantage(
            name, token_level_rewards, response_mask, index=index, config=config,
            non_tensor_batch=non_tensor_batch, **kwargs,
        )

    estimator.__name__ = estimator.__qualname__ = f"compute_{name}_outcome_advantage"
    estimator.__doc__ = f"verl advantage estimator {name!r} (rvpo core); see compute_multireward_advantage."
    estimator._rvpo_estimator = True
    return estimator


compute_rvpo_outcome_advantage = _make("rvpo")
compute_rvpo_explicit_outcome_advantage = _make("rvpo_explicit")
compute_hardmin_outcome_advantage = _make("hardmin")
_FNS = {
    "rvpo": compute_rvpo_outcome_advantage,
    "rvpo_explicit": compute_rvpo_explicit_outcome_advantage,
    "hardmin": compute_hardmin_outcome_advantage,
}


def register_idempotent(registry: dict, name: str, obj, marker: str, register_fn, what: str) -> None:
    """Put ``obj`` under ``name`` in a verl registry. Re-registering is a no-op, an older copy of ours
    (an object carrying the attribute ``marker``, e.g. after a module reload) is replaced, and anyone
    else's entry under that name is refused."""
    existing = registry.get(name)
    if existing is not None and existing is not obj:
        if not getattr(existing, marker, False):
            raise ValueError(f"verl {what} {name!r} is already registered by {existing!r}")
        del registry[name]
    if registry.get(name) is not obj:
        register_fn(name)(obj)


def register() -> None:
    """Register the estimators with verl (idempotent; replaces an older copy of this module's)."""
    for name, fn in _FNS.items():
        register_idempotent(_core_algos.ADV_ESTIMATOR_REGISTRY, name, fn, "_rvpo_estimator",
                            _core_algos.register_adv_est, "advantage estimator")


def is_rvpo_estimator(name: Any) -> bool:
    return str(getattr(name, "value", name)) in ESTIMATORS


register()
