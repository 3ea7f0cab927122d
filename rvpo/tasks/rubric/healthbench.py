"""HealthBench-style rubric evaluation: the policy answers, the judge grades every rubric item.

Works on any file :func:`rvpo.tasks.rubric.load_rubric_file` reads (HealthBench or Rubrics-as-Rewards
schema). Scoring is :mod:`rvpo.tasks.rubric.scoring` (simple-evals' definitions; abstained items are left
out of an example's score and counted). Steps::

    answers  = policy.answer([ex.conversation for ex in examples])       # P answers
    verdicts = judge.judge_many([one request per (example, item)])       # sum_i M_i, concurrent
    scores   = aggregate_scores(...)                                     # overall / axis / theme / tag

Run directory (when ``out_dir`` is given): ``config.json`` (data, policy, judge settings; no key),
``results.json`` (the aggregate scores, strict JSON: a score that does not exist is ``null``),
``examples.jsonl`` (one line per example: id, the answer, score, per-item verdicts with explanations).

An eval in which the judge abstained on every rubric item, or in which no example could be scored,
has **failed**: :attr:`HealthBenchResult.failure` says why, ``results.json`` holds
``"status": "failed"`` and the reason, and ``rvpo eval healthbench`` exits 1.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvpo.judge import JudgeRequest
from rvpo.runs import write_eval_outputs
from rvpo.tasks.rubric.data import RubricExample
from rvpo.tasks.rubric.scoring import RubricScores, aggregate_scores, example_tag_scores

logger = logging.getLogger(__name__)


@dataclass
class HealthBenchResult:
    """Aggregate scores plus the per-example records (what ``examples.jsonl`` holds)."""

    scores: RubricScores
    records: list[dict[str, Any]]
    wall_s: float
    answer_s: float
    judge_s: float
    judge_stats: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

    @property
    def failure(self) -> str | None:
        """Why this eval has no score (every verdict abstained, or no example scored), or ``None``."""
        s = self.scores
        if s.n_items and s.n_abstained == s.n_items:
            reasons = self.judge_stats.get("failures") or {}
            why = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "see the rvpo.judge log"
            return f"the judge abstained on every rubric item ({s.n_abstained} of {s.n_items}; {why})"
        if s.n_examples and s.n_unscored == s.n_examples:
            return f"no example could be scored ({s.n_unscored} of {s.n_examples} unscored)"
        return None

    def summary(self) -> dict[str, Any]:
        """Status, aggregates, timings, judge stats and the run dir: what ``results.json`` holds."""
        failure = self.failure
        return {"status": "failed" if failure else "ok", "failure": failure, **self.scores.as_dict(),
                "wall_s": round(self.wall_s, 3), "answer_s": round(self.answer_s, 3),
                "judge_s": round(self.judge_s, 3), "judge_stats": self.judge_stats, "run_dir": self.run_dir}


def judge_requests(example: RubricExample, answer: str) -> list[Any]:
    """One :class:`rvpo.judge.JudgeRequest` per rubric item: the conversation plus ``answer`` as last turn."""
    conv = list(example.conversation) + [{"role": "assistant", "content": answer}]
    return [JudgeRequest(conversation=conv, criterion=it.criterion, points=it.points) for it in example.items]


def grade_examples(examples: Sequence[RubricExample], answers: Sequence[str], judge: Any
                   ) -> list[list[Any]]:
    """Verdicts (``Verdict | None``) per example per item, from ONE concurrent ``judge.judge_many`` call."""
    if len(examples) != len(answers):
        raise ValueError(f"{len(examples)} examples but {len(answers)} answers")
    requests, bounds = [], []
    for ex, ans in zip(examples, answers, strict=True):
        reqs = judge_requests(ex, ans)
        bounds.append((len(requests), len(requests) + len(reqs)))
        requests.extend(reqs)
    verdicts = judge.judge_many(requests) if requests else []
    if len(verdicts) != len(requests):
        raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(requests)} requests")
    return [list(verdicts[a:b]) for a, b in bounds]


def example_record(example: RubricExample, answer: str, verdicts: Sequence[Any]) -> dict[str, Any]:
    """The per-example JSON record: answer, score, tag scores, and each item's verdict."""
    met = [None if v is None else bool(v.criteria_met) for v in verdicts]
    tag_scores = example_tag_scores(example.items, met, example.example_tags)
    return {
        "id": example.id,
        "example_tags": list(example.example_tags),
        "answer": answer,
        "score": tag_scores.get("overall"),
        "tag_scores": {k: v for k, v in tag_scores.items() if k != "overall"},
        "n_items": len(example.items),
        "n_abstained": sum(m is None for m in met),
        "items": [
            {"criterion": it.criterion, "points": it.points, "tags": list(it.tags), "criteria_met": m,
             "explanation": None if v is None else v.explanation}
            for it, m, v in zip(example.items, met, verdicts, strict=True)
        ],
    }


def run_healthbench(examples: Sequence[RubricExample], policy: Any, judge: Any,
                    out_dir: str | Path | None = None, config: dict[str, Any] | None = None,
                    n_boot: int = 1000, seed: int = 0) -> HealthBenchResult:
    """Answer and grade ``examples``; optionally write the run directory ``out_dir`` (created by the caller).

    Args:
        examples: ``P`` rubric examples.
        policy: ``answer(conversations) -> list[str]`` (:mod:`rvpo.evals.policy`).
        judge: ``judge_many(requests) -> list[Verdict | None]`` (:class:`rvpo.judge.JudgeClient`).
        config: settings to save as ``config.json`` (secret-looking keys are redacted on write).
        n_boot, seed: bootstrap samples and seed for the standard errors.
    """
    t0 = time.perf_counter()
    answers = policy.answer([ex.conversation for ex in examples])
    if len(answers) != len(examples):
        raise RuntimeError(f"policy returned {len(answers)} answers for {len(examples)} conversations")
    t1 = time.perf_counter()
    verdicts = grade_examples(examples, answers, judge)
    t2 = time.perf_counter()
    graded = [(ex.items, [None if v is None else bool(v.criteria_met) for v in vs], ex.example_tags)
              for ex, vs in zip(examples, verdicts, strict=True)]
    scores = aggregate_scores(graded, n_boot=n_boot, seed=seed)
    records = [example_record(ex, a, vs) for ex, a, vs in zip(examples, answers, verdicts, strict=True)]
    stats = judge.stats.as_dict() if hasattr(getattr(judge, "stats", None), "as_dict") else {}
    result = HealthBenchResult(scores, records, time.perf_counter() - t0, t1 - t0, t2 - t1, stats)
    if scores.n_abstained:
        logger.warning("healthbench: the judge abstained on %d of %d rubric items (left out of the scores)",
                       scores.n_abstained, scores.n_items)
    if out_dir is not None:
        result.run_dir = str(out_dir)
        write_eval_outputs(out_dir, config or {}, records, result.summary())
    return result


def format_report(result: HealthBenchResult) -> str:
    """Human-readable summary: overall, per axis, per theme, counts."""
    s = result.scores
    lines = [f"overall  {_fmt(s.overall)}",
             f"examples {s.n_examples} (unscored {s.n_unscored}), rubric items {s.n_items}, "
             f"judge abstentions {s.n_abstained}"]
    for title, d in (("axis", s.by_axis), ("theme", s.by_theme)):
        for k, v in d.items():
            lines.append(f"{title:5s}    {k:26s} {_fmt(v)}")
    lines.append(f"time     answer {result.answer_s:.1f}s, judge {result.judge_s:.1f}s, total {result.wall_s:.1f}s")
    if result.run_dir:
        lines.append(f"run dir  {result.run_dir}")
    if result.failure:
        lines.append(f"FAILED   {result.failure}")
    return "\n".join(lines)


def _fmt(cm) -> str:
    if cm.n == 0 or math.isnan(cm.mean):
        return "no score (n=0)"
    return f"{cm.mean:.4f} ± {cm.bootstrap_se:.4f} (bootstrap SE, n={cm.n})"
