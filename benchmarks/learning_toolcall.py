"""Learning curves on the built-in tool-call task: now the preset ``configs/experiments/toolcall_cpu.yaml``.

    python benchmarks/learning_toolcall.py                                  # = rvpo experiment configs/experiments/toolcall_cpu.yaml
    python benchmarks/learning_toolcall.py --set steps=60 --seeds 0..4      # a longer study (GPU advised)
    python benchmarks/learning_toolcall.py --dry-run                        # what is done, what is left

{gdpo, rvpo k linear 0.5 -> 2.0} x seeds, one shared supervised warm start per seed, held-out
exact-match rate as the target; writes runs/toolcall_cpu/ (report.md, curves.csv, runs.csv,
results.json, plots/). Every option is ``rvpo experiment``'s (see docs/experiment.md); the old
flags map to ``--set FIELD=VALUE`` (``--steps 8`` -> ``--set steps=8``, ``--group-size 4`` ->
``--set group_size=4``) and ``--seeds 0..2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rvpo.cli import main  # noqa: E402

PRESET = ROOT / "configs" / "experiments" / "toolcall_cpu.yaml"

if __name__ == "__main__":
    raise SystemExit(main(["experiment", str(PRESET), *sys.argv[1:]]))
