"""``rvpo train --task neglect``: a hard word limit against easy rewards that pull towards length.

Each prompt asks for an open answer on a topic in at most N words (:mod:`rvpo.tasks.neglect.data`).
Channels, per completion:

| channel     | value | meaning |
| ----------- | ----- | ------- |
| ``constraint`` | 0/1 | at most ``max_words`` words (the hard constraint) |
| ``rich_<t>``   | 0/1 | at least ``t`` distinct content words, one channel per threshold (the easy channels) |
| ``words``      | int | the word count: monitor only (logged, weight 0, never trained on) |

The richness channels correlate with length (+0.66 to +0.73 within a group on SmolLM2-135M), so
the mean of the z-scores rewards answers that run long and break the limit: the design on which
GDPO neglects the constraint (docs/neglect.md, measured base rates there). No gold answers: RL
starts from the base model.

Words are whitespace-separated pieces with at least one letter or digit. Content words are the
lowercased alphabetic words (``[a-z]+``) outside a small stop-word list, counted once each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rvpo.model.generation import generate
from rvpo.rewards import completion_text
from rvpo.stats import mean_ci
from rvpo.tasks.base import StepData, Task, build_options, option, rate
from rvpo.tasks.neglect.data import TOPICS, make_rows

STOP_WORDS = frozenset("""
a an the and or but if then so of in on at to for from by with about as into over under than that this these those
it its it's is are was were be been being am do does did done have has had having i me my we our you your he him his
she her they them their there here what which who whom whose when where why how all any some no not nor only own
same too very can will just should would could may might must shall also s t d ll m re ve o y up down out off
again further once more most other such each few both between through during before after above below
""".split())

_WORD = re.compile(r"\S*[^\W_]\S*")  # a whitespace-separated piece with a letter or digit
_ALPHA = re.compile(r"[a-z]+")
_END = re.compile(r"""[.!?]["')\]]*\s*$""")

DEFAULT_THRESHOLDS = (8, 10, 12, 14)


def count_words(text: str) -> int:
    """Words of ``text``: whitespace-separated pieces holding at least one letter or digit."""
    return len(_WORD.findall(text or ""))


def content_words(text: str) -> set[str]:
    """The distinct lowercased alphabetic words of ``text`` that are not stop words."""
    return {w for w in _ALPHA.findall((text or "").lower()) if w not in STOP_WORDS}


def finished(text: str) -> bool:
    """Whether ``text`` ends a sentence (``.``, ``!`` or ``?``, maybe quoted): unfinished answers
    are mostly cut by the token budget."""
    return bool(_END.search(text or ""))


def score_text(text: str, max_words: int, thresholds: Sequence[int]) -> dict[str, float]:
    """``{constraint, rich_<t>..., words}`` of one completion (the reward channels' values)."""
    n, rich = count_words(text), len(content_words(text))
    out = {"constraint": 1.0 if n <= max_words else 0.0}
    out.update({f"rich_{t}": 1.0 if rich >= t else 0.0 for t in thresholds})
    out["words"] = float(n)
    return out


def _int_option(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    return v


def _mean_ci(values: Sequence[float], lo: float | None = None, hi: float | None = None) -> list[float | None]:
    """Student-t 95% CI of a mean (None for fewer than two values), clipped to ``[lo, hi]``."""
    a, b = mean_ci(values)
    if not (math.isfinite(a) and math.isfinite(b)):
        return [None, None]
    return [a if lo is None else max(lo, a), b if hi is None else min(hi, b)]


def score_responses(rows: Sequence[dict], responses: Sequence[str | Sequence[str]], *, max_words: int = 32,
                    thresholds: Sequence[int] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """Score answers without a model: the task's eval result (see :mod:`rvpo.tasks.base`).

    Args:
        rows: ``P`` task rows (``id``, ``topic`` are copied to the records).
        responses: one answer per row, or a list of ``S`` sampled answers per row.
    Returns:
        ``{"n": P, "completions": P*S, "metrics", "ci95", "records"}``; metrics ``constraint`` (share
        of answers within the limit), ``easy_mean`` (mean of the richness channels), ``rich_<t>``,
        ``words`` (mean word count). With one answer a prompt, rates get Wilson intervals; with
        several, every interval is over per-prompt means (samples of a prompt are not independent).
    """
    if len(rows) != len(responses):
        raise ValueError(f"responses: {len(responses)} for {len(rows)} rows")
    per_row = [[r] if isinstance(r, str) else list(r) for r in responses]
    rich = [f"rich_{t}" for t in thresholds]
    records, prompt_means = [], {k: [] for k in ("constraint", "easy_mean", "words", *rich)}
    flat: list[dict[str, float]] = []
    for row, answers in zip(rows, per_row, strict=True):
        scored = []
        for text in answers:
            s = score_text(text, max_words, thresholds)
            s["easy_mean"] = sum(s[k] for k in rich) / len(rich) if rich else 0.0
            scored.append(s)
            flat.append(s)
            records.append({"id": row.get("id"), "topic": row.get("topic"), "completion": text,
                            "content_words": len(content_words(text)), "finished": finished(text), **s})
        for k in prompt_means:
            if scored:
                prompt_means[k].append(sum(s[k] for s in scored) / len(scored))
    n_ans = len(flat)
    single = all(len(a) == 1 for a in per_row)
    metrics: dict[str, float | None] = {}
    ci: dict[str, list[float | None]] = {}
    for k in ("constraint", *rich):
        hits = sum(int(s[k]) for s in flat)
        if single:
            r = rate(hits, n_ans)
            metrics[k], ci[k] = r.value, [r.lo, r.hi]
        else:
            metrics[k] = hits / n_ans if n_ans else None
            ci[k] = _mean_ci(prompt_means[k], 0.0, 1.0)
    metrics["easy_mean"] = sum(s["easy_mean"] for s in flat) / n_ans if n_ans else None
    ci["easy_mean"] = _mean_ci(prompt_means["easy_mean"], 0.0, 1.0)
    metrics["words"] = sum(s["words"] for s in flat) / n_ans if n_ans else None
    ci["words"] = _mean_ci(prompt_means["words"], 0.0)
    metrics["finished"] = sum(r["finished"] for r in records) / n_ans if n_ans else None
    return {"n": len(rows), "completions": n_ans, "metrics": metrics, "ci95": ci, "records": records}


@dataclass(frozen=True)
class NeglectOptions:
    """``task_options`` of the neglect task (docs/neglect.md)."""

    max_words: int = option(32, "the word limit that the `constraint` channel checks")
    thresholds: tuple[int, ...] | None = option(None, "one `rich_<t>` channel per value (distinct ints >= 1); "
                                                      "default 8, 10, 12, 14")
    n_easy: int | None = option(None, "instead of `thresholds`: the first n of 8, 10, 12, ...")
    n_train: int | None = option(None, "training prompts (default all, 168); beyond one per topic, topics come "
                                       "back with other templates")
    n_test: int = option(32, "held-out topics (1-199)")
    data_seed: int = option(0, "the topic split and templates (the rows depend on it only, not on the run's seed)")
    word_limit_in_prompt: int | None = option(None, "the N stated in the prompt (default `max_words`; may differ "
                                                    "from the limit checked)")


class NeglectTask(Task):
    """The word-limit-versus-richness task (see the module docstring and docs/neglect.md)."""

    name = "neglect"
    description = "open questions with a word limit; richness rewards that grow with length (constraint neglect)"
    default_data = "builtin"
    default_eval_data = "builtin:test"
    columns = ()
    target_metric = "constraint"
    monitor_channels = ("words",)
    constraint_channels = ("constraint",)
    train_defaults = {"prompts_per_step": 4, "group_size": 8, "max_completion_length": 48, "temperature": 0.7}
    """the step shape of its calibration (docs/neglect.md "Measured base rates": G=8 at temperature 0.7 and
    40-48 tokens left 84-94% of the groups with spread on the constraint)"""

    Options = NeglectOptions

    def __init__(self, **options: Any):
        o = self.options = build_options(NeglectOptions, options)
        max_words, thresholds, n_easy = o.max_words, o.thresholds, o.n_easy
        n_train, n_test, data_seed, word_limit_in_prompt = o.n_train, o.n_test, o.data_seed, o.word_limit_in_prompt
        self.max_words = _int_option("max_words", max_words, 1)
        if thresholds is not None and n_easy is not None:
            raise ValueError("thresholds, n_easy: give one of them (n_easy takes the first n of 8, 10, 12, ...)")
        if n_easy is not None:
            thresholds = tuple(8 + 2 * i for i in range(_int_option("n_easy", n_easy, 1)))
        elif thresholds is None:
            thresholds = DEFAULT_THRESHOLDS
        if isinstance(thresholds, (str, bytes, int)) or not isinstance(thresholds, Sequence) or not thresholds:
            raise ValueError(f"thresholds: expected a non-empty list of ints >= 1, got {thresholds!r}")
        self.thresholds = tuple(_int_option("thresholds", t, 1) for t in thresholds)
        if len(set(self.thresholds)) != len(self.thresholds):
            raise ValueError(f"thresholds: duplicate values in {list(self.thresholds)}")
        self.n_train = None if n_train is None else _int_option("n_train", n_train, 1)
        self.n_test = _int_option("n_test", n_test, 1)
        self.data_seed = _int_option("data_seed", data_seed, 0)
        self.word_limit = self.max_words if word_limit_in_prompt is None else _int_option(
            "word_limit_in_prompt", word_limit_in_prompt, 1)
        make_rows("test", data_seed=self.data_seed, n=None, n_test=self.n_test, word_limit=self.word_limit)  # checks
        if self.n_train is not None:
            make_rows("train", data_seed=self.data_seed, n=self.n_train, n_test=self.n_test, word_limit=self.word_limit)
        self.easy_channels = tuple(f"rich_{t}" for t in self.thresholds)
        self.eval_metrics = ("constraint", "easy_mean", "words", *self.easy_channels)

    # ------------------------------------------------------------------ data

    def load(self, spec: str, split: str, seed: int = 0) -> list[dict]:
        """``builtin`` (the train split for training, the test split for eval), ``builtin:train`` or
        ``builtin:test``. The rows depend on ``data_seed`` only, not on the run's ``seed``."""
        which = {"builtin": "train" if split == "train" else "test", "builtin:train": "train",
                 "builtin:test": "test"}.get(spec)
        if which is None:
            raise ValueError(f"task 'neglect' reads 'builtin', 'builtin:train' or 'builtin:test', got {spec!r}")
        n = self.n_train if which == "train" else None
        return make_rows(which, data_seed=self.data_seed, n=n, n_test=self.n_test, word_limit=self.word_limit)

    # ------------------------------------------------------------------ rewards

    def reward_funcs(self) -> list[Callable[..., list[float | None]]]:
        def channel(name: str) -> Callable[..., list[float | None]]:
            def fn(prompts: Any = None, completions: Sequence[Any] = (), **_: Any) -> list[float | None]:
                return [score_text(completion_text(c), self.max_words, self.thresholds)[name] for c in completions]

            fn.__name__ = fn.__qualname__ = name
            return fn

        return [channel(n) for n in ("constraint", *self.easy_channels, "words")]

    def step_metrics(self, advantages: Any = None, *, data: StepData | None = None) -> dict[str, float]:
        """``neglect/words_mean``, ``neglect/over_limit_frac`` (answers over ``max_words``) and
        ``neglect/truncated_frac`` (answers that end mid-sentence: mostly cut by the token budget)."""
        texts = data.completions if data is not None else None
        if not texts:
            return {}
        words = [count_words(t) for t in texts]
        n = len(texts)
        return {"neglect/words_mean": sum(words) / n,
                "neglect/over_limit_frac": sum(w > self.max_words for w in words) / n,
                "neglect/truncated_frac": sum(not finished(t) for t in texts) / n}

    # ------------------------------------------------------------------ eval

    def score_responses(self, rows: Sequence[dict], responses: Sequence[str | Sequence[str]]) -> dict[str, Any]:
        """:func:`score_responses` with this task's limit and thresholds."""
        return score_responses(rows, responses, max_words=self.max_words, thresholds=self.thresholds)

    def score(self, rows: Sequence[dict], responses: Sequence[str | Sequence[str]], **kw: Any) -> dict[str, Any]:
        """Score given answers (no model): one per row in row order, or a list of sampled answers per row;
        :meth:`score_responses`, the result :meth:`evaluate` returns for the same answers (less its settings)."""
        return self.score_responses(rows, responses)

    def evaluate(self, model: Any, tokenizer: Any, rows: Sequence[dict], *, max_new_tokens: int, batch_size: int,
                 temperature: float = 0.0, samples: int = 1, seed: int = 0) -> dict[str, Any]:
        """Answer every row (greedy, or ``samples`` draws at ``temperature``) and score every answer."""
        samples = _int_option("samples", samples, 1)
        if samples > 1 and not temperature > 0:
            raise ValueError(f"samples: {samples} answers a prompt need temperature > 0")
        prompts = [r["prompt"] for r in rows for _ in range(samples)]
        texts = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                         batch_size=batch_size, seed=seed)
        res = self.score(rows, [texts[i * samples:(i + 1) * samples] for i in range(len(rows))])
        res.update(max_new_tokens=max_new_tokens, temperature=temperature, samples=samples, seed=seed)
        return res

    def describe_eval(self) -> str:
        return (f"constraint: share of answers with at most {self.max_words} words; rich_<t>: share with at least t "
                "distinct content words; easy_mean: their mean; words: mean word count (CIs: Wilson for rates with "
                "one answer a prompt, else Student-t over per-prompt means).")


def make_task(**options: Any) -> NeglectTask:
    """The factory ``rvpo train --task neglect`` calls with ``task_options`` (:class:`NeglectOptions`)."""
    return NeglectTask(**options)


make_task.Options = NeglectOptions  # type: ignore[attr-defined]
make_task.train_defaults = NeglectTask.train_defaults  # type: ignore[attr-defined]


__all__ = ["NeglectOptions", "NeglectTask", "make_task", "score_responses", "score_text", "count_words", "content_words", "TOPICS"]
