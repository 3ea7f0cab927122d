"""Verifiable instructions: one small pure checker per IFEval instruction type (Zhou et al. 2023).

Each checker is ``check_<type>(response, **kwargs) -> bool``, where ``kwargs`` are IFEval's own
argument names (``relation``, ``num_words``, ``keywords``, ``let_frequency``...), so a row of
IFEval's ``input_data.jsonl`` maps onto them one to one. :data:`TYPES` maps our short type id
(the reward channel name) to the IFEval id, the checker and the kwargs it takes.

Strict vs loose (IFEval's definition): *strict* checks the response as is; *loose* counts an
instruction as followed if any of 8 variants passes: the response with its first line, last line,
both or neither removed, each with and without ``*`` characters (:func:`loose_variants`). An empty
response (whitespace only) follows nothing, in both modes.

Where we depart from the reference checker (measured in ``benchmarks/ifeval_agreement.py``):
- sentences are counted with a small regex splitter modelled on the decisions of NLTK's Punkt
  English model (:func:`split_sentences`), not Punkt itself;
- words for ``capital_words`` are regex tokens (``\\w+`` with inner apostrophes/hyphens; dotted
  acronyms such as ``U.S.`` are one token), not ``nltk.word_tokenize``;
- keywords are matched literally (``re.escape``), not as regular expressions.

Language (``language:response_language``, and "in English" for ``english_lowercase`` and
``english_capital``) uses the reference's own dependency, ``langdetect``, seeded
(``DetectorFactory.seed = 0``) so verdicts are reproducible; as in the reference, text whose language
langdetect cannot tell counts as followed. Without ``langdetect`` these three types raise
:class:`MissingDependencyError` with an install hint (never a silent drop).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RELATIONS = ("less than", "at least")


def _compare(count: int, relation: str, n: int) -> bool:
    if relation == "less than":
        return count < n
    if relation == "at least":
        return count >= n
    raise ValueError(f"relation: expected one of {RELATIONS}, got {relation!r}")


# ----------------------------------------------------------------------------- counting helpers

_WORD = re.compile(r"\w+")
_ABBREV = {"mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr", "inc", "ltd", "co", "corp", "vs", "gen", "sen",
           "rep", "lt", "col", "maj", "ave", "a.m", "p.m", "u.s", "u.k", "u.n", "ph.d",
           "jan", "feb", "aug", "sept", "oct", "nov", "dec"}
_STARTERS = frozenset("""but he her here however i if in it many most so some the there these they this when
while""".split())  # words after which Punkt's English model breaks even after an abbreviation
_SENT_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of ``\\w`` characters (``"don't"`` is 2 words)."""
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[str]:
    """Sentences: text up to each ``.``/``!``/``?`` run followed by whitespace or the end.

    Modelled on the decisions of NLTK's Punkt English model: a period after a known abbreviation
    (``Dr.``, ``U.S.``) or a single letter (``J.``) does not end a sentence unless a capitalised
    common word (``This``, ``It``) follows, an ellipsis
    (``...``) followed by a lowercase word does not either, nor does a newline alone.
    """
    out, start = [], 0
    for m in _SENT_END.finditer(text):
        mark = m.group().rstrip("\"')]")
        before = text[start:m.start()].split()
        last = before[-1].lower().rstrip(".") if before else ""
        nxt_word = (text[m.end():].split() or [""])[0].strip("\"'(")
        starter = nxt_word[:1].isupper() and nxt_word.lower().rstrip(".,;:!?") in _STARTERS
        if mark == "." and (last in _ABBREV or (len(last) == 1 and last.isalpha())) and not starter:
            continue
        if mark.startswith("..") and set(mark) == {"."} and nxt_word[:1].islower():
            continue
        piece = text[start:m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail and _WORD.search(tail):
        out.append(tail)
    return out


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


LANGDETECT_HINT = "pip install langdetect (or: pip install 'rvpo[ifeval]')"


class MissingDependencyError(ImportError):
    """An instruction type needs an optional package that is not installed (the message says how)."""


_LANGDETECT = None


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` from langdetect (seeded: ``DetectorFactory.seed = 0``), or ``None``
    when langdetect cannot tell (no letters). Raises :class:`MissingDependencyError` without langdetect."""
    global _LANGDETECT
    if _LANGDETECT is None:
        try:
            import langdetect
        except ImportError:
            raise MissingDependencyError(
                f"IFEval's language checks (response_language, english_lowercase, english_capital) need "
                f"langdetect, as the reference checker does: {LANGDETECT_HINT}") from None
        langdetect.DetectorFactory.seed = 0
        _LANGDETECT = langdetect
    try:
        return _LANGDETECT.detect(text)
    except _LANGDETECT.LangDetectException:
        return None


def _is_english(text: str) -> bool:
    """langdetect says English, or cannot tell (the reference counts that as followed)."""
    return detect_language(text) in ("en", None)


# ----------------------------------------------------------------------------- the checkers


def check_no_comma(response: str) -> bool:
    """No ``,`` anywhere in the response."""
    return "," not in response


def check_title(response: str) -> bool:
    """A title in double angular brackets on one line, ``<<like this>>``, not blank inside."""
    return any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", response))


def check_n_sentences(response: str, relation: str, num_sentences: int) -> bool:
    """Number of sentences (:func:`split_sentences`) ``< num_sentences`` or ``>= num_sentences``."""
    return _compare(count_sentences(response), relation, int(num_sentences))


def check_n_words(response: str, relation: str, num_words: int) -> bool:
    """Number of words (:func:`count_words`) ``< num_words`` or ``>= num_words``."""
    return _compare(count_words(response), relation, int(num_words))


def check_n_bullets(response: str, num_bullets: int) -> bool:
    """Exactly ``num_bullets`` markdown bullet lines (``* item`` or ``- item``)."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == int(num_bullets)


def check_keywords(response: str, keywords: list[str]) -> bool:
    """Every keyword occurs (case-insensitive substring)."""
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def check_keyword_freq(response: str, keyword: str, frequency: int, relation: str) -> bool:
    """Occurrences of ``keyword`` (case-insensitive substring) ``< frequency`` or ``>= frequency``."""
    n = len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE))
    return _compare(n, relation, int(frequency))


def check_forbidden(response: str, forbidden_words: list[str]) -> bool:
    """None of the words occurs as a whole word (case-insensitive)."""
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE)
                   for w in forbidden_words)


def check_letter_freq(response: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    """Occurrences of ``letter`` (case-insensitive) ``< let_frequency`` or ``>= let_frequency``."""
    return _compare(response.lower().count(letter.lower()), let_relation, int(let_frequency))


def check_lowercase(response: str) -> bool:
    """All cased characters lowercase (and at least one), and langdetect says English (or cannot tell)."""
    return response.islower() and _is_english(response)


def check_uppercase(response: str) -> bool:
    """All cased characters uppercase (and at least one), and langdetect says English (or cannot tell)."""
    return response.isupper() and _is_english(response)


def check_response_language(response: str, language: str) -> bool:
    """langdetect's language of the whole response is ``language`` (ISO 639-1, e.g. ``"fr"``), or it cannot tell."""
    found = detect_language(response)
    return found is None or found == str(language).strip()


def check_capital_words(response: str, capital_frequency: int, capital_relation: str) -> bool:
    """Words written all in capitals (``"NASA"``, ``"I"``) ``< n`` or ``>= n`` times."""
    words = re.findall(r"(?:[A-Za-z]\.){2,}|\w+(?:['\-]\w+)*", response)
    return _compare(sum(w.isupper() for w in words), capital_relation, int(capital_frequency))


def check_end_phrase(response: str, end_phrase: str) -> bool:
    """The response (stripped, outer ``"`` removed) ends with ``end_phrase`` (case-insensitive)."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def check_quotation(response: str) -> bool:
    """The whole response (stripped) is wrapped in double quotes."""
    s = response.strip()
    return len(s) > 1 and s[0] == '"' and s[-1] == '"'


def check_postscript(response: str, postscript_marker: str) -> bool:
    """A line starts with the marker (``P.S.``, ``P.P.S``, case-insensitive)."""
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def check_placeholders(response: str, num_placeholders: int) -> bool:
    """At least ``num_placeholders`` square-bracket placeholders like ``[name]``."""
    return len(re.findall(r"\[.*?\]", response)) >= int(num_placeholders)


def check_highlights(response: str, num_highlights: int) -> bool:
    """At least ``num_highlights`` markdown highlights ``*text*`` (``**text**`` counts too)."""
    singles = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    doubles = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h[2:-2].strip()]
    return len(singles) + len(doubles) >= int(num_highlights)


def check_sections(response: str, section_spliter: str, num_sections: int) -> bool:
    """At least ``num_sections`` sections, each introduced by ``<spliter> <number>``."""
    parts = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", response)
    return len(parts) - 1 >= int(num_sections)


def _star_paragraphs(response: str) -> list[str] | None:
    parts = re.split(r"\s?\*\*\*\s?", response)
    keep = []
    for i, p in enumerate(parts):
        if p.strip():
            keep.append(p)
        elif 0 < i < len(parts) - 1:
            return None  # an empty paragraph between two dividers
    return keep


def check_paragraphs(response: str, num_paragraphs: int) -> bool:
    """Exactly ``num_paragraphs`` paragraphs separated by the markdown divider ``***``."""
    paras = _star_paragraphs(response)
    return paras is not None and len(paras) == int(num_paragraphs)


def check_json(response: str) -> bool:
    """The response (optionally in a ```` ```json ```` fence) parses as JSON."""
    s = response.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        if s.startswith(prefix):
            s = s[len(prefix):]
            break
    s = s.removesuffix("```").strip()
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


def check_two_responses(response: str) -> bool:
    """Two different non-empty responses separated by ``******``."""
    parts = response.split("******")
    valid = []
    for i, p in enumerate(parts):
        if p.strip():
            valid.append(p.strip())
        elif 0 < i < len(parts) - 1:
            return False
    return len(valid) == 2 and valid[0] != valid[1]


CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def check_constrained_response(response: str) -> bool:
    """Contains one of IFEval's fixed answers (``"My answer is yes."``, ``no.``, ``maybe.``)."""
    return any(opt in response.strip() for opt in CONSTRAINED_OPTIONS)


def check_repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    """Starts by repeating ``prompt_to_repeat`` word for word (case-insensitive)."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def check_first_word(response: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Exactly ``num_paragraphs`` paragraphs (split on blank lines) and paragraph ``nth_paragraph``
    (1-based) starts with ``first_word`` (case-insensitive, leading quotes, trailing punctuation ignored)."""
    paras = re.split(r"\n\n", response)
    n = sum(1 for p in paras if p.strip())
    nth = int(nth_paragraph)
    if nth > n or nth < 1:
        return False
    para = paras[nth - 1].strip()
    if not para:
        return False
    word = para.split()[0].strip().lstrip("'").lstrip('"')
    first = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return n == int(num_paragraphs) and first == first_word.lower()


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class InstructionType:
    """One instruction type: our channel name, IFEval's id, the checker and its kwargs."""

    name: str
    ifeval_id: str
    check: Callable[..., bool]
    kwargs: tuple[str, ...] = ()


TYPES: dict[str, InstructionType] = {t.name: t for t in (
    InstructionType("no_comma", "punctuation:no_comma", check_no_comma),
    InstructionType("title", "detectable_format:title", check_title),
    InstructionType("n_sentences", "length_constraints:number_sentences", check_n_sentences,
                    ("relation", "num_sentences")),
    InstructionType("n_words", "length_constraints:number_words", check_n_words, ("relation", "num_words")),
    InstructionType("n_bullets", "detectable_format:number_bullet_lists", check_n_bullets, ("num_bullets",)),
    InstructionType("keywords", "keywords:existence", check_keywords, ("keywords",)),
    InstructionType("keyword_freq", "keywords:frequency", check_keyword_freq, ("keyword", "frequency", "relation")),
    InstructionType("forbidden", "keywords:forbidden_words", check_forbidden, ("forbidden_words",)),
    InstructionType("letter_freq", "keywords:letter_frequency", check_letter_freq,
                    ("letter", "let_frequency", "let_relation")),
    InstructionType("lowercase", "change_case:english_lowercase", check_lowercase),
    InstructionType("uppercase", "change_case:english_capital", check_uppercase),
    InstructionType("capital_words", "change_case:capital_word_frequency", check_capital_words,
                    ("capital_frequency", "capital_relation")),
    InstructionType("end_phrase", "startend:end_checker", check_end_phrase, ("end_phrase",)),
    InstructionType("quotation", "startend:quotation", check_quotation),
    InstructionType("postscript", "detectable_content:postscript", check_postscript, ("postscript_marker",)),
    InstructionType("placeholders", "detectable_content:number_placeholders", check_placeholders,
                    ("num_placeholders",)),
    InstructionType("highlights", "detectable_format:number_highlighted_sections", check_highlights,
                    ("num_highlights",)),
    InstructionType("sections", "detectable_format:multiple_sections", check_sections,
                    ("section_spliter", "num_sections")),
    InstructionType("paragraphs", "length_constraints:number_paragraphs", check_paragraphs, ("num_paragraphs",)),
    InstructionType("json", "detectable_format:json_format", check_json),
    InstructionType("two_responses", "combination:two_responses", check_two_responses),
    InstructionType("constrained_response", "detectable_format:constrained_response", check_constrained_response),
    InstructionType("repeat_prompt", "combination:repeat_prompt", check_repeat_prompt, ("prompt_to_repeat",)),
    InstructionType("first_word", "length_constraints:nth_paragraph_first_word", check_first_word,
                    ("num_paragraphs", "nth_paragraph", "first_word")),
    InstructionType("language", "language:response_language", check_response_language, ("language",)),
)}
"""All 25 IFEval instruction types (``language``, ``lowercase``, ``uppercase`` need langdetect)."""

BY_IFEVAL_ID: dict[str, InstructionType] = {t.ifeval_id: t for t in TYPES.values()}
UNSUPPORTED_IFEVAL_IDS: tuple[str, ...] = ()
NEEDS_LANGDETECT = frozenset({"language", "lowercase", "uppercase"})


def loose_variants(response: str) -> list[str]:
    """IFEval's 8 loose variants: first/last/both/no line removed, each with and without ``*``."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return cut + [c.replace("*", "") for c in cut]


def check(name: str, response: str, kwargs: Mapping[str, Any] | None = None, loose: bool = False) -> bool:
    """Whether ``response`` follows instruction type ``name`` with ``kwargs`` (strict or loose).

    Raises ``KeyError`` for an unknown type and ``ValueError`` naming the type for bad kwargs.
    """
    t = TYPES[name]
    args = {k: v for k, v in (kwargs or {}).items() if k in t.kwargs and v is not None}
    missing = [k for k in t.kwargs if k not in args]
    if missing:
        raise ValueError(f"instruction {name!r}: missing argument(s) {', '.join(missing)}")
    candidates = loose_variants(response) if loose else [response]
    try:
        return any(c.strip() and t.check(c, **args) for c in candidates)
    except (TypeError, ValueError) as e:
        raise ValueError(f"instruction {name!r}: bad arguments {args}: {e}") from None
