"""Pure advantage math (torch only): group statistics, aggregation, estimators, k schedules."""

from rvpo.core.aggregate import hard_min, mean_minus_var, soft_min, weighted_mean_var
from rvpo.core.estimators import (
    ESTIMATORS,
    AdvantageOutput,
    AdvantageParams,
    compute_advantages,
    get_estimator,
    register_estimator,
)
from rvpo.core.groups import RewardBatch, group_zscores, make_batch, whiten
from rvpo.core.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Linear,
    Step,
    make_schedule,
    schedule_to_dict,
    schedule_to_str,
)

__all__ = [
    "ESTIMATORS", "AdvantageOutput", "AdvantageParams", "compute_advantages", "get_estimator",
    "register_estimator", "RewardBatch", "group_zscores", "make_batch", "whiten", "soft_min",
    "hard_min", "mean_minus_var", "weighted_mean_var", "SCHEDULES", "Constant", "Cosine", "Linear",
    "Step", "make_schedule", "schedule_to_dict", "schedule_to_str",
]
