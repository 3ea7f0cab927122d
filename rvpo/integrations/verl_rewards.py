"""verl reward functions that return the per-reward components under stable keys.

verl's contract (``reward.custom_reward_function``): ``compute_score(data_source, solution_str,
ground_truth, extra_info, **reward_kwargs)`` returns a float or a dict with ``"score"`` plus extra
keys; verl's reward managers (``naive``, ``gdpo``) put every extra key into ``reward_extra_info``,
which the rvpo trainer hook hands to the estimator (``algorithm.rvpo_reward_keys``). Every response
of a run must return the same keys, so an abstaining component is ``NaN`` (never a missing key).

Point verl at them without a file path::

    reward.custom_reward_function.path=pkg://rvpo.integrations.verl_rewards
    reward.custom_reward_function.name=compute_score            # ToolRL: format + correctness
    reward.custom_reward_function.name=compute_score_rubric     # one key per rubric item

Each task's scorer lives in its package (:mod:`rvpo.tasks.toolcall.verl_score`,
:mod:`rvpo.tasks.rubric.verl_score`); this module is the stable path verl configs name.
"""

from __future__ import annotations

from rvpo.tasks.rubric.verl_score import compute_score_rubric, rubric_keys
from rvpo.tasks.toolcall.verl_score import TOOLCALL_KEYS, compute_score

__all__ = ["TOOLCALL_KEYS", "compute_score", "compute_score_rubric", "rubric_keys"]
