"""Offline generator of IFEval-style prompts: a short request on a topic plus 1-6 instructions.

    rows = generate_rows("train", n=512, seed=0)           # list of task rows (see task.py)
    rows = generate_rows("test", n=128, seed=0, min_instructions=2, max_instructions=4)

Each instruction is ``{"type": <our type id>, "id": <IFEval id>, "kwargs": {...IFEval names}}``;
its text is IFEval's phrasing with sampled parameters. The two splits draw from disjoint topic
lists, so they never share a prompt. Generation is deterministic in ``(split, n, seed, options)``.

Parameters are scaled for short answers (48 new tokens, about 35 words) so that most channels
start between 5% and 70% for SmolLM2-135M-Instruct (measured: docs/constraints.md). No gold answers:
the default constraints run is RL-only (the base model already meets many instructions).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from rvpo.tasks.constraints.instructions import TYPES

TRAIN_TOPICS = [
    ("the ocean", ["water", "waves", "fish", "blue", "deep", "salt"]),
    ("a rainy day", ["rain", "clouds", "umbrella", "wet", "grey", "puddles"]),
    ("coffee", ["cup", "beans", "morning", "hot", "taste", "energy"]),
    ("a city park", ["trees", "grass", "children", "walk", "bench", "birds"]),
    ("the moon", ["night", "sky", "light", "space", "bright", "earth"]),
    ("learning to cook", ["kitchen", "food", "recipe", "taste", "meal", "practice"]),
    ("a mountain hike", ["trail", "peak", "view", "climb", "rocks", "air"]),
    ("winter", ["snow", "cold", "ice", "warm", "white", "season"]),
    ("a library", ["books", "read", "quiet", "shelves", "stories", "learn"]),
    ("dogs", ["pet", "loyal", "walk", "play", "friend", "bark"]),
    ("a train journey", ["travel", "window", "station", "seat", "ride", "tracks"]),
    ("gardening", ["plants", "soil", "flowers", "grow", "water", "seeds"]),
    ("the internet", ["online", "people", "information", "world", "computer", "share"]),
    ("a birthday party", ["cake", "friends", "gifts", "fun", "candles", "celebrate"]),
    ("the desert", ["sand", "hot", "dry", "sun", "heat", "cactus"]),
    ("music", ["songs", "sound", "people", "listen", "play", "feel"]),
    ("a small bakery", ["bread", "fresh", "oven", "sweet", "morning", "smell"]),
    ("the solar system", ["planets", "sun", "orbit", "space", "earth", "stars"]),
    ("a school day", ["class", "teacher", "students", "learn", "lunch", "friends"]),
    ("bicycles", ["ride", "wheels", "road", "exercise", "fast", "travel"]),
    ("a thunderstorm", ["lightning", "rain", "loud", "dark", "wind", "sky"]),
    ("friendship", ["friends", "trust", "time", "support", "share", "people"]),
    ("a busy market", ["people", "food", "sell", "buy", "noise", "fresh"]),
    ("autumn leaves", ["trees", "colors", "red", "fall", "wind", "season"]),
    ("the history of tea", ["china", "drink", "leaves", "culture", "world", "history"]),
    ("a lighthouse", ["light", "sea", "ships", "night", "coast", "tower"]),
    ("video games", ["play", "fun", "players", "world", "game", "screen"]),
    ("honeybees", ["honey", "flowers", "hive", "queen", "work", "pollen"]),
    ("a quiet morning", ["sun", "coffee", "birds", "calm", "light", "peace"]),
    ("recycling", ["waste", "plastic", "paper", "reuse", "earth", "environment"]),
    ("the first day at a new job", ["work", "team", "office", "nervous", "learn", "people"]),
    ("a family dinner", ["food", "table", "family", "talk", "meal", "together"]),
    ("volcanoes", ["lava", "eruption", "mountain", "hot", "earth", "ash"]),
    ("photography", ["camera", "light", "pictures", "moment", "capture", "color"]),
    ("a snowy village", ["snow", "houses", "cold", "quiet", "white", "smoke"]),
    ("the river", ["water", "flow", "fish", "banks", "boat", "bridge"]),
    ("running a marathon", ["race", "miles", "training", "finish", "runners", "legs"]),
    ("cats", ["pet", "sleep", "play", "soft", "curious", "purr"]),
    ("a museum visit", ["art", "history", "exhibits", "paintings", "visitors", "learn"]),
    ("saving money", ["budget", "spend", "bank", "future", "plan", "save"]),
]
TEST_TOPICS = [
    ("the forest", ["trees", "green", "animals", "quiet", "leaves", "path"]),
    ("a beach holiday", ["sand", "sun", "sea", "swim", "waves", "relax"]),
    ("chess", ["game", "board", "pieces", "king", "move", "strategy"]),
    ("a farm", ["animals", "cows", "fields", "crops", "farmer", "barn"]),
    ("the night sky", ["stars", "dark", "moon", "light", "night", "space"]),
    ("a football match", ["team", "ball", "goal", "players", "fans", "game"]),
    ("baking bread", ["flour", "dough", "oven", "bread", "warm", "yeast"]),
    ("an old castle", ["walls", "tower", "history", "stone", "king", "old"]),
    ("spring flowers", ["flowers", "bloom", "colors", "garden", "bees", "spring"]),
    ("a road trip", ["car", "road", "drive", "friends", "travel", "music"]),
]

REQUESTS = [
    "Write a short paragraph about {topic}.",
    "Describe {topic} in a few sentences.",
    "Tell me about {topic}.",
    "Write a short note about {topic} for a friend.",
    "Explain what you like about {topic}.",
    "Write a short blog post about {topic}.",
]

Instruction = dict[str, Any]
Sampler = Callable[[random.Random, list[str]], tuple[dict, str]]


def _words_rel(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    rel, n = r.choice([("less than", 25), ("less than", 30), ("at least", 35), ("at least", 40)])
    return {"relation": rel, "num_words": n}, f"Answer with {rel} {n} words."


def _sent_rel(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    rel, n = r.choice([("less than", 3), ("less than", 4), ("at least", 3), ("at least", 4)])
    return {"relation": rel, "num_sentences": n}, f"Your response should contain {rel} {n} sentences."


def _bullets(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    n = r.choice([2, 3])
    return {"num_bullets": n}, (f"Your answer must contain exactly {n} bullet points. Use the markdown bullet "
                                "points such as:\n* This is point 1.\n* This is point 2")


def _keywords(r: random.Random, w: list[str]) -> tuple[dict, str]:
    ks = r.sample(w, r.choice([1, 2]))
    return {"keywords": ks}, "Include keywords " + ", ".join(f"'{k}'" for k in ks) + " in the response."


def _keyword_freq(r: random.Random, w: list[str]) -> tuple[dict, str]:
    k, n = r.choice(w), r.choice([2, 3])
    return ({"keyword": k, "frequency": n, "relation": "at least"},
            f"In your response, the word '{k}' should appear at least {n} times.")


def _forbidden(r: random.Random, w: list[str]) -> tuple[dict, str]:
    ks = r.sample(w, 3)
    return {"forbidden_words": ks}, "Do not include keywords " + ", ".join(f"'{k}'" for k in ks) + " in the response."


def _letter(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    letter, rel, n = r.choice([("e", "at least", 20), ("t", "at least", 15), ("a", "at least", 15),
                               ("o", "at least", 15), ("s", "less than", 8), ("e", "less than", 10)])
    return ({"letter": letter, "let_frequency": n, "let_relation": rel},
            f"In your response, the letter {letter} should appear {rel} {n} times.")


def _capital_words(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    n = 1
    return ({"capital_frequency": n, "capital_relation": "at least"},
            f"In your response, words with all capital letters should appear at least {n} times (for example NASA).")


def _placeholders(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    n = r.choice([1, 2])
    return {"num_placeholders": n}, (f"The response must contain at least {n} placeholders represented by square "
                                     "brackets, such as [address].")


def _highlights(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    n = r.choice([1, 2])
    return {"num_highlights": n}, (f"Highlight at least {n} sections in your answer with markdown, i.e. "
                                   "*highlighted section*.")


def _postscript(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    return {"postscript_marker": "P.S."}, "At the end of your response, please explicitly add a postscript starting with P.S."


def _end_phrase(r: random.Random, _w: list[str]) -> tuple[dict, str]:
    p = r.choice(["Any other questions?", "Is there anything else I can help with?"])
    return {"end_phrase": p}, f"Finish your response with this exact phrase: {p} No other words should follow this phrase."


def _fixed(text: str) -> Sampler:
    return lambda r, w: ({}, text)


FAMILIES: dict[str, Sampler] = {
    "no_comma": _fixed("Do not use any commas in your response."),
    "title": _fixed("Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>."),
    "n_sentences": _sent_rel,
    "n_words": _words_rel,
    "n_bullets": _bullets,
    "keywords": _keywords,
    "keyword_freq": _keyword_freq,
    "forbidden": _forbidden,
    "letter_freq": _letter,
    "capital_words": _capital_words,
    "placeholders": _placeholders,
    "highlights": _highlights,
    "postscript": _postscript,
    "end_phrase": _end_phrase,
    "lowercase": _fixed("Your entire response should be in English, and in all lowercase letters. "
                        "No capital letters are allowed."),
    "quotation": _fixed("Wrap your entire response with double quotation marks."),
}
"""Instruction families the generator can draw (type id -> parameter sampler and phrasing)."""

DEFAULT_FAMILIES = ("no_comma", "title", "n_sentences", "n_words", "n_bullets", "keywords", "keyword_freq",
                    "forbidden", "letter_freq", "capital_words", "placeholders", "highlights", "postscript",
                    "end_phrase")
"""The families drawn by default: each met by SmolLM2-135M-Instruct some of the time at 48 tokens
(``lowercase`` and ``quotation`` are left out: a pilot measured 0.00 and 0.05)."""

CONFLICTS = {frozenset(p) for p in [
    ("lowercase", "capital_words"), ("lowercase", "postscript"), ("keywords", "forbidden"),
    ("keyword_freq", "forbidden"), ("n_bullets", "n_sentences"), ("end_phrase", "quotation"),
]}
"""Pairs never drawn together: contradictory (``lowercase`` vs capital words, ``P.S.``) or pairs whose
parameters would clash (a forbidden word that is also a keyword; bullets vs a sentence count)."""


def _compatible(chosen: Sequence[Instruction]) -> bool:
    """False for a contradictory set: a conflicting pair, or word/sentence bounds that cannot both hold."""
    names = {c["type"] for c in chosen}
    if any(frozenset((a, b)) in CONFLICTS for a in names for b in names if a != b):
        return False
    kw = {c["type"]: c["kwargs"] for c in chosen}
    w, s = kw.get("n_words"), kw.get("n_sentences")
    if w and s and w["relation"] == "less than" and s["relation"] == "at least" and w["num_words"] < 8 * s["num_sentences"]:
        return False
    return True


def make_row(r: random.Random, topic: tuple[str, list[str]], families: Sequence[str], n_instructions: int,
             row_id: str) -> dict:
    """One prompt row with ``n_instructions`` compatible instructions drawn from ``families`` (no family twice)."""
    name, words = topic
    for _ in range(200):
        chosen = []
        for fam in r.sample(list(families), n_instructions):
            kwargs, text = FAMILIES[fam](r, words)
            chosen.append({"type": fam, "id": TYPES[fam].ifeval_id, "kwargs": kwargs, "text": text})
        if _compatible(chosen):
            break
    else:
        raise ValueError(f"families {list(families)}: no compatible set of {n_instructions} instructions found")
    request = r.choice(REQUESTS).format(topic=name)
    content = " ".join([request] + [c.pop("text") for c in chosen])
    return {"prompt": [{"role": "user", "content": content}], "id": row_id, "topic": name,
            "topic_words": list(words), "instructions": json.dumps(chosen, sort_keys=True)}


def generate_rows(split: str, n: int, seed: int = 0, min_instructions: int = 1, max_instructions: int = 4,
                  families: Sequence[str] | None = None) -> list[dict]:
    """``n`` distinct rows of ``split`` ("train" or "test"); see the module docstring."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    fams = list(families or DEFAULT_FAMILIES)
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown:
        raise ValueError(f"families: unknown {unknown}; known: {', '.join(FAMILIES)}")
    if not 1 <= min_instructions <= max_instructions <= min(6, len(fams)):
        raise ValueError(f"min_instructions/max_instructions: need 1 <= {min_instructions} <= {max_instructions} "
                         f"<= min(6, number of families = {len(fams)})")
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    topics = TRAIN_TOPICS if split == "train" else TEST_TOPICS
    r = random.Random(f"constraints:{split}:{seed}")
    rows, seen = [], set()
    for _ in range(50 * n):
        if len(rows) == n:
            break
        row = make_row(r, r.choice(topics), fams, r.randint(min_instructions, max_instructions),
                       f"constraints-{split}-{seed}-{len(rows):05d}")
        text = row["prompt"][0]["content"]
        if text not in seen:
            seen.add(text)
            rows.append(row)
    if len(rows) < n:
        raise ValueError(f"n={n}: only {len(rows)} distinct {split} prompts could be generated")
    return rows
