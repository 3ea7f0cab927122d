"""GPQA multiple-choice evaluation with simple-evals' protocol (GPQA-Diamond, or any CSV with its columns).

Data: the official CSV columns ``Question``, ``Correct Answer``, ``Incorrect Answer {1,2,3}``,
``Record ID`` (others ignored), either a plain ``.csv`` or a password-protected ``.zip`` holding one
(read in memory; the authors distribute GPQA that way and ask that questions never appear in plain
text online). **No question or option text is ever printed, logged or stored**: records hold only the
Record ID, the chosen letter, the gold letter and whether it is correct; errors name files, rows
and columns, never cell contents; :class:`GPQAQuestion`'s ``repr`` hides its text.

Protocol: openai/simple-evals ``gpqa_eval.py`` and ``common.py`` (read at ``ee3b0318``):

- prompt: ``QUERY_TEMPLATE_MULTICHOICE`` filled with the cells as read (not stripped), one user turn;
- option order: one ``random.Random(seed)`` stream (simple-evals: seed 0) draws
  ``rng.sample(range(4), 4)`` per example, in file order, over the file repeated ``repeats`` times
  (simple-evals' ``n_repeats``, default 4 there, 1 here); the gold letter is the position of the
  correct answer's text;
- answer: the FIRST match of ``ANSWER_PATTERN_MULTICHOICE`` (``(?i)``, so ``answer: c`` matches,
  but its group is the letter as written, and a lowercase ``c`` is then scored wrong, as in
  simple-evals); no match scores wrong.

``--limit N`` keeps the first N questions with the permutations a full run gives them (simple-evals'
``num_examples`` instead samples N questions first, which shifts the stream). Permutation i goes to
row i of the file: simple-evals reads its own copy of ``gpqa_diamond.csv``, assumed here to be in the
official file's row order (not checkable offline). ``extractor="lenient"`` (an rvpo option, recorded
in the results) takes the last stated answer in many formats (``**C**``, ``\\boxed{C}``, "the answer
is (C)"...); its numbers are not simple-evals' numbers. Accuracy has a 95% Wilson interval over all
``n x repeats`` answers (repeats of one question are not independent: the interval is then too narrow).
"""

from __future__ import annotations

import csv
import io
import random
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvpo.runs import write_eval_outputs

DEFAULT_ZIP_PASSWORD = "deserted-untie-orchid"  # public: published by the GPQA authors with the data
LETTERS = "ABCD"
INCORRECT_COLUMNS = tuple(f"Incorrect Answer {i}" for i in (1, 2, 3))
REQUIRED_COLUMNS = ("Question", "Correct Answer", *INCORRECT_COLUMNS)

QUERY_TEMPLATE = """
Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.

{Question}

A) {A}
B) {B}
C) {C}
D) {D}
""".strip()
"""simple-evals' ``QUERY_TEMPLATE_MULTICHOICE`` (``common.py``), character for character."""

ANSWER_PATTERN_MULTICHOICE = r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?"
"""simple-evals' answer pattern (``common.py``); the first match counts."""


class GPQADataError(ValueError):
    """A GPQA file that cannot be read; the message never holds question text."""


@dataclass(frozen=True)
class GPQAQuestion:
    """One question; ``repr`` shows only the record id (the text must not leak into logs)."""

    record_id: str
    question: str = field(repr=False)
    correct: str = field(repr=False)
    incorrect: tuple[str, str, str] = field(repr=False)


def _read_csv_text(path: Path, zip_password: str | None) -> str:
    if path.suffix.lower() != ".zip":
        return path.read_text(encoding="utf-8-sig")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise GPQADataError(f"{path}: not a zip file") from None
    with zf:
        names = [n for n in zf.namelist() if n.lower().endswith(".csv") and not n.startswith("__MACOSX")]
        if len(names) != 1:
            raise GPQADataError(f"{path}: expected exactly one .csv inside the zip, found {len(names)}")
        pwd = zip_password.encode() if zip_password else None
        try:
            with zf.open(names[0], pwd=pwd) as f:
                return f.read().decode("utf-8-sig")
        except RuntimeError as e:  # zipfile: "Bad password for file" / "... is encrypted, password required"
            raise GPQADataError(f"{path}: cannot decrypt {names[0]} (wrong or missing --zip-password)") from e


def load_gpqa(path: str | Path, zip_password: str | None = DEFAULT_ZIP_PASSWORD,
              limit: int | None = None) -> list[GPQAQuestion]:
    """Read questions from a ``.csv`` or a (password-protected) ``.zip`` holding one, in memory.

    Raises :class:`GPQADataError` naming the file (and row/column) for a missing file, a wrong
    password, missing columns or an empty cell; never with cell contents.
    """
    path = Path(path)
    if not path.is_file():
        raise GPQADataError(f"{path}: no such file")
    reader = csv.DictReader(io.StringIO(_read_csv_text(path, zip_password)))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise GPQADataError(f"{path}: missing column(s) {missing}; GPQA needs {list(REQUIRED_COLUMNS)}")
    out = []
    for i, row in enumerate(reader):
        if limit is not None and len(out) >= limit:
            break
        line = i + 2  # header is line 1 (a quoted cell may span lines; this is the record number + 1)
        empty = [c for c in REQUIRED_COLUMNS if not (row.get(c) or "").strip()]
        if empty:
            raise GPQADataError(f"{path}: record at row {line}: empty column(s) {empty}")
        rid = (row.get("Record ID") or "").strip() or f"row{line}"
        # Cells as read (not stripped): simple-evals formats its prompt from the raw cells.
        out.append(GPQAQuestion(rid, row["Question"], row["Correct Answer"],
                                tuple(row[c] for c in INCORRECT_COLUMNS)))
    if not out:
        raise GPQADataError(f"{path}: no questions")
    return out


def permutations(n: int, seed: int = 0) -> list[list[int]]:
    """``n`` option orders drawn as simple-evals does: ``rng = random.Random(seed)``, then
    ``rng.sample(range(4), 4)`` per example in order (simple-evals: seed 0, examples = file x n_repeats)."""
    rng = random.Random(seed)
    return [rng.sample(range(4), 4) for _ in range(n)]


def shuffle_options(q: GPQAQuestion, permutation: Sequence[int]) -> tuple[list[str], str]:
    """The 4 options ``[correct, incorrect 1-3]`` taken in ``permutation`` order, and the gold letter
    (simple-evals: the position of the first option equal to the correct answer's text)."""
    choices = [q.correct, *q.incorrect]
    options = [choices[i] for i in permutation]
    return options, LETTERS[options.index(q.correct)]


def format_prompt(q: GPQAQuestion, options: Sequence[str]) -> list[dict]:
    """The user message for one question (simple-evals' ``format_multichoice_question``)."""
    return [{"role": "user", "content": QUERY_TEMPLATE.format(Question=q.question, **dict(zip(LETTERS, options, strict=True)))}]


def extract_answer(text: str) -> str | None:
    """simple-evals' extraction: the group of the first ``ANSWER_PATTERN_MULTICHOICE`` match, as written.

    >>> [extract_answer(s) for s in ["Answer: C", "answer: c", "**Answer:** C", "Answer: $B$ or Answer: A"]]
    ['C', 'c', None, 'B']
    """
    m = re.search(ANSWER_PATTERN_MULTICHOICE, text or "")
    return m.group(1) if m else None


_NOT_WORD = r"(?![A-Za-z0-9])"
_L = r"([A-D])"
# strongest first; within a pattern the LAST match in the text wins (the final answer)
_PATTERNS = [
    # Answer: C | **Answer:** C | answer is (C) | Final answer: **C** | The answer is: $C$ | answer = [B]
    re.compile(r"(?i:answer)\s*(?:(?i:is)\b)?[\s*_:=\-(\[$\\{]*" + _L + _NOT_WORD),
    # \boxed{C} | \text{C}
    re.compile(r"\\(?:boxed|text(?:bf)?)\{\s*\(?" + _L + r"\)?\s*\}"),
    # The correct option is C. | choice (B) | option D is correct
    re.compile(r"(?i:option|choice)\s*(?:(?i:is)\b)?[\s*_:(\[]*" + _L + _NOT_WORD),
    # **C** | **(C)** | **C)**
    re.compile(r"\*\*\s*\(?" + _L + r"[).:]?\s*\*\*"),
    # a last line that starts with the letter: "C", "C)", "(C)", "C.", "C: ..."
    re.compile(r"(?m)^\s*\(?" + _L + r"(?:[).:]|\s*$)"),
]


def extract_answer_lenient(text: str) -> str | None:
    """rvpo's lenient extraction (not simple-evals'): the last stated capital letter A-D in many formats.

    >>> [extract_answer_lenient(s) for s in ["Answer: C", "the answer is (B).", "**D**", "A) because", "no idea"]]
    ['C', 'B', 'D', 'A', None]
    """
    if not text:
        return None
    for k, pat in enumerate(_PATTERNS):
        if k == len(_PATTERNS) - 1:  # only the last non-empty line may be a bare letter
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            text = lines[-1] if lines else ""
        matches = pat.findall(text)
        if matches:
            return matches[-1].upper()
    return None


EXTRACTORS = {"simple-evals": extract_answer, "lenient": extract_answer_lenient}
"""Answer extractors by name; ``simple-evals`` is the default and the protocol's own."""


@dataclass
class GPQAResult:
    """Accuracy with a 95% Wilson interval and per-question records (no text)."""

    accuracy: float
    ci_low: float
    ci_high: float
    n: int
    n_correct: int
    n_unparsed: int
    records: list[dict[str, Any]]
    wall_s: float
    seed: int
    repeats: int = 1
    extractor: str = "simple-evals"
    run_dir: str | None = None

    def summary(self) -> dict[str, Any]:
        """Accuracy, CI and counts (no records): what ``results.json`` holds."""
        return {"accuracy": self.accuracy, "ci95": [self.ci_low, self.ci_high], "n": self.n,
                "n_correct": self.n_correct, "n_unparsed": self.n_unparsed, "seed": self.seed,
                "repeats": self.repeats, "extractor": self.extractor,
                "protocol": ("simple-evals" if self.extractor == "simple-evals"
                             else f"simple-evals prompt, {self.extractor} extractor"),
                "wall_s": round(self.wall_s, 3), "run_dir": self.run_dir}


def run_gpqa(questions: Sequence[GPQAQuestion], policy: Any, seed: int = 0,
             out_dir: str | Path | None = None, config: dict[str, Any] | None = None,
             repeats: int = 1, extractor: str = "simple-evals") -> GPQAResult:
    """Ask every question ``repeats`` times (simple-evals' option orders), extract letters, score.

    Run dir: ``config.json``, ``results.json`` and ``examples.jsonl`` with records
    ``{record_id, index, repeat, chosen, gold, correct}`` only (never question, option or answer text).
    """
    from rvpo.stats import wilson_ci  # deferred: scipy via rvpo.stats (start-up time: the CLI imports this module)

    if extractor not in EXTRACTORS:
        raise ValueError(f"extractor: expected one of {', '.join(EXTRACTORS)}, got {extractor!r}")
    if repeats < 1:
        raise ValueError(f"repeats: expected an int >= 1, got {repeats}")
    extract = EXTRACTORS[extractor]
    t0 = time.perf_counter()
    n_q = len(questions)
    examples = list(questions) * repeats
    shuffled = [shuffle_options(q, perm) for q, perm in zip(examples, permutations(len(examples), seed), strict=True)]
    answers = policy.answer([format_prompt(q, opts) for q, (opts, _) in zip(examples, shuffled, strict=True)])
    if len(answers) != len(examples):
        raise RuntimeError(f"policy returned {len(answers)} answers for {len(examples)} prompts")
    records = []
    for j, (q, (_, gold), ans) in enumerate(zip(examples, shuffled, answers, strict=True)):
        chosen = extract(ans)
        records.append({"record_id": q.record_id, "index": j % n_q, "repeat": j // n_q, "chosen": chosen,
                        "gold": gold, "correct": chosen == gold})
    n, k = len(records), sum(r["correct"] for r in records)
    lo, hi = wilson_ci(k, n)
    result = GPQAResult(k / n if n else float("nan"), lo, hi, n, k, sum(r["chosen"] is None for r in records),
                        records, time.perf_counter() - t0, seed, repeats, extractor)
    if out_dir is not None:
        result.run_dir = str(out_dir)
        write_eval_outputs(out_dir, config or {}, records, result.summary())
    return result


def format_report(result: GPQAResult) -> str:
    """Human-readable summary (numbers only)."""
    lines = [f"accuracy {result.accuracy:.4f} ({result.n_correct}/{result.n}), 95% Wilson CI "
             f"[{result.ci_low:.4f}, {result.ci_high:.4f}]",
             f"unparsed answers {result.n_unparsed}, option seed {result.seed}, repeats {result.repeats}, "
             f"extractor {result.extractor}" + ("" if result.extractor == "simple-evals" else " (not simple-evals')")
             + f", wall {result.wall_s:.1f}s"]
    if result.run_dir:
        lines.append(f"run dir  {result.run_dir}")
    return "\n".join(lines)
