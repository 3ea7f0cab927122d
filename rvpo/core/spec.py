"""``AdvantageSpec``: every advantage setting in one frozen object (defaults, validation, help).

The trainer configs, the CLI, the verl adapter and ``rvpo sim`` all read their advantage settings
through this class, so a knob has one default and one help text (``AdvantageSpec.help()``, from
each field's ``metadata["help"]``). Evaluate it at a step with :meth:`AdvantageSpec.params` (the
keyword arguments of :func:`rvpo.compute_advantages`) or run it with :meth:`AdvantageSpec.compute`.

>>> spec = AdvantageSpec.from_dict({"estimator": "rvpo", "k": "linear:0.5:2.0"})
>>> spec.params(step=0, total=10)["k"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import Any

import torch

from rvpo.core.estimators import DEFAULT_EPS, AdvantageParams, compute_advantages, get_estimator
from rvpo.core.schedules import make_schedule, schedule_to_str
from rvpo.settings import check_keys


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class AdvantageSpec:
    """How rewards become advantages: estimator, k schedule and options (see docs/core.md)."""

    estimator: str = field(default="rvpo", metadata=_help(
        "advantage estimator: grpo, gdpo, rvpo, rvpo_explicit, hardmin, or a dotted path pkg.mod:fn"))
    k: str = field(default="linear:0.5:2.0", metadata=_help(
        "rvpo's risk coefficient k: a number, linear:START:END, cosine:START:END, step:V1,V2[:B1], "
        "or adaptive[:TARGET[:K_MIN:K_MAX[:FORM]]] (k chosen per batch; docs/core.md)"))
    beta: float = field(default=0.5, metadata=_help("variance penalty of rvpo_explicit (>= 0)"))
    eps: float = field(default=DEFAULT_EPS, metadata=_help(
        "added to every std before dividing; 1e-4 is TRL's, so gdpo equals TRL's normalize-then-sum"))
    unbiased: bool = field(default=True, metadata=_help("unbiased (n-1) standard deviations, as TRL and verl"))
    whiten: bool = field(default=True, metadata=_help(
        "batch-whiten the aggregate (gdpo, rvpo, rvpo_explicit, hardmin)"))
    weights: tuple[float, ...] | None = field(default=None, metadata=_help(
        "channel weights: a list, one per reward channel in order, or a mapping channel name -> weight "
        "(unnamed channels keep their default, 1); >= 0 except for grpo and gdpo; 0 = monitor only"))
    drop_zero_spread: bool = field(default=False, metadata=_help(
        "leave a channel out of a group's soft-min when it has no spread there (default: it counts with Z = 0)"))
    scale: str = field(default="group", metadata=_help("grpo only: divide by the group std, the batch std, or none"))
    noise_floor: tuple[float, ...] | None = field(default=None, metadata=_help(
        "known measurement-noise std per channel (one value for all, or one per channel; off by default): "
        "shrinks each group's z-scores by the share of its variance that is signal"))

    def __post_init__(self) -> None:
        if not isinstance(self.estimator, str) or not self.estimator:
            raise ValueError(f"estimator: expected a name, got {self.estimator!r}")
        get_estimator(self.estimator)  # ValueError naming the estimator
        try:
            sched = _parse_k(self.k) if isinstance(self.k, str) else make_schedule(self.k)
        except ValueError as e:  # the schedule parser names itself k_schedule: here the field is k
            raise ValueError("k" + str(e).removeprefix("k_schedule")) from None
        object.__setattr__(self, "k", schedule_to_str(sched))  # normalised, lossless
        self.__dict__["schedule"] = sched  # primes the cached_property
        if isinstance(self.weights, Mapping):
            object.__setattr__(self, "weights", _named_weights(self.weights))
        for name in ("weights", "noise_floor"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, dict):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = (v,)
                try:
                    v = tuple(float(x) for x in v)
                except (TypeError, ValueError):
                    raise ValueError(f"{name}: expected a list of numbers, got {v!r}") from None
                if not all(math.isfinite(x) for x in v):
                    raise ValueError(f"{name}: expected finite numbers, got {v!r}")
                object.__setattr__(self, name, v)
        for name in ("beta", "eps"):
            v = getattr(self, name)
            if isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, name, float(v))
        AdvantageParams(**{**self._static(), "weights": None if self.named_weights else self.weights})

    @property
    def named_weights(self) -> bool:
        """True when ``weights`` is a mapping by channel name (resolve it with :meth:`resolve_weights`)."""
        return isinstance(self.weights, dict)

    def resolve_weights(self, names: Sequence[str], defaults: Mapping[str, float] | None = None) -> AdvantageSpec:
        """This spec with positional weights for channels ``names``: a name mapping is looked up
        (``defaults``, then 1, for names it leaves out); a list must have one weight per name.
        Raises ``ValueError`` (``"weights: ..."``) for an unknown name or a wrong count."""
        names = [str(n) for n in names]
        w = self.weights
        if w is None and not defaults:
            return self
        if w is None or isinstance(w, dict):
            given = dict(w or {})
            unknown = [n for n in given if n not in names]
            if unknown:
                raise ValueError(f"weights: unknown channel(s) {unknown}; the channels are: {', '.join(names)}")
            base = dict(defaults or {})
            pos = tuple(float(given.get(n, base.get(n, 1.0))) for n in names)
        else:
            if len(w) != len(names):
                raise ValueError(f"weights: expected {len(names)} numbers (one per channel: {', '.join(names)}), "
                                 f"got {len(w)}")
            pos = tuple(w)
        return AdvantageSpec.from_dict({**self.to_dict(), "weights": list(pos)})

    def _static(self) -> dict[str, Any]:
        return {"beta": self.beta, "eps": self.eps, "unbiased": self.unbiased, "whiten": self.whiten,
                "weights": self.weights, "drop_zero_spread": self.drop_zero_spread, "scale": self.scale,
                "noise_floor": self.noise_floor}

    @cached_property
    def schedule(self):
        """The k schedule object (``schedule(step, total)`` is a float or an adaptive rule)."""
        return _parse_k(self.k)

    def k_at(self, step: int = 0, total: int = 1) -> Any:
        """k for a batch made at ``step`` of ``total`` (a float, or an adaptive rule the estimator resolves
        on the batch). Trainers hand the spec their step; no trainer reads the schedule itself."""
        return self.schedule(step, total)

    def describe(self) -> str:
        """The estimator and its k schedule, for a run's log: ``rvpo, k linear:0.5:2.0``."""
        return f"{self.estimator}, k {self.k}"

    def params(self, step: int = 0, total: int = 1, weights: Sequence[float] | torch.Tensor | None = None) -> dict:
        """Keyword arguments of :func:`rvpo.compute_advantages` at ``step`` of ``total``
        (``estimator`` included). ``weights`` overrides the spec's (e.g. a trainer's reward weights)."""
        kw = {"estimator": self.estimator, "k": self.k_at(step, total), **self._static()}
        if weights is not None:
            kw["weights"] = weights
        elif self.named_weights:
            raise ValueError(f"weights: given by channel name ({self.weights}); resolve them against the reward "
                             "channels first (AdvantageSpec.resolve_weights)")
        return kw

    def compute(self, rewards: torch.Tensor, group_size: int, step: int = 0, total: int = 1, weights=None):
        """``compute_advantages(rewards, group_size, **self.params(step, total, weights))``."""
        return compute_advantages(rewards, group_size, **self.params(step, total, weights))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON safe); :meth:`from_dict` reads it back."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("weights", "noise_floor"):
            if d[name] is not None:
                d[name] = dict(d[name]) if isinstance(d[name], dict) else list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "", names: Mapping[str, str] | None = None) -> AdvantageSpec:
        """Build from a mapping; an unknown key raises ``ValueError`` with the closest setting
        (:func:`rvpo.settings.unknown_key_error`: ``unknown advantage setting 'unbaised' (did you mean
        'unbiased'?)``).

        Errors name the field as the caller's layer spells it: ``where`` is a prefix (e.g.
        ``"algorithm."``) and ``names`` maps a spec field to that layer's own name (e.g.
        ``{"k": "rvpo_k_schedule"}``); the keys of ``d`` are always spec field names."""
        valid = [f.name for f in fields(cls)]
        spell = {n: f"{where}{(names or {}).get(n, n)}" for n in [*valid, *map(str, d)]}
        check_keys("advantage setting", d, valid, spell=spell, error=ValueError)
        try:
            return cls(**dict(d))
        except ValueError as e:
            raise ValueError(locate_error(e, where, names)) from None

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: help text}`` for CLI and config layers."""
        return {f.name: f.metadata["help"] for f in fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default of every field (YAML/JSON safe; equal to ``AdvantageSpec().to_dict()``, built without one)."""
        return {f.name: f.default for f in fields(cls)}


@lru_cache(maxsize=64)
def _parse_k(text: str) -> Any:
    """The schedule of a ``k`` string. Schedules are frozen, so a run parses its ``k`` once, however many
    specs (resolved weights, copies) carry it."""
    return make_schedule(text)


def _named_weights(w: Mapping[Any, Any]) -> dict[str, float]:
    """A ``{channel name: weight}`` mapping, checked (string names, finite numbers)."""
    out: dict[str, float] = {}
    for name, v in w.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"weights: channel names must be strings, got {name!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"weights.{name}: expected a finite number, got {v!r}")
        out[name] = float(v)
    return out


def locate_error(e: Exception, where: str = "", names: Mapping[str, str] | None = None) -> str:
    """An :class:`AdvantageSpec` validation message with its field renamed for the caller's layer.

    The core's messages start with the field (``"k: ..."``, ``"eps: must be >= 0, got -1.0"``);
    that prefix becomes ``where + names.get(field, field)``. Other messages get ``where`` only."""
    msg = str(e)
    head, sep, rest = msg.partition(": ")
    name, dot, sub = head.partition(".")
    if sep and name in {f.name for f in fields(AdvantageSpec)}:
        return f"{where}{(names or {}).get(name, name)}{dot}{sub}: {rest}"
    return f"{where}{msg}"
