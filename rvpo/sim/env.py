"""The constraint-neglect environment: response styles, reward channels, configuration, methods.

Shapes: ``S`` styles, ``P`` prompts, ``M = m_easy + 1`` channels (``m_easy`` easy channels, then the
binary constraint channel, always last), ``B`` prompts per step, ``G`` samples per prompt.

Styles (the same for every prompt; rows of :meth:`SimEnv.easy_means` / :attr:`SimEnv.p_sat`):

| style      | easy channels (mean)       | constraint satisfied w.p. |
|------------|----------------------------|---------------------------|
| ``greedy`` | ``1.0`` on every one       | ``p_violate_sat`` (low)   |
| ``balanced`` | ``1.0 - easy_gap`` (small cost) | ``p_sat`` (high)     |
| ``plain``  | ``1.0 - 3 * easy_gap``     | ``p_sat``                 |
| ``sloppy`` | ``1.0 - 3 * easy_gap``     | ``p_violate_sat``         |

``greedy`` wins every easy channel and (nearly always) breaks the constraint; ``balanced`` gives up
``easy_gap`` on each easy channel to keep it. ``plain`` and ``sloppy`` are dominated styles that
every method should drop (they make the early curves move for everyone). Easy rewards carry
Gaussian noise (``noise``); the constraint reward is exactly 0 or 1. Nothing here knows which
advantage estimator will score the samples: rewards depend only on the sampled style and the
run's random stream (seeded by the seed alone), so every method faces the same environment.

The initial policy puts probability ``init_sat`` on the two constraint-keeping styles (split
evenly) and the rest on the two violating ones: ``init_sat`` models a base model that mostly
keeps the constraint before multi-reward fine-tuning starts (constraint *neglect*), and lower
values model a constraint that still has to be learnt.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from rvpo.core import DEFAULT_EPS, Adaptive, Constant, Cosine, Linear, make_schedule, schedule_to_str
from rvpo.settings import Rule, check_rules, integer, number

STYLES = ("greedy", "balanced", "plain", "sloppy")
_KEEPS = torch.tensor([False, True, True, False])  # styles that aim to keep the constraint
_COST = torch.tensor([0.0, 1.0, 3.0, 3.0])  # easy-channel cost in units of easy_gap
ESTIMATOR_NAMES = ("grpo", "gdpo", "rvpo", "rvpo_explicit", "hardmin")


@dataclass(frozen=True)
class Method:
    """One method configuration: a label, a core estimator name and its parameters.

    ``k`` is a schedule spec for ``rvpo`` (``"1"``, ``"linear:0.5:2.0"``, ``"adaptive"``); ``beta``
    is used by ``rvpo_explicit``; ``floor`` passes the unreliable judges' known noise std to the
    core (``noise_floor``, the mitigation). Only these differ between methods.
    """

    label: str
    estimator: str
    k: str | None = None
    beta: float | None = None
    floor: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_method(spec: str) -> Method:
    """Parse ``grpo``, ``gdpo``, ``hardmin``, ``rvpo`` (linear 0.5->2.0), ``rvpo:K``,
    ``rvpo:linear:A:B`` / ``rvpo:adaptive[:TARGET...]`` (any k schedule string), ``rvpo_explicit``
    (beta 0.5) or ``rvpo_explicit:BETA``; a ``+floor`` suffix (not for grpo) turns on the core's
    ``noise_floor`` for the unreliable judge channels.

    Raises ``ValueError`` with a message naming the bad part.
    """
    spec = spec.strip()
    if spec.endswith("+floor"):
        m = parse_method(spec[: -len("+floor")])
        if m.estimator == "grpo":
            raise ValueError("+floor: grpo has no z-scores to shrink; use it with gdpo, rvpo, rvpo_explicit or hardmin")
        return Method(m.label + "+floor", m.estimator, m.k, m.beta, True)
    name, _, arg = spec.partition(":")
    if name not in ESTIMATOR_NAMES:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(ESTIMATOR_NAMES)}")
    if name == "rvpo":
        sched = make_schedule(arg or "linear:0.5:2.0")  # ValueError names k_schedule
        if isinstance(sched, Constant):
            short = f"k={sched.value:g}"
        elif isinstance(sched, (Linear, Cosine)):
            short = f"{sched.type}:{sched.start:g}:{sched.end:g}"
        elif isinstance(sched, Adaptive):
            short = "adaptive" if sched == Adaptive() else (
                f"adaptive:{sched.target:g}:{sched.k_min:g}:{sched.k_max:g}:{sched.form}")
        else:
            short = schedule_to_str(sched)
        label = f"rvpo[{short}]"
        return Method(label, "rvpo", k=schedule_to_str(sched))
    if name == "rvpo_explicit":
        try:
            beta = float(arg) if arg else 0.5
        except ValueError:
            raise ValueError(f"rvpo_explicit: beta must be a number, got {arg!r}") from None
        if not math.isfinite(beta) or beta < 0:
            raise ValueError(f"rvpo_explicit: beta must be finite and >= 0, got {arg!r}")
        return Method(f"rvpo_explicit[beta={beta:g}]", "rvpo_explicit", beta=beta)
    if arg:
        raise ValueError(f"method {name!r} takes no parameter, got {spec!r}")
    return Method(name, name)


DEFAULT_METHODS = ("grpo", "gdpo", "rvpo:1", "rvpo:2", "rvpo:linear:0.5:2.0", "rvpo_explicit:0.5", "hardmin")


@dataclass
class SimConfig:
    """Everything that defines a simulation run (written resolved to ``config.yaml``)."""

    m_easy: int = 8
    """number of easy channels (the constraint is one more channel)"""
    easy_gap: float = 0.3
    """how much the balanced style gives up on each easy channel (raw reward units)"""
    noise: float = 0.5
    """std of the Gaussian noise on easy-channel rewards"""
    p_sat: float = 0.99
    """probability that a constraint-keeping style satisfies the constraint"""
    p_violate_sat: float = 0.05
    """probability that a violating style satisfies it anyway"""
    init_sat: float = 0.8
    """initial policy mass on constraint-keeping styles"""
    noisy: int = 0
    """number of unreliable judge channels (binary verdicts on the constraint, before it)"""
    noisy_random: float = 1.0
    """probability that an unreliable judge answers at random (1 = pure noise); otherwise it
    judges the constraint of that sample correctly"""
    prompts: int = 8
    """number of prompts (each has its own softmax over styles)"""
    batch_prompts: int = 8
    """prompts per step (B), drawn without replacement when B <= prompts"""
    group_size: int = 8
    """samples per prompt (G)"""
    steps: int = 300
    """policy-gradient steps"""
    lr: float = 1.0
    """learning rate on the logits"""
    seeds: int = 5
    """independent runs per method (seeds 0 .. seeds-1, plus seed_offset)"""
    seed_offset: int = 0
    """first seed"""
    eps: float = DEFAULT_EPS
    """added to every std in the advantage core (``AdvantageSpec``'s default, as ``rvpo train``)"""
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    """method specs (see parse_method)"""

    def validate(self) -> None:
        """Raise ``ValueError("<field>: ...")`` for the first bad value (:data:`SIM_RULES`, then the
        rules across fields)."""
        check_rules(self, SIM_RULES, label=str)
        if self.batch_prompts > self.prompts:
            raise ValueError(f"batch_prompts: must be <= prompts ({self.prompts}), got {self.batch_prompts}")
        if not self.methods:
            raise ValueError("methods: need at least one method")
        labels = [parse_method(spec).label for spec in self.methods]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise ValueError(f"methods: listed more than once: {', '.join(dup)}")

    def parsed_methods(self) -> list[Method]:
        return [parse_method(s) for s in self.methods]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SIM_RULES: dict[str, Rule] = {
    **{name: integer(lo) for name, lo in (("m_easy", 1), ("noisy", 0), ("prompts", 1), ("batch_prompts", 1),
                                          ("group_size", 2), ("steps", 1), ("seeds", 1))},
    "easy_gap": number(0), "noise": number(0), "lr": number(0, above=True), "eps": number(0),
    **{name: number(0, 1) for name in ("p_sat", "p_violate_sat", "noisy_random")},
    "init_sat": number(0, 1, above=True, below=True),  # a softmax cannot start at 0 or 1
}
"""Range rules of the :class:`SimConfig` fields (:func:`rvpo.settings.check_rules`)."""


class SimEnv:
    """Reward model of one configuration (stateless: randomness comes from the caller's generator)."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.num_styles = len(STYLES)
        self.channel_names = ([f"easy{j + 1}" for j in range(cfg.m_easy)]
                              + [f"noisy{j + 1}" for j in range(cfg.noisy)] + ["constraint"])
        easy = 1.0 - cfg.easy_gap * _COST.double()  # (S,)
        self.easy_means = easy.unsqueeze(1).expand(-1, cfg.m_easy).contiguous()  # (S, m_easy)
        self.p_sat = torch.where(_KEEPS, cfg.p_sat, cfg.p_violate_sat).double()  # (S,)
        q = cfg.noisy_random
        noisy = ((1 - q) * self.p_sat + q / 2).unsqueeze(1).expand(-1, cfg.noisy)  # (S, noisy)
        self.channel_means = torch.cat([self.easy_means, noisy, self.p_sat.unsqueeze(1)], dim=1)  # (S, M)

    def noise_floor(self) -> list[float]:
        """``(M,)`` known measurement-noise std per channel for the core's ``noise_floor``: the
        unreliable judges' verdict std given the truth, ``sqrt(q/2 (1 - q/2))`` (0.5 for a coin);
        0 elsewhere (the easy channels' noise is part of the outcome, not of the judging)."""
        q = self.cfg.noisy_random
        return [0.0] * self.cfg.m_easy + [math.sqrt(q / 2 * (1 - q / 2))] * self.cfg.noisy + [0.0]

    def init_logits(self) -> torch.Tensor:
        """``(P, S)`` float64 logits with mass ``init_sat`` on the constraint-keeping styles."""
        keep = _KEEPS.sum().item()
        probs = torch.where(_KEEPS, self.cfg.init_sat / keep, (1 - self.cfg.init_sat) / (len(STYLES) - keep))
        return probs.double().log().expand(self.cfg.prompts, -1).clone()

    def sample_rewards(self, styles: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Rewards ``(N, M)`` float64 of sampled ``styles`` ``(N,)`` (the only input is the style)."""
        n = styles.numel()
        easy = self.easy_means[styles] + self.cfg.noise * torch.randn(n, self.cfg.m_easy, generator=gen, dtype=torch.float64)
        sat = (torch.rand(n, generator=gen, dtype=torch.float64) < self.p_sat[styles]).double()
        if not self.cfg.noisy:  # (draws nothing more: runs without judges keep their random stream)
            return torch.cat([easy, sat.unsqueeze(1)], dim=1)
        k = self.cfg.noisy
        at_random = torch.rand(n, k, generator=gen, dtype=torch.float64) < self.cfg.noisy_random
        coin = (torch.rand(n, k, generator=gen, dtype=torch.float64) < 0.5).double()
        verdict = torch.where(at_random, coin, sat.unsqueeze(1).expand(n, k))
        return torch.cat([easy, verdict, sat.unsqueeze(1)], dim=1)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected per-channel reward ``(..., M)`` of policies ``probs`` ``(..., S)``."""
        return probs @ self.channel_means
