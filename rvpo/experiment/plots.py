"""Experiment figures (matplotlib, Agg): training curves with mean +- 1 std bands over seeds.

As the paper's figure 3: one PNG per reward channel (``rewards/<ch>/mean``, every method overlaid,
the band is +-1 std over seeds at each step), plus k, the binding weight of each channel
(``rvpo/binding/<ch>``) and the share of zero-spread groups per channel, and a dot plot of the
target metric per method (one dot per seed, mean +- 1 std).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

from rvpo.experiment.aggregate import RunData, curve_keys, curve_stats
from rvpo.stats import mean_std


def _plt():
    import matplotlib  # deferred: matplotlib (start-up time; only plotting needs it)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # deferred: matplotlib (start-up time; only plotting needs it)

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _band(ax, stats: dict, colors: dict[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator  # deferred: matplotlib (start-up time; only plotting needs it)

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for label, (x, m, s, _n) in stats.items():
        c = colors[label]
        ax.plot(x, m, color=c, lw=1.6, marker="o" if len(x) < 15 else None, ms=3, label=label)
        ax.fill_between(x, [a - b for a, b in zip(m, s, strict=True)], [a + b for a, b in zip(m, s, strict=True)], color=c, alpha=0.18, lw=0)


def _seeds_note(runs: list[RunData], smooth: int) -> str:
    n = len({r.seed for r in runs})
    note = f"mean ± 1 std over {n} seed{'s' if n != 1 else ''}"
    return note + (f", trailing mean of {smooth} steps" if smooth > 1 else "")


def plot_key(runs: list[RunData], key: str, path: Path, title: str, ylabel: str, colors: dict[str, str],
             smooth: int = 1) -> bool:
    """One panel: ``key`` per step for every method; False (nothing written) if it was never logged."""
    stats = curve_stats(runs, key, smooth)
    if not stats:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.6), constrained_layout=True)
    _band(ax, stats, colors)
    ax.set(xlabel="step", ylabel=ylabel, title=f"{title}\n({_seeds_note(runs, smooth)})")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_panels(runs: list[RunData], prefix: str, path: Path, title: str, colors: dict[str, str],
                ylim: tuple[float, float] | None = None, smooth: int = 1) -> bool:
    """One panel per channel for keys ``<prefix><channel>`` (binding weights, zero-spread shares)."""
    keys = [k for k in curve_keys(runs) if k.startswith(prefix)]
    keys = [k for k in keys if curve_stats(runs, k)]
    if not keys:
        return False
    plt = _plt()
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, constrained_layout=True)
    for ax, key in zip(axes.flat, keys, strict=False):  # a 4-column grid can have spare cells
        _band(ax, curve_stats(runs, key, smooth), colors)
        ax.set_title(key[len(prefix):], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title} ({_seeds_note(runs, smooth)})", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_target(per_method: dict[str, list[float]], target: str, path: Path, colors: dict[str, str]) -> bool:
    """The target metric per method: one dot per seed, and mean +- 1 std."""
    if not any(any(math.isfinite(v) for v in vs) for vs in per_method.values()):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(per_method), 3.4), constrained_layout=True)
    for i, (label, vs) in enumerate(per_method.items()):
        vs = [v for v in vs if math.isfinite(v)]
        if not vs:
            continue
        ms = mean_std(vs)
        ax.scatter([i] * len(vs), vs, color=colors[label], alpha=0.6, s=18, zorder=3)
        ax.errorbar([i + 0.15], [ms.mean], yerr=[ms.std], color=colors[label], marker="D", capsize=4)
    ax.set_xticks(range(len(per_method)), list(per_method), fontsize=8)
    ax.set(ylabel=target, title=f"{target} per method (dots: seeds)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _derived(runs: list[RunData], constraint: list[str], easy: list[str]) -> list[RunData]:
    """Copies of ``runs`` whose records hold ``constraint``, ``easy`` and ``binding`` per step (means over channels)."""

    def mean(rec: dict, keys: list[str]) -> float | None:
        vals = [rec.get(k) for k in keys]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    out = []
    for r in runs:
        recs = [{"step": rec["step"], "constraint": mean(rec, [f"rewards/{c}/mean" for c in constraint]),
                 "easy": mean(rec, [f"rewards/{c}/mean" for c in easy]),
                 "binding": sum(v for v in [rec.get(f"rvpo/binding/{c}") for c in constraint]
                                if isinstance(v, (int, float))) if any(f"rvpo/binding/{c}" in rec for c in constraint)
                 else None} for rec in r.records]
        out.append(replace(r, records=recs))
    return out


def plot_constraint_easy(runs: list[RunData], constraint: list[str], easy: list[str], path: Path,
                         colors: dict[str, str], smooth: int = 1) -> bool:
    """Three panels per step, every method with seed bands: the constraint's batch rate, the easy channels'
    mean, the binding weight on the constraint (the paper's figure-3 shape)."""
    d = _derived(runs, constraint, easy)
    panels = [(k, t) for k, t in (("constraint", f"constraint ({', '.join(constraint)}): batch rate"),
                                  ("easy", "easy channels: mean batch rate"),
                                  ("binding", "binding weight on the constraint")) if curve_stats(d, k)]
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        _band(ax, curve_stats(d, key, smooth), colors)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"constraint vs easy channels ({_seeds_note(runs, smooth)})", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(runs: list[RunData], labels: list[str], out_dir: Path, target: str,
                per_method: dict[str, list[float]], smooth: int = 1, constraint_channels: tuple[str, ...] = (),
                easy_channels: tuple[str, ...] = ()) -> list[Path]:
    """Every figure into ``out_dir``; returns the files written (channels in first-logged order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
    written: list[Path] = []
    if constraint_channels and plot_constraint_easy(runs, list(constraint_channels), list(easy_channels),
                                                    out_dir / "constraint_vs_easy.png", colors, smooth):
        written.append(out_dir / "constraint_vs_easy.png")
    chans = [k[len("rewards/"):-len("/mean")] for k in curve_keys(runs) if k.startswith("rewards/") and k.endswith("/mean")]
    for ch in chans:
        p = out_dir / f"reward_{_safe(ch)}.png"
        if plot_key(runs, f"rewards/{ch}/mean", p, f"reward channel '{ch}' (batch mean)", ch, colors, smooth):
            written.append(p)
    for key, name, title, ylabel in (("rvpo/k", "k.png", "risk coefficient k", "k"),
                                     ("frac_reward_zero_std", "zero_spread_total.png",
                                      "share of groups with no spread in the total reward", "share")):
        if plot_key(runs, key, out_dir / name, title, ylabel, colors, smooth):
            written.append(out_dir / name)
    for prefix, name, title, ylim in (("rvpo/binding/", "binding.png", "mean binding weight per channel", (-0.02, 1.02)),
                                      ("rvpo/zero_spread_frac/", "zero_spread.png",
                                       "share of groups with no spread, per channel", (-0.02, 1.02))):
        if plot_panels(runs, prefix, out_dir / name, title, colors, ylim, smooth):
            written.append(out_dir / name)
    if plot_target(per_method, target, out_dir / "target.png", colors):
        written.append(out_dir / "target.png")
    return written
