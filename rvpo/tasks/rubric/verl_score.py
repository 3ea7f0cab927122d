"""The rubric task's reward for verl: one component per rubric item, judged by an LLM.

The same judge client, verdict cache and abstention rule as ``RubricReward`` in TRL training; verl
loads it as ``pkg://rvpo.integrations.verl_rewards`` with ``name=compute_score_rubric`` (docs/verl.md).
A judge that abstains gives ``NaN`` for that item, never 0.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from rvpo.tasks.rubric.reward import RubricReward

_NAN = float("nan")


def _num(v: float | None) -> float:
    return _NAN if v is None else float(v)


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
