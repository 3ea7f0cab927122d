"""The tool-call task's reward for verl: ToolRL format and correctness as two components.

verl's contract (``reward.custom_reward_function``): ``compute_score(data_source, solution_str,
ground_truth, extra_info, **reward_kwargs)`` returns a dict with ``"score"`` and one key a component;
verl's reward managers put every extra key into ``reward_extra_info``, which the rvpo trainer hook
hands to the estimator (``algorithm.rvpo_reward_keys``). A component that abstains is ``NaN``, never a
missing key. verl loads it as ``pkg://rvpo.integrations.verl_rewards`` (docs/verl.md); the scoring is
:mod:`rvpo.tasks.toolcall.rewards`.
"""

from __future__ import annotations

from typing import Any

from rvpo.tasks.toolcall import rewards as toolcall

TOOLCALL_KEYS = ("format_reward", "accuracy_reward")
"""the ToolRL component keys (the same names as verl's own ``rlla`` port, so gdpo configs carry over)"""

_NAN = float("nan")


def _num(v: float | None) -> float:
    return _NAN if v is None else float(v)


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    *,
    no_call: str = "zero",
    strict_think: bool = True,
    max_reward: float = toolcall.CORRECTNESS_MAX,
    min_reward: float = toolcall.CORRECTNESS_MIN,
    **kwargs: Any,
) -> dict[str, float]:
    """ToolRL-style tool-call reward with two components.

    Returns ``{"score": format + correctness, "format_reward": {0, 1},
    "accuracy_reward": [min_reward, max_reward] or NaN}``. ``no_call`` (``reward_kwargs``) picks the
    correctness of response-only golds: ``"zero"`` (ToolRL), ``"abstain"`` (NaN: the component
    abstains), ``"match"``; see :func:`rvpo.tasks.toolcall.rewards.correctness_score`. ``score`` (what
    verl logs as ``critic/score``) sums the present components.
    """
    if not isinstance(ground_truth, str):
        raise TypeError(f"ground_truth: expected the gold ToolRL output as a string, got {type(ground_truth).__name__}")
    text = solution_str or ""
    fmt = toolcall.format_score(text, ground_truth, strict_think=strict_think)
    acc = toolcall.correctness_score(text, ground_truth, no_call=no_call, max_reward=max_reward, min_reward=min_reward)
    return {
        "score": float(fmt) + (0.0 if acc is None else float(acc)),
        "format_reward": float(fmt),
        "accuracy_reward": _num(acc),
    }
