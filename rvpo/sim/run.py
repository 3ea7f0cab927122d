"""Training loop of the simulation: REINFORCE on tabular softmax logits, advantages from the core.

One run = one (method, seed). Per step: draw ``B`` of the ``P`` prompts, sample ``G`` styles per
prompt from the current softmax, score them (:meth:`SimEnv.sample_rewards`), compute advantages
with :func:`rvpo.compute_advantages` (the same call for every method; only the estimator name and
its ``k`` / ``beta`` differ), then take one exact policy-gradient step on the logits::

    logits[p] += lr / (B * G) * sum_{g in group p} A_g * (onehot(style_g) - softmax(logits[p]))

which is the gradient of ``mean_g A_g log pi(style_g | p)``. Metrics are the *expected* channel
rewards of the current policy (exact, not sampled), so curves are smooth and deterministic per seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from rvpo import compute_advantages
from rvpo.core import AdvantageSpec
from rvpo.sim.env import Method, SimConfig, SimEnv, parse_method

SAT_TARGET = 0.95


@dataclass
class RunResult:
    """Curves and final metrics of one (method, seed) run.

    Attributes:
        channel_curves: ``(T + 1, M)`` expected reward per channel after each step (row 0: start).
        style_probs: ``(S,)`` final style probabilities averaged over prompts.
        k_curve: ``(T,)`` the k used at each step (NaN for estimators without k).
    """

    method: str
    seed: int
    channel_curves: torch.Tensor
    style_probs: torch.Tensor
    k_curve: torch.Tensor

    @property
    def sat_curve(self) -> torch.Tensor:
        return self.channel_curves[:, -1]

    @property
    def final_sat(self) -> float:
        return float(self.sat_curve[-1])

    @property
    def steps_to_target(self) -> int | None:
        """First step whose policy satisfies the constraint w.p. >= 0.95 (None: never)."""
        hit = (self.sat_curve >= SAT_TARGET).nonzero()
        return int(hit[0]) if hit.numel() else None

    def final_metrics(self, channel_names: list[str]) -> dict:
        final = self.channel_curves[-1]
        out = {"method": self.method, "seed": self.seed, "final_sat": self.final_sat,
               "mean_reward": float(final.mean()), "steps_to_95": self.steps_to_target}
        for name, v in zip(channel_names, final.tolist(), strict=True):
            out[f"ch/{name}"] = v
        return out


def run_one(cfg: SimConfig, method: Method, seed: int, env: SimEnv | None = None) -> RunResult:
    """Train one policy; deterministic given ``(cfg, method, seed)``.

    The random stream is seeded by ``seed`` alone, never by the method, so methods differ only in
    how they turn the same kind of rewards into advantages.
    """
    env = env or SimEnv(cfg)
    gen = torch.Generator().manual_seed(int(seed))
    logits = env.init_logits()  # (P, S)
    spec = AdvantageSpec(estimator=method.estimator, k=method.k if method.k is not None else 1.0,
                         beta=method.beta if method.beta is not None else 0.5, eps=cfg.eps,
                         noise_floor=env.noise_floor() if method.floor else None)
    has_k = method.k is not None
    P, B, G, T = cfg.prompts, cfg.batch_prompts, cfg.group_size, cfg.steps
    curves = torch.empty(T + 1, len(env.channel_names), dtype=torch.float64)
    k_curve = torch.full((T,), math.nan, dtype=torch.float64)
    curves[0] = env.expected(logits.softmax(-1)).mean(0)
    for t in range(T):
        prompts = torch.randperm(P, generator=gen)[:B]  # (B,)
        probs = logits[prompts].softmax(-1)  # (B, S)
        styles = torch.multinomial(probs, G, replacement=True, generator=gen)  # (B, G)
        rewards = env.sample_rewards(styles.reshape(-1), gen)  # (B*G, M), contiguous groups
        params = spec.params(t, T)  # k: a number, or an adaptive rule the core resolves on this batch
        out = compute_advantages(rewards, G, **params)
        if has_k:
            k_curve[t] = out.k
        adv = out.advantages.view(B, G)
        onehot = torch.zeros(B, G, env.num_styles, dtype=torch.float64).scatter_(2, styles.unsqueeze(2), 1.0)
        grad = (adv.unsqueeze(2) * (onehot - probs.unsqueeze(1))).sum(1) / (B * G)  # (B, S)
        logits[prompts] += cfg.lr * grad
        curves[t + 1] = env.expected(logits.softmax(-1)).mean(0)
    return RunResult(method.label, int(seed), curves, logits.softmax(-1).mean(0), k_curve)


def run_methods(
    cfg: SimConfig, methods: list[Method] | None = None, progress: Callable | None = None
) -> dict[str, list[RunResult]]:
    """Run every method for seeds ``seed_offset .. seed_offset + seeds - 1``.

    ``progress`` (optional) is called once per finished run (e.g. a tqdm ``update``).
    Returns ``{method label: [RunResult per seed]}`` in method order.
    """
    env = SimEnv(cfg)
    methods = methods if methods is not None else cfg.parsed_methods()
    out: dict[str, list[RunResult]] = {}
    for m in methods:
        runs = []
        for s in range(cfg.seed_offset, cfg.seed_offset + cfg.seeds):
            runs.append(run_one(cfg, m, s, env))
            if progress is not None:
                progress()
        out[m.label] = runs
    return out


SWEEPS = ("k", "beta", "m_easy")


def sweep_points(cfg: SimConfig, kind: str, values: list[float]) -> list[tuple[float, SimConfig, list[Method]]]:
    """``(value, config, methods)`` for every point of a sweep.

    ``k``: rvpo with constant k (k = 0 is the mean of z-scores, i.e. gdpo after whitening);
    ``beta``: rvpo_explicit (beta = 0 is again the mean); ``m_easy``: the configured methods at
    each number of easy channels.
    """
    if kind not in SWEEPS:
        raise ValueError(f"sweep: expected one of {', '.join(SWEEPS)}, got {kind!r}")
    points = []
    for v in values:
        if kind == "k":
            points.append((v, cfg, [parse_method(f"rvpo:{v:g}")]))
        elif kind == "beta":
            points.append((v, cfg, [parse_method(f"rvpo_explicit:{v:g}")]))
        else:
            c = replace(cfg, m_easy=int(v))
            c.validate()
            points.append((v, c, c.parsed_methods()))
    return points


def run_sweep(
    cfg: SimConfig, kind: str, values: list[float], progress: Callable | None = None
) -> list[dict]:
    """Run a sweep; returns one ``{"param", "value", "method", "runs": [RunResult]}`` per point and method."""
    rows = []
    for v, c, methods in sweep_points(cfg, kind, values):
        res = run_methods(c, methods, progress)
        for label, runs in res.items():
            rows.append({"param": kind, "value": v, "method": label, "runs": runs,
                         "channel_names": SimEnv(c).channel_names})
    return rows
