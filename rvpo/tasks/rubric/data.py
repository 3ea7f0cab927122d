"""Rubric data: examples that hold a conversation and rubric items, loaded from two public schemas.

Schema (one :class:`RubricExample` per row):

- ``conversation``: the chat to answer, a list of ``{"role", "content"}`` messages (ends with the user).
- ``items``: ``M`` rubric items ``RubricItem(criterion, points, tags)``; ``M`` varies per example.
  ``points < 0`` marks a *pitfall*: the criterion describes an undesirable behaviour, and the judge
  answers "met" when that behaviour is present (met = bad). See :mod:`rvpo.tasks.rubric.scoring` for how
  that becomes a reward channel (the channel sign is defined once, there).
- ``example_tags``: tags of the whole example (HealthBench themes such as ``theme:hedging``).

File schemas, detected per row:

- **HealthBench** (``openai/healthbench``): ``prompt`` (message list), ``rubrics``
  (``[{criterion, points, tags}]``), ``example_tags``, ``prompt_id``; other fields are ignored.
- **Rubrics-as-Rewards** (RaR, arXiv 2507.17746): ``question`` (a string; or ``prompt`` as a message
  list), ``rubric`` (``[{title, description, weight}]``, also accepted as a JSON string). An item's
  criterion is ``"<title>: <description>"`` (or whichever of the two is present), its points are its
  weight (negative weights are pitfalls), and it gets the tag ``rar:<class>`` with class essential
  (weight >= 5), important (3-4), optional (< 3) or pitfall (< 0), plus any ``tags`` it carries.

Files: JSON Lines (``.jsonl``, any other suffix), a JSON list (a file whose first non-blank
character is ``[``), both read by :func:`rvpo.runs.iter_json_records`, or Parquet (``.parquet``,
needs pyarrow). A malformed row either raises :class:`RubricDataError` naming the file and line
(``on_error="raise"``, the default) or is skipped, counted and reported in
:attr:`RubricDataset.skipped` (``on_error="skip"``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rvpo.runs import JsonRecordError, iter_json_records

OnError = Literal["raise", "skip"]


class RubricDataError(ValueError):
    """A malformed rubric file or row; the message names the file and line."""


@dataclass(frozen=True)
class RubricItem:
    """One rubric criterion. ``points < 0``: a pitfall (the judge's "met" means the bad behaviour is present)."""

    criterion: str
    points: float
    tags: tuple[str, ...] = ()

    @property
    def is_pitfall(self) -> bool:
        """True for negative points: the judge's "met" means the undesirable behaviour is present."""
        return self.points < 0

    def to_dict(self) -> dict[str, Any]:
        """``{criterion, points, tags}`` (HealthBench item schema; JSON-ready)."""
        return {"criterion": self.criterion, "points": self.points, "tags": list(self.tags)}


@dataclass(frozen=True)
class RubricExample:
    """A conversation to answer and its ``M = len(items)`` rubric items."""

    id: str
    conversation: list[dict]
    items: list[RubricItem]
    example_tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {
            "id": self.id,
            "conversation": self.conversation,
            "items": [it.to_dict() for it in self.items],
            "example_tags": list(self.example_tags),
        }


@dataclass
class RubricDataset:
    """Examples loaded from one file; ``skipped`` lists ``(line, reason)`` of rows left out."""

    examples: list[RubricExample]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    path: str | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[RubricExample]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> RubricExample:
        return self.examples[i]

    @property
    def max_items(self) -> int:
        """The largest ``M`` over the examples (the number of reward channels a trainer needs)."""
        return max((len(ex.items) for ex in self.examples), default=0)

    def summary(self) -> str:
        """One line: examples, items, pitfalls, skipped rows."""
        n_items = sum(len(ex.items) for ex in self.examples)
        n_pit = sum(it.is_pitfall for ex in self.examples for it in ex.items)
        return (f"{self.path or '<rows>'}: {len(self.examples)} examples, {n_items} rubric items "
                f"({n_pit} pitfalls), max {self.max_items} per example, {len(self.skipped)} rows skipped")


# ---------------------------------------------------------------------------------------------
# row parsing (pure): dict -> RubricExample, raising _RowError with a reason

class _RowError(ValueError):
    pass


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _RowError(f"{what} must be a number, got {type(v).__name__}")
    if not math.isfinite(v):
        raise _RowError(f"{what} must be finite, got {v}")
    return float(v)


def _tags(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)) or not all(isinstance(t, str) for t in v):
        raise _RowError(f"{what} must be a list of strings")
    return tuple(v)


def _conversation(v: Any, what: str) -> list[dict]:
    if isinstance(v, str):
        if not v.strip():
            raise _RowError(f"{what} is empty")
        return [{"role": "user", "content": v}]
    if not isinstance(v, list) or not v:
        raise _RowError(f"{what} must be a non-empty list of messages or a string")
    out = []
    for j, m in enumerate(v):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise _RowError(f"{what}[{j}] must be a message {{'role': str, 'content': str}}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _rar_class(weight: float) -> str:
    if weight < 0:
        return "rar:pitfall"
    return "rar:essential" if weight >= 5 else "rar:important" if weight >= 3 else "rar:optional"


def _healthbench_items(rubrics: Any) -> list[RubricItem]:
    if not isinstance(rubrics, list) or not rubrics:
        raise _RowError("'rubrics' must be a non-empty list")
    items = []
    for j, r in enumerate(rubrics):
        if not isinstance(r, dict):
            raise _RowError(f"rubrics[{j}] must be an object")
        crit = r.get("criterion")
        if not isinstance(crit, str) or not crit.strip():
            raise _RowError(f"rubrics[{j}].criterion must be a non-empty string")
        items.append(RubricItem(crit, _number(r.get("points"), f"rubrics[{j}].points"),
                                _tags(r.get("tags"), f"rubrics[{j}].tags")))
    return items


def _rar_items(rubric: Any) -> list[RubricItem]:
    if isinstance(rubric, str):
        try:
            rubric = json.loads(rubric)
        except json.JSONDecodeError as e:
            raise _RowError(f"'rubric' is a string but not JSON ({e.msg})") from None
    if not isinstance(rubric, list) or not rubric:
        raise _RowError("'rubric' must be a non-empty list")
    items = []
    for j, r in enumerate(rubric):
        if not isinstance(r, dict):
            raise _RowError(f"rubric[{j}] must be an object")
        title, desc = r.get("title"), r.get("description")
        parts = [s.strip() for s in (title, desc) if isinstance(s, str) and s.strip()]
        if not parts:
            raise _RowError(f"rubric[{j}] needs a non-empty 'title' or 'description'")
        weight = _number(r.get("weight"), f"rubric[{j}].weight")
        tags = (_rar_class(weight),) + _tags(r.get("tags"), f"rubric[{j}].tags")
        items.append(RubricItem(": ".join(parts), weight, tags))
    return items


def parse_row(row: Any, default_id: str) -> RubricExample:
    """One row (a dict) of either schema -> :class:`RubricExample`; raises ``ValueError`` with a reason."""
    if not isinstance(row, dict):
        raise _RowError(f"a row must be a JSON object, got {type(row).__name__}")
    if "rubrics" in row:  # HealthBench
        conv = _conversation(row.get("prompt"), "'prompt'")
        items = _healthbench_items(row["rubrics"])
    elif "rubric" in row:  # Rubrics-as-Rewards
        if "question" in row:
            conv = _conversation(row["question"], "'question'")
        elif "prompt" in row:
            conv = _conversation(row["prompt"], "'prompt'")
        else:
            raise _RowError("a Rubrics-as-Rewards row needs 'question' (or 'prompt')")
        items = _rar_items(row["rubric"])
    else:
        raise _RowError("unknown schema: expected 'rubrics' (HealthBench) or 'rubric' (Rubrics-as-Rewards)")
    rid = next((row[k] for k in ("prompt_id", "id", "example_id") if row.get(k) not in (None, "")), default_id)
    return RubricExample(str(rid), conv, items, _tags(row.get("example_tags"), "'example_tags'"))


# ---------------------------------------------------------------------------------------------
# files

def _iter_rows(path: Path) -> Iterator[tuple[int, int, Any, str | None]]:
    """Yield ``(line, position, row, error)``: ``error`` is set (and ``row`` None) when the row cannot be decoded.

    ``position`` names a row without an id: its line in JSON Lines, its element number in a JSON
    list, its row number in Parquet (see :class:`rvpo.runs.JsonRecord`).
    """
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:  # pragma: no cover - pyarrow ships with the trl extra
            raise RubricDataError(f"{path}: reading Parquet needs pyarrow ({e})") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # ArrowInvalid, OSError, ...: a truncated or non-Parquet file
            raise RubricDataError(f"{path}: not a readable Parquet file ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
        for i, row in enumerate(rows, 1):
            yield i, i, row, None
        return
    try:
        for rec in iter_json_records(path, objects=False, on_error="yield"):
            yield rec.line, rec.position, rec.value, rec.error and rec.error.why
    except JsonRecordError as e:  # not UTF-8, or a broken JSON list: no row boundary to skip to
        hint = "; expected JSONL, a JSON list or .parquet" if e.reason == JsonRecordError.NOT_UTF8 else ""
        raise RubricDataError(f"{e}{hint}") from None
    except OSError as e:
        raise RubricDataError(f"{path}: cannot read ({e.strerror or e})") from None


def load_rubric_file(path: str | os.PathLike, on_error: OnError = "raise", limit: int | None = None) -> RubricDataset:
    """Load a HealthBench or Rubrics-as-Rewards file (schema detected per row).

    Args:
        path: ``.jsonl`` (default), ``.json`` (a list) or ``.parquet``.
        on_error: ``"raise"``: a malformed row raises :class:`RubricDataError` ``"<file>:<line>: <reason>"``;
            ``"skip"``: it is left out and recorded in ``.skipped`` as ``(line, reason)``.
        limit: keep at most this many (valid) examples.

    Returns:
        :class:`RubricDataset`. Raises :class:`RubricDataError` if the file is missing or holds no
        valid example.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise RubricDataError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    examples: list[RubricExample] = []
    skipped: list[tuple[int, str]] = []
    for line, position, row, err in _iter_rows(path):
        if limit is not None and len(examples) >= limit:
            break
        if err is None:
            try:
                examples.append(parse_row(row, default_id=f"{path.stem}:{position}"))
                continue
            except _RowError as e:
                err = str(e)
        if on_error == "raise":
            raise RubricDataError(f"{path}:{line}: {err}")
        skipped.append((line, err))
    if not examples:
        hint = f" ({len(skipped)} rows skipped, first: line {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise RubricDataError(f"{path}: no valid rubric example{hint}")
    return RubricDataset(examples, skipped, str(path))


def examples_from_rows(rows: Iterable[dict], on_error: OnError = "raise") -> RubricDataset:
    """Like :func:`load_rubric_file` for rows already in memory ("line" = 1-based position)."""
    examples, skipped = [], []
    for i, row in enumerate(rows, 1):
        try:
            examples.append(parse_row(row, default_id=f"row:{i}"))
        except _RowError as e:
            if on_error == "raise":
                raise RubricDataError(f"<rows>:{i}: {e}") from None
            skipped.append((i, str(e)))
    return RubricDataset(examples, skipped, None)


# ---------------------------------------------------------------------------------------------
# the rubric as a dataset column (what a trainer passes back to the reward)

def rubric_to_json(items: Sequence[RubricItem]) -> str:
    """Serialise items for a dataset column: ``[{criterion, points, tags}]`` as a JSON string."""
    return json.dumps([it.to_dict() for it in items], ensure_ascii=False)


def rubric_from_column(value: Any) -> list[RubricItem]:
    """Parse a rubric column value: a JSON string or a list of ``{criterion, points, tags}`` dicts."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, (list, tuple)) and all(isinstance(r, RubricItem) for r in value):
        return list(value)
    try:
        return _healthbench_items(list(value) if isinstance(value, tuple) else value)
    except _RowError as e:
        raise ValueError(f"rubric column: {e}") from None
