"""Schedules for the risk coefficient k: ``schedule(step, total_steps) -> k``.

The paper's default for rubric tasks is linear 0.5 -> 2.0 over the run: near-mean early to build
general capability, then growing pressure on the bottleneck channels. A schedule is a frozen
dataclass that round-trips through a plain dict (``to_dict`` / :func:`make_schedule`), so it can
live in YAML/JSON configs, and also parses from a short string for command lines:

    "1.5"                    constant 1.5
    "constant:1.5"           the same
    "linear:0.5:2.0"         linear from 0.5 at step 0 to 2.0 at the last step
    "cosine:0.5:2.0"         half-cosine ramp from 0.5 to 2.0
    "step:0.5,1.0,2.0"       piecewise constant, equal thirds of the run (values at fractions)
    "adaptive:0.35:0.25:8:power"   k chosen per batch from the z-scores so that the soft-min keeps
                             M ** 0.35 effective channels, k in [0.25, 8] (see :mod:`rvpo.core.adaptive`);
                             "adaptive" alone is exactly this default; form "linear" targets
                             1 + target (M - 1) channels instead

An adaptive schedule returns an :class:`~rvpo.core.adaptive.AdaptiveK` rule instead of a number;
``compute_advantages(..., k=rule)`` resolves it on the batch and reports the k it used in
``AdvantageOutput.k``. Callers must therefore not ``float()`` a schedule's value.

``progress = step / max(total_steps - 1, 1)`` clipped to [0, 1]: the first step uses ``start`` and
the last step uses ``end``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from rvpo.core.adaptive import AdaptiveK


def _progress(step: int, total_steps: int) -> float:
    if total_steps is None or total_steps <= 1:
        return 0.0
    return min(max(step / (total_steps - 1), 0.0), 1.0)


def _check(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class Constant:
    """k fixed for the whole run."""

    value: float = 1.0
    type: str = field(default="constant", init=False)

    def __post_init__(self):
        _check("value", self.value)

    def __call__(self, step: int, total_steps: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Linear:
    """k rises (or falls) linearly from ``start`` to ``end`` over the run."""

    start: float = 0.5
    end: float = 2.0
    type: str = field(default="linear", init=False)

    def __post_init__(self):
        _check("start", self.start), _check("end", self.end)

    def __call__(self, step: int, total_steps: int) -> float:
        t = _progress(step, total_steps)
        return float(self.start + (self.end - self.start) * t)


@dataclass(frozen=True)
class Cosine:
    """Half-cosine ramp from ``start`` to ``end``: slow at both ends, fastest mid-run."""

    start: float = 0.5
    end: float = 2.0
    type: str = field(default="cosine", init=False)

    def __post_init__(self):
        _check("start", self.start), _check("end", self.end)

    def __call__(self, step: int, total_steps: int) -> float:
        t = _progress(step, total_steps)
        return float(self.start + (self.end - self.start) * 0.5 * (1.0 - math.cos(math.pi * t)))


@dataclass(frozen=True)
class Step:
    """Piecewise constant: ``values[i]`` from progress ``boundaries[i-1]`` on (equal parts by default)."""

    values: tuple[float, ...] = (0.5, 1.0, 2.0)
    boundaries: tuple[float, ...] | None = None
    type: str = field(default="step", init=False)

    def __post_init__(self):
        vals = tuple(_check("values", v) for v in self.values)
        if not vals:
            raise ValueError("values: a step schedule needs at least one value")
        object.__setattr__(self, "values", vals)
        if self.boundaries is None:
            b = tuple((i + 1) / len(vals) for i in range(len(vals) - 1))
        else:
            b = tuple(float(x) for x in self.boundaries)
        if len(b) != len(vals) - 1 or any(not 0.0 <= x <= 1.0 for x in b) or list(b) != sorted(b):
            raise ValueError(
                f"boundaries: need {len(vals) - 1} increasing fractions in [0, 1] for {len(vals)} values, got {b}"
            )
        object.__setattr__(self, "boundaries", b)

    def __call__(self, step: int, total_steps: int) -> float:
        t = _progress(step, total_steps)
        i = sum(1 for b in self.boundaries if t >= b)
        return float(self.values[i])


@dataclass(frozen=True)
class Adaptive:
    """k resolved per batch so the soft-min keeps a ``target`` effective-channel fraction
    (:mod:`rvpo.core.adaptive`); the value at a step is an :class:`AdaptiveK` rule, not a number."""

    target: float = 0.35
    k_min: float = 0.25
    k_max: float = 8.0
    form: str = "power"
    type: str = field(default="adaptive", init=False)

    def __post_init__(self):
        rule = self.rule  # validates, naming the field
        for name in ("target", "k_min", "k_max"):
            object.__setattr__(self, name, getattr(rule, name))

    @property
    def rule(self) -> AdaptiveK:
        return AdaptiveK(self.target, self.k_min, self.k_max, self.form)

    def __call__(self, step: int, total_steps: int) -> AdaptiveK:
        return self.rule


Schedule = Constant | Linear | Cosine | Step | Adaptive
SCHEDULES: dict[str, type] = {"constant": Constant, "linear": Linear, "cosine": Cosine, "step": Step,
                              "adaptive": Adaptive}


def schedule_to_dict(s: Schedule) -> dict[str, Any]:
    """Plain-dict form for config files (``make_schedule`` reads it back)."""
    d = asdict(s)
    for key, v in d.items():
        if isinstance(v, tuple):
            d[key] = list(v)
    return d


def schedule_to_str(s: Schedule) -> str:
    """Short, lossless string form (``make_schedule`` reads it back)."""
    if isinstance(s, Constant):
        return f"constant:{s.value!r}"
    if isinstance(s, (Linear, Cosine)):
        return f"{s.type}:{s.start!r}:{s.end!r}"
    if isinstance(s, Adaptive):
        return f"adaptive:{s.target!r}:{s.k_min!r}:{s.k_max!r}:{s.form}"
    out = "step:" + ",".join(repr(v) for v in s.values)
    if s.boundaries != Step(s.values).boundaries:
        out += ":" + ",".join(repr(b) for b in s.boundaries)
    return out


def make_schedule(spec: Schedule | dict | str | int | float) -> Schedule:
    """Build a schedule from a number (constant), a string (see module docstring) or a dict.

    Raises ``ValueError`` naming the field on a bad spec.
    """
    if isinstance(spec, tuple(SCHEDULES.values())):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"k_schedule: expected a number, string or mapping, got {spec!r}")
    if isinstance(spec, (int, float)):
        return Constant(float(spec))
    if isinstance(spec, str):
        parts = spec.strip().split(":")
        if parts[0].lower() == "adaptive" and len(parts) == 1:
            return Adaptive()
        try:
            if len(parts) == 1:
                return Constant(float(parts[0]))
            kind, args = parts[0].lower(), parts[1:]
            if kind == "constant" and len(args) == 1:
                return Constant(float(args[0]))
            if kind in ("linear", "cosine") and len(args) == 2:
                return SCHEDULES[kind](float(args[0]), float(args[1]))
            if kind == "adaptive" and len(args) <= 4:
                nums = [float(x) for x in args[:3] if x.strip()]
                return Adaptive(*nums, *args[3:])
            if kind == "step" and len(args) in (1, 2):
                vals = tuple(float(x) for x in args[0].split(","))
                bounds = tuple(float(x) for x in args[1].split(",")) if len(args) == 2 else None
                return Step(vals, bounds)
        except ValueError as e:
            raise ValueError(f"k_schedule: cannot parse {spec!r}: {e}") from None
        raise ValueError(
            f"k_schedule: cannot parse {spec!r}; use a number, 'constant:K', 'linear:START:END', "
            "'cosine:START:END', 'step:V1,V2,...[:B1,B2,...]' or 'adaptive[:TARGET[:K_MIN:K_MAX[:FORM]]]'"
        )
    if isinstance(spec, dict):
        d = dict(spec)
        kind = d.pop("type", None)
        if kind not in SCHEDULES:
            raise ValueError(f"k_schedule.type: expected one of {sorted(SCHEDULES)}, got {kind!r}")
        try:
            if kind == "step":
                d["values"] = tuple(d.get("values", ()))
                if d.get("boundaries") is not None:
                    d["boundaries"] = tuple(d["boundaries"])
            return SCHEDULES[kind](**d)
        except TypeError as e:
            raise ValueError(f"k_schedule: bad fields for {kind!r}: {e}") from None
    raise ValueError(f"k_schedule: expected a number, string or mapping, got {type(spec).__name__}")
