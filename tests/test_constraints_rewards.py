"""Reward channels of the constraints task: abstention, binary values, quality's behaviour."""

import json

import pytest

from rvpo.tasks.base import get_task
from rvpo.tasks.constraints.rewards import make_instruction_reward, quality_reward, quality_score

ROWS = [
    json.dumps([{"type": "no_comma", "id": "punctuation:no_comma", "kwargs": {}}]),
    json.dumps([{"type": "title", "id": "detectable_format:title", "kwargs": {}},
                {"type": "no_comma", "id": "punctuation:no_comma", "kwargs": {}}]),
    json.dumps([{"type": "title", "id": "detectable_format:title", "kwargs": {}}]),
]
WORDS = [["sea", "waves", "fish", "blue", "deep", "salt"]] * 3


def test_channel_abstains_where_the_row_lacks_its_type():
    no_comma = make_instruction_reward("no_comma")
    title = make_instruction_reward("title")
    comps = ["a, b", "<<T>> no commas", "<<T>>, yes"]
    assert no_comma(None, comps, instructions=ROWS, topic_words=WORDS) == [0.0, 1.0, None]
    assert title(None, comps, instructions=ROWS, topic_words=WORDS) == [None, 1.0, 1.0]
    assert no_comma.__name__ == "no_comma"


def test_chat_message_completions_and_loose_mode():
    fn = make_instruction_reward("no_comma", loose=True)
    comps = [[{"role": "assistant", "content": "Sure, here:\nno commas"}]]
    assert fn(None, comps, instructions=ROWS[:1]) == [1.0]
    assert make_instruction_reward("no_comma")(None, comps, instructions=ROWS[:1]) == [0.0]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="instructions"):
        make_instruction_reward("title")(None, ["x"])


def test_quality_rewards_distinct_on_topic_content_not_tricks():
    rich = "Deep blue waves carry salt and fish across the sea while sailors watch gulls circle harbours."
    assert quality_score(rich, WORDS[0]) > 0.6
    assert quality_score("", WORDS[0]) == 0.0
    assert quality_score("sea " * 40, WORDS[0]) < 0.2  # repetition counts once
    tricks = "<<TITLE>>\n* [name]\n* [place]\nP.S. **OK** THE END"
    assert quality_score(tricks, WORDS[0]) < 0.2  # checker-pleasing markup is not content
    short = "Blue sea waves."  # a word limit costs richness: the competition with constraints
    assert quality_score(short, WORDS[0]) < quality_score(rich, WORDS[0])
    assert quality_reward(None, [rich, short, ""], topic_words=WORDS) == [
        quality_score(rich, WORDS[0]), quality_score(short, WORDS[0]), 0.0]


def test_task_channels_and_rows_fit_the_reward_functions():
    task = get_task("constraints", {"n_train": 16, "n_test": 8})
    names = task.channel_names()
    assert names[-1] == "quality" and len(names) == len(set(names)) == 15
    rows = task.load("builtin", "train")
    cols = {c: [r[c] for r in rows] for c in task.columns}
    comps = ["<<T>> Hello there. [x] *hi*"] * len(rows)
    for fn in task.reward_funcs():
        vals = fn([r["prompt"] for r in rows], comps, **cols)
        assert len(vals) == len(rows)
        assert all(v is None or 0.0 <= v <= 1.0 for v in vals)
    per_row_m = [sum(fn([r["prompt"]], comps[:1], **{c: [r[c]] for c in task.columns})[0] is not None
                     for fn in task.reward_funcs()) for r in rows]
    assert per_row_m == [len(json.loads(r["instructions"])) + 1 for r in rows]  # M varies: instructions + quality


def test_task_options_are_validated():
    with pytest.raises(ValueError, match="families"):
        get_task("constraints", {"families": ["bogus"]})
    with pytest.raises(ValueError, match="max_instructions"):
        get_task("constraints", {"max_instructions": 9})
    assert "quality" not in get_task("constraints", {"quality": False}).channel_names()
