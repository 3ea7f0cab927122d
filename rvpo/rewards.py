"""The reward contract, and the expansion of a multi-channel reward into TRL reward functions.

A *reward function* follows TRL's contract: ``fn(prompts, completions, **columns) -> list[float | None]``,
one value per completion, ``None`` meaning "this channel abstains for this completion" (it becomes
NaN in the advantage core and is left out of that completion's aggregate).

A *multi-channel reward* scores M channels at once (M may vary per prompt, e.g. one channel per
rubric item): ``reward(prompts, completions, **columns) -> list[list[float | None]]`` of shape
``(N, M)`` where ``M = len(reward.channel_names)``; a prompt with fewer channels pads with ``None``.
Integrations expand it (:func:`expand_multichannel`) into M single-channel functions that share one
evaluation per batch.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
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


class _SharedEvaluation:
    """One evaluation of a multi-channel reward per batch, shared by its M channel functions.

    The batch key is the identity of the ``prompts`` and ``completions`` lists: TRL passes the same
    list objects to every reward function of one scoring call and new ones for the next batch.
    """

    def __init__(self, reward: Any):
        self.reward = reward
        self.names = [str(n) for n in reward.channel_names]
        if not self.names:
            raise ValueError("channel_names: a multi-channel reward needs at least one channel")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"channel_names: duplicate names in {self.names}")
        self.calls = 0  # evaluations done (for tests and diagnostics)
        self._key: tuple[Any, Any] | None = None  # strong references: ids cannot be reused while cached
        self._rows: list[list[float | None]] | None = None
        self._task: Any = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_key": None, "_rows": None, "_task": None}

    def _same(self, prompts: Any, completions: Any) -> bool:
        return self._key is not None and self._key[0] is prompts and self._key[1] is completions

    def _check(self, rows: Any, n: int) -> list[list[float | None]]:
        m = len(self.names)
        rows = list(rows)
        if len(rows) != n:
            raise ValueError(f"multi-channel reward {type(self.reward).__name__}: returned {len(rows)} rows "
                             f"for {n} completions")
        out = []
        for i, row in enumerate(rows):
            row = list(row)
            if len(row) > m:
                raise ValueError(f"multi-channel reward {type(self.reward).__name__}: row {i} has {len(row)} "
                                 f"values for {m} channel_names")
            out.append([None if v is None else float(v) for v in row] + [None] * (m - len(row)))
        return out

    def rows(self, prompts: Any, completions: Any, kwargs: dict) -> list[list[float | None]]:
        if not self._same(prompts, completions):
            self.calls += 1
            result = self.reward(prompts, completions, **kwargs)
            self._rows = self._check(result, len(completions))
            self._key = (prompts, completions)
        return self._rows

    async def rows_async(self, prompts: Any, completions: Any, kwargs: dict) -> list[list[float | None]]:
        if not self._same(prompts, completions):
            self.calls += 1
            self._key = (prompts, completions)

            async def run():
                return self._check(await self.reward(prompts, completions, **kwargs), len(completions))

            self._task = asyncio.ensure_future(run())
        return await self._task


class _ChannelReward:
    """One channel of a multi-channel reward, as a TRL reward function named after the channel."""

    def __init__(self, shared: _SharedEvaluation, index: int):
        self.shared, self.index = shared, index
        self.__name__ = shared.names[index]

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        return [row[self.index] for row in self.shared.rows(prompts, completions, kwargs)]


class _AsyncChannelReward(_ChannelReward):
    async def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        rows = await self.shared.rows_async(prompts, completions, kwargs)
        return [row[self.index] for row in rows]


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


def expand_multichannel(reward: Any) -> list[Callable[..., Any]]:
    """Turn a multi-channel reward into M TRL reward functions that share one evaluation per batch.

    Args:
        reward: follows :class:`MultiChannelReward`: ``channel_names`` (M names) and
            ``reward(prompts, completions, **columns) -> (N, M)`` list of rows, ``None`` = abstain;
            rows shorter than M are padded with ``None`` (variable rubric sizes). May be ``async``.

    Returns:
        M callables, ``fns[j].__name__ == channel_names[j]``, each returning channel j's column
        (``list[float | None]`` of length N). Pass them (with other reward functions) as
        ``reward_funcs``; ``reward_weights`` then needs one weight per channel. The evaluations done
        so far are counted in ``fns[j].shared.calls``.
    """
    if isinstance(reward, (list, tuple)):
        raise TypeError("expand_multichannel: pass one multi-channel reward, not a list")
    if not callable(reward) or not hasattr(reward, "channel_names"):
        raise TypeError(f"expand_multichannel: {type(reward).__name__} has no channel_names or is not callable")
    shared = _SharedEvaluation(reward)
    cls = _AsyncChannelReward if _is_async(reward) else _ChannelReward
    return [cls(shared, j) for j in range(len(shared.names))]
