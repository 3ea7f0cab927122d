"""Hand-made cases for every instruction checker: passing, failing, edge cases, strict vs loose."""

import pytest

from rvpo.tasks.constraints.instructions import (
    BY_IFEVAL_ID,
    TYPES,
    check,
    count_sentences,
    count_words,
    loose_variants,
)

# (type, kwargs, response, expected strict verdict)
CASES = [
    ("no_comma", {}, "No commas here.", True),
    ("no_comma", {}, "One, two.", False),
    ("title", {}, "<<My Day>>\nIt was fine.", True),
    ("title", {}, "<< >>\nblank title", False),
    ("title", {}, "<<broken\ntitle>>", False),  # must sit on one line
    ("n_sentences", {"relation": "less than", "num_sentences": 3}, "One. Two.", True),
    ("n_sentences", {"relation": "less than", "num_sentences": 2}, "One. Two.", False),
    ("n_sentences", {"relation": "at least", "num_sentences": 2}, "Dr. Smith came. He left!", True),
    ("n_sentences", {"relation": "at least", "num_sentences": 2}, "Dr. Smith came home.", False),
    ("n_words", {"relation": "less than", "num_words": 4}, "I don't know", False),  # don't = 2 words: 4
    ("n_words", {"relation": "less than", "num_words": 5}, "I don't know", True),
    ("n_words", {"relation": "at least", "num_words": 3}, "a b c", True),
    ("n_bullets", {"num_bullets": 2}, "Intro\n* one\n- two", True),
    ("n_bullets", {"num_bullets": 2}, "* one\n* two\n* three", False),
    ("n_bullets", {"num_bullets": 1}, "**bold** is not a bullet\n* real", True),
    ("keywords", {"keywords": ["Sun", "rain"]}, "the sun and the RAIN", True),
    ("keywords", {"keywords": ["sun", "snow"]}, "the sun and the rain", False),
    ("keywords", {"keywords": ["c++"]}, "I like C++ a lot", True),  # literal, not a regex
    ("keyword_freq", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "Cat and cat.", True),
    ("keyword_freq", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "Cat and cat.", False),
    ("forbidden", {"forbidden_words": ["sea"]}, "the seaside is nice", True),  # whole words only
    ("forbidden", {"forbidden_words": ["sea", "sky"]}, "The Sky is blue", False),
    ("letter_freq", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zoo pizza", True),
    ("letter_freq", {"letter": "z", "let_frequency": 1, "let_relation": "less than"}, "buzz", False),
    ("lowercase", {}, "all lower here.", True),
    ("lowercase", {}, "Not lower.", False),
    ("lowercase", {}, "123 !!", False),  # no cased letter at all
    ("lowercase", {}, "привет мир", False),  # not English
    ("uppercase", {}, "ALL CAPS, OK?", True),
    ("uppercase", {}, "ALL CAPS but one", False),
    ("uppercase", {}, "CECI EST UNE PHRASE EN FRANÇAIS, PAS EN ANGLAIS.", False),  # upper, but not English
    ("uppercase", {}, "123 !!", False),  # no cased letter
    ("language", {"language": "fr"}, "Bonjour, je suis très heureux de vous voir aujourd'hui.", True),
    ("language", {"language": "fr"}, "Hello, I am very happy to see you here today.", False),
    ("language", {"language": "de"}, "12345 !!!", True),  # langdetect cannot tell: followed, as the reference
    ("capital_words", {"capital_frequency": 2, "capital_relation": "at least"}, "NASA and the U.S. agree", True),
    ("capital_words", {"capital_frequency": 2, "capital_relation": "at least"}, "Nasa and I", False),
    ("capital_words", {"capital_frequency": 2, "capital_relation": "less than"}, "Nasa and I", True),
    ("end_phrase", {"end_phrase": "Any other questions?"}, "Done. any other questions?\n", True),
    ("end_phrase", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("quotation", {}, '  "wrapped"  ', True),
    ("quotation", {}, '"', False),
    ("quotation", {}, '"open only', False),
    ("postscript", {"postscript_marker": "P.S."}, "Text.\np.s. hi", True),
    ("postscript", {"postscript_marker": "P.S."}, "Text. PS hi", False),
    ("postscript", {"postscript_marker": "P.P.S"}, "Body\nP. P. S note", True),
    ("placeholders", {"num_placeholders": 2}, "Dear [name] at [address]", True),
    ("placeholders", {"num_placeholders": 2}, "Dear [name]", False),
    ("highlights", {"num_highlights": 2}, "*one* and **two**", True),
    ("highlights", {"num_highlights": 2}, "*one* and * *", False),
    ("sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1\na\nSection 2\nb", True),
    ("sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1\nonly one", False),
    ("paragraphs", {"num_paragraphs": 2}, "first\n***\nsecond", True),
    ("paragraphs", {"num_paragraphs": 2}, "first\n***\n***\nsecond", False),  # empty paragraph inside
    ("paragraphs", {"num_paragraphs": 1}, "***\nonly\n***", True),  # empty ends are ignored
    ("json", {}, '```json\n{"a": 1}\n```', True),
    ("json", {}, "{'a': 1}", False),
    ("two_responses", {}, "Answer A\n******\nAnswer B", True),
    ("two_responses", {}, "Same\n******\nSame", False),
    ("constrained_response", {}, "I think... My answer is maybe.", True),
    ("constrained_response", {}, "my answer is yes.", False),  # case-sensitive, as IFEval
    ("repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Roses are red.", True),
    ("repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", False),
    ("first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "One.\n\n\"Then, two.", True),
    ("first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "One.\n\nNow two.", False),
    ("first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "then"}, "One.\n\nThen two.", False),
]


@pytest.mark.parametrize("name,kwargs,response,expected", CASES)
def test_checker_cases(name, kwargs, response, expected):
    assert check(name, response, kwargs) is expected


def test_every_type_has_a_passing_and_a_failing_case():
    seen = {(c[0], c[3]) for c in CASES}
    for name in TYPES:
        assert (name, True) in seen and (name, False) in seen, name


def test_registry_maps_all_25_ifeval_ids_one_to_one():
    assert len(TYPES) == 25 and len(BY_IFEVAL_ID) == 25
    assert BY_IFEVAL_ID["language:response_language"].name == "language"


def test_empty_response_follows_nothing_even_forbidden_words():
    assert not check("forbidden", "   ", {"forbidden_words": ["x"]})
    assert not check("no_comma", "", {}, loose=True)


def test_loose_variants_are_ifevals_eight():
    v = loose_variants("Sure!\n*body*\nBye")
    assert len(v) == 8
    assert v[:4] == ["Sure!\n*body*\nBye", "*body*\nBye", "Sure!\n*body*", "*body*"]
    assert v[7] == "body"


def test_loose_rescues_a_preamble_and_asterisks():
    text = "Sure, here it is:\n<<t>> all lowercase text"
    assert not check("no_comma", text, {})
    assert check("no_comma", text, {}, loose=True)  # first line removed
    assert not check("n_bullets", "**a**\n* b", {"num_bullets": 2})
    assert check("title", "**<<T>>**", {}, loose=False)


def test_bad_arguments_name_the_type():
    with pytest.raises(ValueError, match="n_words.*missing"):
        check("n_words", "x", {"relation": "at least"})
    with pytest.raises(ValueError, match="n_words"):
        check("n_words", "x", {"relation": "exactly", "num_words": 3})
    with pytest.raises(KeyError):
        check("no_such_type", "x", {})


@pytest.mark.parametrize("text,n", [
    ("One. Two! Three?", 3), ("Dr. Smith met Mr. Jones in the U.S. today.", 1),
    ("He lives in the U.S. This is true.", 2), ("It was long... but fine.", 1), ("Wait... What? No.", 3),
    ("Use e.g. apples.", 2), ("A list\n* one\n* two", 1), ("", 0), ("No end mark", 1), ("J. Doe wrote it.", 1),
])
def test_sentence_counter_follows_punkt_decisions(text, n):
    assert count_sentences(text) == n


def test_word_counter():
    assert count_words("Hello, world! It's 2026.") == 5
