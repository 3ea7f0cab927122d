"""Strict parsing of the judge's verdict JSON.

Accepted: the judge's whole answer is one JSON object ``{"explanation": str, "criteria_met": bool}``,
optionally wrapped, as a whole, in one Markdown code fence (```json ... ``` or ``` ... ```), with
surrounding whitespace. Everything else raises :class:`VerdictParseError`: prose around the object,
several objects, ``"true"`` as a string, ``1``, a missing key. No searching for a JSON object inside
free text: that is how text quoted from the graded completion could become the verdict.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_FENCE = re.compile(r"\A```(?:json|JSON)?[ \t]*\n(?P<body>.*)\n[ \t]*```\Z", re.S)


class VerdictParseError(ValueError):
    """The judge's answer is not a valid verdict; the message says why (first 200 chars of the text)."""


@dataclass
class Verdict:
    """One rubric-item judgement: did the graded answer meet the criterion, and why."""

    criteria_met: bool
    explanation: str

    def to_json(self) -> str:
        """Canonical JSON (what the cache stores)."""
        return json.dumps({"explanation": self.explanation, "criteria_met": self.criteria_met},
                          ensure_ascii=False)


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _fail(reason: str, text: str) -> VerdictParseError:
    snippet = text[:200] + ("..." if len(text) > 200 else "")
    return VerdictParseError(f"{reason}: {snippet!r}")


def parse_verdict(text: str) -> Verdict:
    """Parse the judge's answer strictly into a :class:`Verdict`.

    >>> parse_verdict('{"explanation": "ok", "criteria_met": true}')
    Verdict(criteria_met=True, explanation='ok')
    >>> parse_verdict('```json\\n{"explanation": "no", "criteria_met": false}\\n```').criteria_met
    False
    """
    if not isinstance(text, str):
        raise VerdictParseError(f"verdict must be text, got {type(text).__name__}")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    if not body.startswith("{"):
        raise _fail("verdict is not a JSON object", text)
    try:
        obj = json.loads(body, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise _fail(f"verdict is not valid JSON ({e.msg} at char {e.pos})", text) from None
    except _DuplicateKey as e:
        raise _fail(f"duplicate key {e.args[0]!r}", text) from None
    if not isinstance(obj, dict):
        raise _fail("verdict is not a JSON object", text)
    met = obj.get("criteria_met")
    if not isinstance(met, bool):
        raise _fail(f"'criteria_met' must be true or false, got {met!r:.40}", text)
    explanation = obj.get("explanation", "")
    if not isinstance(explanation, str):
        raise _fail("'explanation' must be a string", text)
    extra = set(obj) - {"explanation", "criteria_met"}
    if extra:
        raise _fail(f"unexpected keys {sorted(extra)}", text)
    return Verdict(criteria_met=met, explanation=explanation)
