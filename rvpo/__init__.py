"""rvpo: risk-sensitive multi-reward RL fine-tuning (RVPO soft-min advantages) for TRL and verl."""

import os as _os

# OpenMP threads that spin while waiting make torch 10-20x slower on a CPU shared with other work
# (measured on a 2-core machine: an 8-token generation took 21-41 s instead of 2 s). Passive waiting
# costs nothing measurable otherwise. Only takes effect if torch is not imported yet; a value the
# user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rvpo.core import (
    AdvantageOutput,
    AdvantageParams,
    compute_advantages,
    get_estimator,
    make_schedule,
    register_estimator,
    soft_min,
)

__version__ = "0.1.0"
__all__ = [
    "AdvantageOutput", "AdvantageParams", "compute_advantages", "get_estimator", "make_schedule",
    "register_estimator", "soft_min", "__version__",
]
