"""Reward channels of the constraints task: one binary channel per instruction type, plus quality.

Every function follows TRL's contract ``fn(prompts, completions, instructions, topic_words, **_)
-> list[float | None]``: ``instructions`` is the row's JSON list (one per completion, as TRL
passes columns). An instruction channel returns 1.0 / 0.0 where the row carries that type and
``None`` (abstain) where it does not, so M varies per prompt.

``quality`` (continuous, in [0, 1]) is what a reader also wants from a short answer and what the
constraints push against::

    richness = min(1, distinct content words / 20)        # not stop words, >= 3 letters, counted once
    coverage = share of the topic's 6 words (or their stems) the answer uses
    quality  = 0.6 * richness + 0.4 * coverage

It competes: word and sentence limits, bullets-only answers, ``no_comma`` and forbidden topic
words all cost distinct content words or topic words, so a mean of channels can buy quality
with a broken constraint. It is hard to game by the checkers' preferences: titles, bullets, P.S.
markers, capitals, placeholders and repeated keywords add no new content words, and repeating a
word counts once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from rvpo.rewards import completion_text
from rvpo.tasks.constraints.instructions import check

STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having
he her here hers herself him himself his how i if in into is it its itself just let me more most my myself
no nor not now of off on once only or other our ours out over own same she should so some such than that
the their theirs them then there these they this those through to too under until up very was we were what
when where which while who whom why will with would you your yours yourself p.s ps answer response title
""".split())
RICHNESS_TARGET = 20


def _stem(w: str) -> str:
    for suf in ("ing", "es", "ed", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def quality_score(text: str, topic_words: Sequence[str]) -> float:
    """Quality in [0, 1] of one answer (see the module docstring). Empty text scores 0."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    content = {_stem(w) for w in words if len(w) >= 3 and w not in STOP_WORDS}
    richness = min(1.0, len(content) / RICHNESS_TARGET)
    topic = {_stem(w.lower()) for w in topic_words}
    coverage = len(topic & content) / len(topic) if topic else 0.0
    return round(0.6 * richness + 0.4 * coverage, 6)


@functools.lru_cache(maxsize=4096)
def parse_instructions(text: str) -> tuple[tuple[str, str], ...]:
    """The row's instruction list as ``((type, kwargs_json), ...)`` (cached: G completions share it)."""
    items = json.loads(text) if isinstance(text, str) else text
    return tuple((it["type"], json.dumps(it.get("kwargs", {}), sort_keys=True)) for it in items)


def _column(columns: dict, name: str, n: int) -> list:
    val = columns.get(name)
    if val is None:
        raise ValueError(f"constraints reward: the dataset has no {name!r} column")
    if isinstance(val, (str, bytes)) or len(val) != n:
        raise ValueError(f"constraints reward: column {name!r} must hold one value per completion ({n})")
    return list(val)


def make_instruction_reward(type_name: str, loose: bool = False) -> Callable[..., list[float | None]]:
    """Binary channel ``type_name``: 1.0 followed, 0.0 not, ``None`` where the row lacks the type."""

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        rows = _column(columns, "instructions", len(completions))
        out: list[float | None] = []
        for comp, inst in zip(completions, rows, strict=True):
            hits = [json.loads(kw) for t, kw in parse_instructions(inst) if t == type_name]
            if not hits:
                out.append(None)
                continue
            text = completion_text(comp)
            out.append(float(all(check(type_name, text, kw, loose=loose) for kw in hits)))
        return out

    reward.__name__ = type_name
    reward.__doc__ = f"1.0 if the completion follows the row's {type_name!r} instruction, None if it has none."
    return reward


def quality_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """Continuous quality channel in [0, 1] (richness and topic coverage; module docstring)."""
    words = _column(columns, "topic_words", len(completions))
    return [quality_score(completion_text(c), w) for c, w in zip(completions, words, strict=True)]


quality_reward.__name__ = "quality"
