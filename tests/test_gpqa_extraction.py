"""GPQA answer extraction against simple-evals' published pattern, on a response set written here.

The pattern is copied from openai/simple-evals ``common.py`` (commit ee3b0318) as a literal, and
simple-evals' extraction is ``re.search(pattern, text)`` then ``match.group(1)`` (``gpqa_eval.py``).
Each response lists the letter that extraction gives (worked out by hand), so the test checks
the published pattern, rvpo's default extractor, and documents where the lenient one differs.
"""

from __future__ import annotations

import re

import pytest

from rvpo.evals.gpqa import ANSWER_PATTERN_MULTICHOICE, extract_answer, extract_answer_lenient

PUBLISHED = r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?"

# (response, simple-evals' extracted letter, lenient's letter)
RESPONSES = [
    ("Answer: C", "C", "C"),
    ("The reasoning is long.\nAnswer: B", "B", "B"),
    ("Answer:D", "D", "D"),
    ("Answer : A", "A", "A"),
    ("Answer:\tB", "B", "B"),
    ("answer: c", "c", None),                 # (?i) matches, the group is lowercase: scored wrong
    ("ANSWER: D", "D", "D"),
    ("Answer: $C$", "C", "C"),
    ("Answer: $C", "C", "C"),
    ("Answer: C.", "C", "C"),
    ("Answer: C) 42 kJ", "C", "C"),
    ("Answer: C because the enthalpy is negative", "C", "C"),
    ("Answer: Definitely C", "D", None),      # the 'D' of 'Definitely' (case-insensitive) is taken
    ("Answer: Based on the data, C", "B", None),  # 'B' of 'Based' is taken
    ("Answer: Clearly B", "C", None),
    ("Answer: Abstain", "A", None),
    ("Answer: (C)", None, "C"),               # parentheses are not allowed by the pattern
    ("Answer: [B]", None, "B"),
    ("Answer: **C**", None, "C"),
    ("**Answer:** C", None, "C"),             # markdown between 'Answer' and ':'
    ("**Answer: C**", "C", "C"),
    ("*Answer*: B", None, "B"),
    ("Answer:\nC", None, "C"),                # newline is not [ \t]
    ("Answer:  \t D", "D", "D"),
    ("Final Answer: A", "A", "A"),
    ("final answer: B", "B", "B"),
    ("The answer is C.", None, "C"),
    ("The answer is (B).", None, "B"),
    ("The correct answer is: D", None, "D"),
    ("So the answer: A", "A", "A"),
    ("Answer: B\nAnswer: C", "B", "C"),       # first match (simple-evals) vs last (lenient)
    ("Answer: A or Answer: D", "A", "D"),
    ("I first thought Answer: A, but on reflection Answer: C", "A", "C"),
    ("Answer: A, B", "A", "A"),
    ("Answer: B/C", "B", "B"),
    ("Answers: C", None, None),               # 's' between 'Answer' and ':'
    ("My Answer: D", "D", "D"),
    ("Answer: E", None, None),
    ("Answer: 3", None, None),
    ("Answer:", None, None),
    ("", None, None),
    ("C", None, "C"),
    ("(C)", None, "C"),
    ("**C**", None, "C"),
    ("The correct option is C.", None, "C"),
    (r"\boxed{D}", None, "D"),
    (r"Answer: \boxed{D}", None, "D"),
    ("Answer: $\\boxed{B}$", None, "B"),
    ("I think it is B.\nAnswer: B", "B", "B"),
    ("Step 1: compute.\nStep 2: Answer: A follows.\nAnswer: D", "A", "D"),
    ("answer:b", "b", None),
    ("Answer: d)", "d", None),
    ("Answer — C", None, None),
    ("Answer= C", None, "C"),
    ("Answer: A\n\nThat is my final choice.", "A", "A"),
    ("Answer: C\n\nWait, actually, Answer: B", "C", "B"),
    ("Answer: B.\nExplanation: option A is wrong.", "B", "B"),
    ("Answer:B\n", "B", "B"),
    ("The question asks about D. Answer: A", "A", "A"),
    ("Answer: A\u00a0", "A", "A"),
    ("Answer:\u00a0C", None, "C"),              # a non-breaking space is not [ \t]
    ("AnswerC", None, "C"),
    ("Answer: CD", "C", None),
    ("Answer: $$C$$", None, "C"),
    ("Answer: $D$.", "D", "D"),
    ("Correct Answer: B", "B", "B"),
    ("Answer: The answer is A", None, "A"),
    ("Answer: ABCD", "A", None),
]


def test_the_pattern_is_simple_evals():
    assert ANSWER_PATTERN_MULTICHOICE == PUBLISHED


@pytest.mark.parametrize("text,want,_", RESPONSES)
def test_published_pattern_and_default_extractor(text, want, _):
    m = re.search(PUBLISHED, text)
    assert (m.group(1) if m else None) == want
    assert extract_answer(text) == want


def test_lenient_extractor_is_documented_per_response():
    got = [extract_answer_lenient(t) for t, _, _ in RESPONSES]
    assert got == [lenient for _, _, lenient in RESPONSES]
    agree = sum(extract_answer_lenient(t) == want for t, want, _ in RESPONSES)
    assert len(RESPONSES) >= 60 and agree < len(RESPONSES)  # lenient is a different protocol
