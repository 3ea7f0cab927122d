"""The constraints prompt generator: seeded, disjoint splits, 1-6 instructions, no contradictory pairs."""

import json

import pytest

from rvpo.tasks.constraints.generate import CONFLICTS, DEFAULT_FAMILIES, FAMILIES, generate_rows
from rvpo.tasks.constraints.instructions import TYPES, check


def _insts(row):
    return json.loads(row["instructions"])


def test_seeded_determinism_and_seed_sensitivity():
    a = generate_rows("train", 40, seed=3)
    assert a == generate_rows("train", 40, seed=3)
    assert [r["prompt"] for r in a] != [r["prompt"] for r in generate_rows("train", 40, seed=4)]


def test_splits_share_no_prompt_and_no_topic():
    train = generate_rows("train", 400, seed=0)
    test = generate_rows("test", 200, seed=0)
    assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in test}
    assert not {r["topic"] for r in train} & {r["topic"] for r in test}
    assert len({r["id"] for r in train + test}) == 600
    assert len({r["prompt"][0]["content"] for r in train}) == 400  # distinct within a split


@pytest.mark.parametrize("lo,hi", [(1, 1), (1, 6), (6, 6), (2, 4)])
def test_instruction_count_in_range_and_no_family_twice(lo, hi):
    rows = generate_rows("train", 60, seed=1, min_instructions=lo, max_instructions=hi)
    counts = {len(_insts(r)) for r in rows}
    assert counts <= set(range(lo, hi + 1))
    if hi > lo:
        assert len(counts) > 1  # M varies per prompt
    for r in rows:
        types = [i["type"] for i in _insts(r)]
        assert len(types) == len(set(types))


def test_no_contradictory_pairs_and_compatible_bounds():
    rows = generate_rows("train", 300, seed=2, min_instructions=4, max_instructions=6,
                         families=list(FAMILIES))
    for r in rows:
        insts = _insts(r)
        types = {i["type"] for i in insts}
        assert not any(pair <= types for pair in CONFLICTS), types
        kw = {i["type"]: i["kwargs"] for i in insts}
        if "keywords" in kw and "forbidden" in kw:
            assert not set(kw["keywords"]) & set(kw["forbidden_words"])
        w, s = kw.get("n_words"), kw.get("n_sentences")
        if w and s and w["relation"] == "less than" and s["relation"] == "at least":
            assert w["num_words"] >= 8 * s["num_sentences"]


def test_instructions_are_well_formed_and_checkable():
    for r in generate_rows("test", 100, seed=0, max_instructions=6):
        assert r["prompt"][0]["role"] == "user"
        assert len(r["topic_words"]) == 6
        for it in _insts(r):
            assert it["id"] == TYPES[it["type"]].ifeval_id
            check(it["type"], "some response text", it["kwargs"])  # kwargs complete: no ValueError


def test_default_families_cover_at_least_12_ifeval_types():
    assert len({TYPES[f].ifeval_id for f in DEFAULT_FAMILIES}) >= 12


@pytest.mark.parametrize("kwargs,msg", [
    ({"min_instructions": 0}, "min_instructions"), ({"max_instructions": 7}, "max_instructions"),
    ({"families": ["nope"]}, "unknown"), ({"n": 0}, "n:"),
])
def test_bad_options_are_named(kwargs, msg):
    args = {"split": "train", "n": 5, **kwargs}
    with pytest.raises(ValueError, match=msg):
        generate_rows(**args)
