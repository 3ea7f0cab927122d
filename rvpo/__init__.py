"""rvpo: risk-sensitive multi-reward RL fine-tuning (RVPO soft-min advantages) for TRL and verl."""

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
