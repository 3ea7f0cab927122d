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

Scoring is :mod:`rvpo.tasks.toolcall.rewards` and :mod:`rvpo.tasks.rubric.reward`; nothing is reimplemented.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from rvpo.tasks.rubric.reward import RubricReward
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


_JUDGES: dict[tuple, Any] = {}
_JUDGE_LOCK = threading.Lock()


def _default_judge(overrides: dict | None = None):
    """One :class:`rvpo.judge.JudgeClient` per process and settings: the ``RVPO_JUDGE_*`` environment
    plus ``overrides`` (``reward_kwargs.judge_config``, any :class:`rvpo.judge.JudgeConfig` field but
    the key). The same client, verdict cache and abstention rule as ``RubricReward`` in TRL training."""
    overrides = dict(overrides or {})
    if "api_key" in overrides:
        raise ValueError("compute_score_rubric: judge_config must not hold api_key; set RVPO_JUDGE_API_KEY")
    key = tuple(sorted((k, repr(v)) for k, v in overrides.items()))
    with _JUDGE_LOCK:
        if key not in _JUDGES:
            from rvpo.judge import JudgeClient, JudgeConfig  # deferred: optional dependency httpx (rvpo[judge])

            _JUDGES[key] = JudgeClient(JudgeConfig.from_env(**overrides))
        return _JUDGES[key]


def rubric_keys(max_channels: int, name: str = "rubric") -> list[str]:
    """The component keys ``rubric_0 .. rubric_{M-1}`` (use them as ``algorithm.rvpo_reward_keys``)."""
    return [f"{name}_{j}" for j in range(int(max_channels))]


def compute_score_rubric(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    *,
    max_channels: int | None = None,
    judge: Any = None,
    judge_config: dict | None = None,
    scale: str = "unit",
    name: str = "rubric",
    **kwargs: Any,
) -> dict[str, float]:
    """LLM-judged rubric reward: one component per rubric item, NaN where an item does not apply.

    Inputs: the rubric is ``extra_info["rubric"]`` or else ``ground_truth`` (a JSON string or a list
    of ``{criterion, points, tags}``); the prompt is ``extra_info["prompt"]`` (messages or a string).
    ``max_channels`` (``reward_kwargs``; or ``extra_info["max_channels"]``) fixes the number of keys
    ``M`` for the whole run. ``judge``: anything with ``judge_many``; default: one
    :class:`rvpo.judge.JudgeClient` per process from the ``RVPO_JUDGE_*`` environment, with
    ``judge_config`` (``reward_kwargs``, e.g. ``{json_mode: true, requests_per_minute: 500}``)
    overriding it. Its verdict cache is the file the config names (shared by every worker process).

    Returns ``{"score": mean of present items (0.0 if none), "rubric_0": ..., "rubric_{M-1}": ...}``;
    items past this prompt's rubric and judge abstentions are NaN.
    """
    extra_info = extra_info or {}
    m = max_channels if max_channels is not None else extra_info.get("max_channels")
    if m is None:
        raise ValueError("compute_score_rubric: set reward.custom_reward_function.reward_kwargs.max_channels "
                         "(the largest rubric size of the dataset) so every response returns the same keys")
    rubric = extra_info.get("rubric", ground_truth)
    if rubric is None:
        raise ValueError("compute_score_rubric: no rubric (extra_info['rubric'] or reward_model.ground_truth)")
    if "prompt" not in extra_info:
        raise ValueError("compute_score_rubric: extra_info['prompt'] must hold the prompt (messages or text) for the judge")
    reward = RubricReward(judge if judge is not None else _default_judge(judge_config), max_channels=int(m),
                          rubric_column="rubric", scale=scale, name=name)
    (row,) = reward([extra_info["prompt"]], [solution_str or ""], rubric=[rubric])
    values = [_num(v) for v in row]
    present = [v for v in values if not math.isnan(v)]
    out = {"score": sum(present) / len(present) if present else 0.0}
    out.update(zip(reward.channel_names, values, strict=True))
    return out
