"""The reward contracts.

A *reward function* follows TRL's contract: ``fn(prompts, completions, **columns) -> list[float | None]``,
one value per completion, ``None`` meaning "this channel abstains for this completion" (it becomes
NaN in the advantage core and is left out of that completion's aggregate).

A *multi-channel reward* scores M channels at once (M may vary per prompt, e.g. one channel per
rubric item): ``reward(prompts, completions, **columns) -> list[list[float | None]]`` of shape
``(N, M)`` where ``M = len(reward.channel_names)``; a prompt with fewer channels pads with ``None``.
Integrations expand it into M single-channel functions that share one evaluation per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class MultiChannelReward(Protocol):
    channel_names: Sequence[str]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[list[float | None]]: ...


def completion_text(completion: Any) -> str:
    """Text of one completion as TRL passes it: a string, or a list of chat messages (last one's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)) and completion:
        last = completion[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return ""
