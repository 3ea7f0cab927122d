"""PNG plots (matplotlib, Agg backend): training curves with mean ± 1 std bands, and sweeps."""

from __future__ import annotations

from pathlib import Path

import torch

from rvpo.sim.run import SAT_TARGET, RunResult


def _plt():
    import matplotlib  # deferred: matplotlib (start-up time; only plotting needs it)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # deferred: matplotlib (start-up time; only plotting needs it)

    return plt


def plot_curves(path: Path, results: dict[str, list[RunResult]], channel_names: list[str]) -> None:
    """One panel per distinct channel plus the mean reward; mean ± 1 std over seeds per method.

    The easy channels have equal expected rewards by construction (same style means), so one panel
    stands for all of them; the constraint panel is the satisfaction probability.
    """
    plt = _plt()
    easy = [n for n in channel_names if n != "constraint"]
    panels = [("constraint", "constraint satisfaction"),
              (easy[0], f"easy channel reward ({len(easy)} channels, identical curves)"),
              ("__mean__", "mean reward over all channels")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), constrained_layout=True)
    for ax, (name, title) in zip(axes, panels, strict=True):
        for i, (lab, runs) in enumerate(results.items()):
            c = torch.stack([r.channel_curves for r in runs])  # (seeds, T + 1, M)
            y = c.mean(2) if name == "__mean__" else c[:, :, channel_names.index(name)]
            m = y.mean(0).numpy()
            s = (y.std(0) if len(runs) > 1 else torch.zeros_like(y[0])).numpy()
            x = range(len(m))
            line, = ax.plot(x, m, label=lab, lw=1.6, color=f"C{i % 10}")
            ax.fill_between(x, m - s, m + s, alpha=0.18, color=line.get_color(), lw=0)
        if name == "constraint":
            ax.axhline(SAT_TARGET, color="grey", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    n_seeds = len(next(iter(results.values())))
    fig.suptitle(f"constraint-neglect simulation: mean ± 1 std over {n_seeds} seeds", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(path: Path, points: list[dict]) -> None:
    """Final constraint satisfaction and easy reward against the swept value (mean ± 1 std)."""
    plt = _plt()
    param = points[0]["param"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    methods = list(dict.fromkeys(p["method"] for p in points)) if param == "m_easy" else [None]
    for i, meth in enumerate(methods):
        pts = [p for p in points if meth is None or p["method"] == meth]
        x = [p["value"] for p in pts]
        for ax, key, title in ((axes[0], "final_sat", "final constraint satisfaction"),
                               (axes[1], "easy", "final easy-channel reward (each)")):
            m = [p[key]["mean"] for p in pts]
            s = [p[key]["std"] or 0.0 for p in pts]
            ax.errorbar(x, m, yerr=s, marker="o", capsize=3, color=f"C{i}",
                        label=meth or ("rvpo (constant k)" if param == "k" else "rvpo_explicit"))
            ax.set_title(title, fontsize=10)
            ax.set_xlabel({"k": "k (0 = mean of z, i.e. gdpo)", "beta": "beta (0 = mean of z, i.e. gdpo)"}.get(param, param))
            ax.grid(alpha=0.3)
    if param in ("k", "beta") and min(p["value"] for p in points) > 0:
        for ax in axes:
            ax.set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"sweep over {param}: mean ± 1 std over seeds", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
