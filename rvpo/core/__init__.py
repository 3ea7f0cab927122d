"""Pure advantage math (torch only): group statistics, aggregation, estimators, k schedules.

Notation everywhere: ``N`` completions in contiguous groups of ``G`` per prompt (``B = N / G``
prompts), ``M`` reward channels, ``k`` the soft-min's risk coefficient.
"""

from rvpo.core.adaptive import AdaptiveK, solve_adaptive_k
from rvpo.core.aggregate import hard_min, mean_minus_var, soft_min, weighted_mean_var
from rvpo.core.estimators import (
    DEFAULT_EPS,
    ESTIMATORS,
    AdvantageParams,
    compute_advantages,
    get_estimator,
    register_estimator,
)
from rvpo.core.groups import RewardBatch, group_zscores, make_batch, noise_reliability, whiten
from rvpo.core.output import AdvantageOutput
from rvpo.core.schedules import (
    SCHEDULES,
    Adaptive,
    Constant,
    Cosine,
    Linear,
    Step,
    make_schedule,
    schedule_to_dict,
    schedule_to_str,
)
from rvpo.core.spec import AdvantageSpec

__all__ = [
    "ESTIMATORS", "AdvantageOutput", "AdvantageParams", "AdvantageSpec", "DEFAULT_EPS", "compute_advantages",
    "get_estimator", "register_estimator", "RewardBatch", "group_zscores", "make_batch", "noise_reliability",
    "whiten", "soft_min", "hard_min", "mean_minus_var", "weighted_mean_var", "SCHEDULES", "Adaptive",
    "AdaptiveK", "solve_adaptive_k", "Constant", "Cosine", "Linear", "Step", "make_schedule",
    "schedule_to_dict", "schedule_to_str",
]
