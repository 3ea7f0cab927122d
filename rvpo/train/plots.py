"""PNG plots of a run's ``metrics.jsonl`` (matplotlib, Agg backend: no display needed).

- ``reward_<channel>.png``: per-channel reward mean per step, with a +-1 std band when logged;
- ``k_binding.png``: the risk coefficient k per step and, for soft-min estimators, the mean
  binding weight of each channel (``rvpo/binding/<channel>``: how much of the aggregate it drives).
"""

from __future__ import annotations

import re
from pathlib import Path

from rvpo.runs import read_jsonl


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def channels(records: list[dict], prefix: str = "rewards/", suffix: str = "/mean") -> list[str]:
    """Channel names found as ``<prefix><name><suffix>`` keys, in first-seen order."""
    pat = re.compile("^" + re.escape(prefix) + r"(.+)" + re.escape(suffix) + "$")
    out: list[str] = []
    for r in records:
        for k in r:
            m = pat.match(k)
            if m and m.group(1) not in out:
                out.append(m.group(1))
    return out


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the plots for ``metrics_path`` into ``out_dir``; returns the files written."""
    import matplotlib  # deferred: matplotlib (start-up time; only plotting needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib (start-up time; only plotting needs it)

    metrics_path, out_dir = Path(metrics_path), Path(out_dir)
    records = read_jsonl(metrics_path) if metrics_path.is_file() else []
    if not records:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ch in channels(records):
        xs, ys = _series(records, f"rewards/{ch}/mean")
        sx, sd = _series(records, f"rewards/{ch}/std")
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(xs, ys, marker="o", ms=3, label=f"{ch} mean")
        if sx == xs and sd:
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)], [y + s for y, s in zip(ys, sd, strict=True)], alpha=0.2,
                            label="+-1 std (within step)")
        ax.set(xlabel="step", ylabel=f"reward: {ch}", title=f"reward channel '{ch}'")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"reward_{ch}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    kx, ky = _series(records, "rvpo/k")
    binding = channels(records, prefix="rvpo/binding/", suffix="")
    if kx or binding:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
        a1.plot(kx, ky, marker="o", ms=3)
        a1.set(xlabel="step", ylabel="k", title="risk coefficient k")
        for ch in binding:
            bx, by = _series(records, f"rvpo/binding/{ch}")
            a2.plot(bx, by, marker="o", ms=3, label=ch)
        a2.set(xlabel="step", ylabel="mean binding weight", title="binding weight per channel", ylim=(-0.02, 1.02))
        if binding:
            a2.legend(fontsize=8)
        for a in (a1, a2):
            a.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "k_binding.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
