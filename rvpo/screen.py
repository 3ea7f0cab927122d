"""Offline screen: which channel will each advantage estimator push down, before any training?

On one batch of base-model samples (``P`` prompts x ``G`` completions, ``M`` reward channels),
every method turns the *same* rewards into advantages (:meth:`rvpo.core.AdvantageSpec.compute`, on
the whole batch, as a training step would); only the aggregation differs. The predicted one-step
push of a method on channel ``j`` in prompt group ``p`` is the within-group covariance of the
advantage with that channel's reward::

    push_pj = sum_{i in group p} A_i (r_ij - mean_{g in p} r_gj) / G          (abstentions count 0)

reported as the mean over the prompts that score ``j`` with its standard error (std / sqrt(P)).

What it assumes (the exact relation, derived in docs/screen.md and checked in tests/test_screen.py):
the policy is a softmax with one logit per *sampled completion*, all equally likely, updated by
REINFORCE ``theta += lr / (B G) * sum_g A_g (onehot_g - pi)`` (``rvpo sim``'s update, ``B`` prompts
a step). Then the expected reward of channel ``j`` over the group's completions changes, to first
order in ``lr``, by exactly ``lr / (B G) * push_pj`` (``push`` per unit step, up to that constant).
A baseline shared by a group (the group's mean advantage) cancels, because the rewards are
centred. For a tabular policy over ``S`` equally likely *styles* with rewards that depend only on
the style, the change is ``lr / (B S) * push_pj`` when the advantages sum to zero within each group
(gdpo; rvpo and hard-min whiten over the batch, so their group means only approximately cancel).
It predicts the first push on base samples, not the drift once the policy has moved: a
generalising model (LoRA on an LLM) moves similar completions together, and reward noise that the
policy cannot learn (random per sample) is counted as if it could.

Public: :func:`screen`, :class:`ScreenResult`, :class:`MethodScreen`, :data:`DEFAULT_METHODS`,
:func:`parse_methods`, :func:`method_label`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import yaml

from rvpo.core import Adaptive, AdvantageSpec, Constant

DEFAULT_METHODS: tuple[tuple[str, dict], ...] = (
    ("gdpo", {"estimator": "gdpo"}),
    ("rvpo k=0.5", {"estimator": "rvpo", "k": 0.5}),
    ("rvpo k=1.25", {"estimator": "rvpo", "k": 1.25}),
    ("rvpo k=2", {"estimator": "rvpo", "k": 2}),
    ("rvpo k=4", {"estimator": "rvpo", "k": 4}),
    ("rvpo adaptive", {"estimator": "rvpo", "k": "adaptive"}),
    ("hardmin", {"estimator": "hardmin"}),
)
"""The methods screened by default: ``(label, AdvantageSpec fields)``."""

SIGNIFICANT_SE = 2.0
"""A push counts as significantly below 0 when ``mean + 2 SE < 0``."""


@dataclass
class MethodScreen:
    """The screen of one method. Per-channel lists are in ``ScreenResult.channel_names`` order.

    Attributes:
        push / push_se: ``(M,)`` mean predicted push over prompts and its SE (0 for monitor channels'
            training weight does not matter: they are reported all the same).
        binding: ``(M,)`` mean binding weight per channel (``AdvantageOutput.binding_mean``).
        k: the k the method used on this batch (an adaptive rule's resolved value), None without k.
        neglected: the trained channel with the most negative mean push (None if no push is < 0);
            ``neglected_significant``: its push is below 0 by more than 2 SE.
        constraint_push / constraint_se: push on the constraint channels (per prompt, their mean).
        easy_push / easy_se: the same for the easy channels (default: every trained non-constraint one).
        constraint_n / easy_n: the number of prompts behind each (those whose group scores the channels).
    """

    label: str
    spec: dict
    push: list[float]
    push_se: list[float]
    binding: list[float]
    k: float | None
    neglected: str | None
    neglected_significant: bool
    constraint_push: float | None = None
    constraint_se: float | None = None
    easy_push: float | None = None
    easy_se: float | None = None
    constraint_n: int | None = None
    easy_n: int | None = None

    def prompts_per_step(self, z: float = SIGNIFICANT_SE) -> int | None:
        """Prompts a training step needs for its push on the constraint *and* on the easy channels to be
        above 0 by ``z`` standard errors (:func:`steady_prompts` of each; the larger). None when either
        push is not positive (no batch size makes it so) or the screen has no such channels."""
        need = [steady_prompts(p, se, n, z) for p, se, n in ((self.constraint_push, self.constraint_se,
                self.constraint_n), (self.easy_push, self.easy_se, self.easy_n)) if p is not None]
        return None if not need or None in need else max(need)


def steady_prompts(push: float | None, se: float | None, n: int | None, z: float = SIGNIFICANT_SE) -> int | None:
    """Smallest number of prompts ``B`` with ``push > z * sd / sqrt(B)``, where ``sd = se * sqrt(n)`` is the
    per-prompt standard deviation of the push measured on ``n`` prompts: a step of ``B`` prompts (G
    samples each) then pushes the channel up with high probability, not only on average. None when
    the push is not positive or a value is missing."""
    if push is None or se is None or n is None or not (math.isfinite(push) and math.isfinite(se)) or push <= 0:
        return None
    return max(1, math.ceil((z * se * math.sqrt(n) / push) ** 2))


@dataclass
class ScreenResult:
    """All methods' screens on one batch; :meth:`to_dict` (JSON-able) and :meth:`markdown`."""

    channel_names: list[str]
    group_size: int
    prompts: int
    base_rate: list[float]
    spread: list[float]
    """``(M,)`` share of the groups that score a channel in which it has any spread (else no push)."""
    weights: list[float]
    constraint_channels: list[str]
    easy_channels: list[str]
    monitor_channels: list[str]
    methods: list[MethodScreen] = field(default_factory=list)

    def method(self, label: str) -> MethodScreen:
        for m in self.methods:
            if m.label == label:
                return m
        raise KeyError(f"screen: no method {label!r}; have {', '.join(m.label for m in self.methods)}")

    def push(self, label: str, channel: str) -> float:
        """Mean push of method ``label`` on ``channel``."""
        return self.method(label).push[self.channel_names.index(channel)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = [asdict(m) for m in self.methods]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScreenResult:
        d = dict(d)
        methods = [MethodScreen(**m) for m in d.pop("methods", [])]
        return cls(**d, methods=methods)

    def markdown(self) -> str:
        """A table: rows = methods; constraint push ± SE, easy push, binding on the constraint, neglected channel."""
        cons = self.constraint_channels
        cname = "+".join(cons) if cons else None
        head = ["method"]
        if cname:
            head += [f"push on {cname} ± SE", "easy mean push ± SE", f"binding on {cname}",
                     "prompts a step for both pushes > 2 SE"]
        else:
            head += ["mean push (trained channels)"]
        head += ["k", "neglected channel"]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        idx = [self.channel_names.index(c) for c in cons]
        trained = [j for j, w in enumerate(self.weights) if w != 0]
        for m in self.methods:
            row = [m.label]
            if cname:
                need = m.prompts_per_step()
                row += [_pm(m.constraint_push, m.constraint_se), _pm(m.easy_push, m.easy_se),
                        _f(sum(m.binding[j] for j in idx)),
                        str(need) if need is not None else "n/a" if m.constraint_n is None else "never (a push <= 0)"]
            else:
                row += [_f(sum(m.push[j] for j in trained) / max(1, len(trained)), "+.3f")]
            row += [_f(m.k, ".2f") if m.k is not None and math.isfinite(m.k) else "-"]
            if m.neglected is None:
                row.append("none (no push < 0)")
            else:
                j = self.channel_names.index(m.neglected)
                sig = "" if m.neglected_significant else ", within 2 SE of 0"
                row.append(f"{m.neglected} ({_f(m.push[j], '+.3f')}{sig})")
            lines.append("| " + " | ".join(row) + " |")
        chans = ", ".join(f"{n} {_f(r, '.2f')} ({_f(s, '.0%')} spread)"
                          for n, r, s in zip(self.channel_names, self.base_rate, self.spread, strict=True))
        notes = [f"Screen of {self.prompts} prompts x G={self.group_size} samples. Base rates: {chans}."]
        if self.monitor_channels:
            notes.append(f"Monitor-only channels (weight 0, never trained on): {', '.join(self.monitor_channels)}.")
        notes.append("Push: predicted first-order change of a channel's mean reward in one policy-gradient step "
                     "(the within-group covariance of advantage and reward); ± is the SE over prompts. "
                     "Neglected: the trained channel pushed down most.")
        if cname:
            notes.append("Prompts a step: how many prompts (G samples each) one training step needs for its push on "
                         "the constraint and on the easy channels to both be above 0 by 2 SE (from the per-prompt "
                         "spread of the push); fewer, and single steps often push a channel the wrong way.")
        return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _f(v: Any, fmt: str = ".3f") -> str:
    return f"{v:{fmt}}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def _pm(m: float | None, se: float | None) -> str:
    return "n/a" if m is None else f"{_f(m, '+.3f')} ± {_f(se)}"


def _spec(value: AdvantageSpec | Mapping[str, Any], where: str) -> AdvantageSpec:
    if isinstance(value, AdvantageSpec):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an AdvantageSpec or a mapping of its fields, got {value!r}")
    return AdvantageSpec.from_dict(value, where=f"{where}.")


def method_label(spec: AdvantageSpec | Mapping[str, Any]) -> str:
    """A short label: ``gdpo``, ``rvpo k=2``, ``rvpo k=adaptive``, ``rvpo_explicit beta=0.5``."""
    s = _spec(spec, "method")
    if s.estimator == "rvpo":
        sched = s.schedule
        if isinstance(sched, Constant):
            return f"rvpo k={sched.value:g}"
        if isinstance(sched, Adaptive) and sched == Adaptive():
            return "rvpo adaptive"
        return f"rvpo k={s.k.removeprefix('constant:')}"
    if s.estimator == "rvpo_explicit":
        return f"rvpo_explicit beta={s.beta:g}"
    return s.estimator


def parse_methods(text: str) -> list[tuple[str, dict]]:
    """``"gdpo,rvpo:k=2,rvpo:k=linear:0.5:2.0,hardmin"`` -> ``[(label, spec fields)]``.

    Each item is an estimator name, then ``:key=value`` AdvantageSpec fields; a ``:`` piece without
    ``=`` continues the previous value (so a k schedule keeps its colons). Raises ``ValueError``
    naming the item."""
    out: list[tuple[str, dict]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, *pieces = item.split(":")
        d: dict[str, Any] = {"estimator": name.strip()}
        last = None
        for piece in pieces:
            if "=" in piece:
                last, _, v = piece.partition("=")
                last = last.strip()
                d[last] = v.strip()
            elif last is None:
                raise ValueError(f"methods: {item!r}: expected estimator[:field=value...], e.g. rvpo:k=2")
            else:
                d[last] += ":" + piece
        for key, v in d.items():  # numbers, booleans and lists as YAML reads them; k stays a string
            if key not in ("estimator", "k", "scale"):
                try:
                    d[key] = yaml.safe_load(v)
                except yaml.YAMLError:
                    raise ValueError(f"methods: {item!r}: {key}: cannot read {v!r}") from None
        spec = _spec(d, f"methods: {item!r}")
        out.append((method_label(spec), spec.to_dict()))
    if not out:
        raise ValueError(f"methods: no method in {text!r}")
    return out


def group_push(rewards: torch.Tensor, advantages: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(push (P, M), scored (P, M) bool)``: the per-group push of every channel (module docstring).

    ``rewards`` ``(N, M)`` (NaN = abstain), ``advantages`` ``(N,)``; ``scored[p, j]``: group ``p``
    scores channel ``j`` at least once. Computed in float64."""
    n, m = rewards.shape
    r = rewards.double().reshape(n // group_size, group_size, m)  # (P, G, M)
    present = ~torch.isnan(r)
    cnt = present.sum(1, keepdim=True)  # (P, 1, M)
    mean = torch.where(present, r, 0.0).sum(1, keepdim=True) / cnt.clamp(min=1)
    centred = torch.where(present, r - mean, 0.0)  # (P, G, M)
    a = advantages.double().reshape(-1, group_size, 1)
    return (a * centred).sum(1) / group_size, cnt.squeeze(1) > 0


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    """Mean and std/sqrt(n) (sample std) of a 1-D float64 tensor; (nan, nan) when empty."""
    if x.numel() == 0:
        return math.nan, math.nan
    se = float(x.std(unbiased=True) / math.sqrt(x.numel())) if x.numel() > 1 else math.nan
    return float(x.mean()), se


def screen(
    rewards: torch.Tensor | Sequence[Sequence[float]],
    group_size: int,
    methods: Sequence[tuple[str, AdvantageSpec | Mapping[str, Any]]] | None = None,
    channel_names: Sequence[str] | None = None,
    constraint_channels: Sequence[str] = (),
    *,
    weights: Sequence[float] | None = None,
    monitor_channels: Sequence[str] = (),
    easy_channels: Sequence[str] | None = None,
) -> ScreenResult:
    """Predict each method's one-step push on every channel from one batch of base samples.

    Args:
        rewards: ``(N, M)`` with ``N = P * G`` in contiguous groups of ``G`` per prompt; NaN abstains.
        group_size: ``G`` (>= 2).
        methods: ``[(label, AdvantageSpec or its fields)]`` (default :data:`DEFAULT_METHODS`). A k
            schedule is evaluated at step 0; ``weights`` (if given) replace a spec's own.
        channel_names: ``M`` names (default ``"0" .. "M-1"``).
        constraint_channels: hard constraints: their push is reported against the easy channels'.
        weights: ``(M,)`` training weight per channel (default: each spec's, else all 1).
        monitor_channels: reported, never trained on (weight forced to 0).
        easy_channels: default: every trained channel that is not a constraint.

    Returns:
        :class:`ScreenResult`. Raises ``ValueError`` naming the argument for bad input.
    """
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if r.dim() != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"rewards: expected a non-empty (N, M) table, got shape {tuple(r.shape)}")
    n, m = r.shape
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2 or n % group_size:
        raise ValueError(f"group_size: expected an int >= 2 that divides N = {n}, got {group_size!r}")
    if torch.isinf(r).any():
        raise ValueError("rewards: +-inf found; use NaN for an abstention")
    names = [str(c) for c in channel_names] if channel_names is not None else [str(j) for j in range(m)]
    if len(names) != m or len(set(names)) != m:
        raise ValueError(f"channel_names: expected {m} distinct names, got {names!r}")
    for arg, chans in (("constraint_channels", constraint_channels), ("monitor_channels", monitor_channels),
                       ("easy_channels", easy_channels or ())):
        bad = [c for c in chans if c not in names]
        if bad:
            raise ValueError(f"{arg}: {bad} are not channels ({', '.join(names)})")
    monitor = list(dict.fromkeys(monitor_channels))
    if weights is not None:
        w = [float(x) for x in weights]
        if len(w) != m:
            raise ValueError(f"weights: expected {m} numbers (one per channel), got {len(w)}")
        monitor += [c for c, x in zip(names, w, strict=True) if x == 0 and c not in monitor]
    else:
        w = None
    if monitor:
        w = [0.0 if c in monitor else (1.0 if w is None else w[j]) for j, c in enumerate(names)]
    cons = [c for c in dict.fromkeys(constraint_channels) if c not in monitor]
    easy = list(easy_channels) if easy_channels else [c for c in names if c not in cons and c not in monitor]
    method_list = list(DEFAULT_METHODS if methods is None else methods)
    if not method_list:
        raise ValueError("methods: need at least one method")

    present = ~torch.isnan(r)
    groups = r.reshape(-1, group_size, m)
    gp = present.reshape(-1, group_size, m)
    scored = gp.any(1)  # (P, M)
    hi = torch.where(gp, groups, -math.inf).amax(1)
    lo = torch.where(gp, groups, math.inf).amin(1)
    spread = ((hi > lo) & scored).sum(0).double() / scored.sum(0).clamp(min=1).double()
    base = torch.where(present, r, 0.0).sum(0) / present.sum(0).clamp(min=1)

    res = ScreenResult(channel_names=names, group_size=group_size, prompts=n // group_size,
                       base_rate=base.tolist(), spread=spread.tolist(), weights=[], constraint_channels=cons,
                       easy_channels=easy, monitor_channels=monitor)
    ci = [names.index(c) for c in cons]
    ei = [names.index(c) for c in easy]
    for i, (label, value) in enumerate(method_list):
        spec = _spec(value, f"methods[{i}] ({label})")
        ws = w if w is not None else (list(spec.weights) if spec.weights is not None else [1.0] * m)
        if len(ws) != m:
            raise ValueError(f"methods[{i}] ({label}).weights: expected {m} numbers, got {len(ws)}")
        out = spec.compute(r, group_size, step=0, total=1, weights=ws)
        push, sc = group_push(r, out.advantages, group_size)  # (P, M)
        stats = [_mean_se(push[sc[:, j], j]) for j in range(m)]
        means = [s[0] for s in stats]
        ses = [s[1] for s in stats]
        trained = [j for j in range(m) if ws[j] != 0 and math.isfinite(means[j])]
        neg = [j for j in trained if means[j] < 0]
        worst = min(neg, key=lambda j: means[j]) if neg else None
        sig = worst is not None and math.isfinite(ses[worst]) and means[worst] + SIGNIFICANT_SE * ses[worst] < 0
        ms = MethodScreen(label=str(label), spec=spec.to_dict(), push=means, push_se=ses,
                          binding=[float(x) for x in out.binding_mean], k=None if out.k is None else float(out.k),
                          neglected=None if worst is None else names[worst], neglected_significant=bool(sig))
        for idx, attr in ((ci, "constraint"), (ei, "easy")):
            if idx:
                mask = sc[:, idx].any(1)
                per_prompt = torch.where(sc[:, idx], push[:, idx], 0.0).sum(1) / sc[:, idx].sum(1).clamp(min=1)
                mu, se = _mean_se(per_prompt[mask])
                setattr(ms, f"{attr}_push", mu)
                setattr(ms, f"{attr}_se", se)
                setattr(ms, f"{attr}_n", int(mask.sum()))
        res.methods.append(ms)
        res.weights = [float(x) for x in ws]
    return res
