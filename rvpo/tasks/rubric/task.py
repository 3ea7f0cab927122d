"""The rubric task for ``rvpo train``: LLM-judged rubric items, one reward channel each (M varies per prompt).

Data: a HealthBench or Rubrics-as-Rewards file (:func:`rvpo.tasks.rubric.load_rubric_file`; schema
detected per row). ``M = max_channels`` is the largest rubric among the training rows (or the
``max_channels`` option); row ``i``'s rubric fills channels ``item_00 .. item_{M_i-1}`` and every
channel beyond it abstains (``None``, NaN in the advantage core). A channel is 1 for the desirable
outcome (positive item met, pitfall avoided), else 0 (:func:`rvpo.tasks.rubric.scoring.channel_value`).
Held-out evaluation: the HealthBench score (:mod:`rvpo.tasks.rubric.healthbench`) with the same judge.
Unless ``eval.data`` names a file, the held-out rows are a fixed part (``heldout``) of ``data``
itself, chosen by a hash of each example's id (stable across runs and seeds) and left out of training.

The judge: ``judge_url`` (any OpenAI-compatible endpoint; ``judge_model`` its served name; the key
only from the environment variable ``judge_api_key_env``), or, when no URL is given, the embedded
judge that :meth:`RubricTask.session` starts (``rvpo judge serve``, SmolLM2 in JSON mode, or the
``rule`` backend; :mod:`rvpo.judge.session`). Verdicts are cached in
``<run dir>/judge_cache.sqlite`` unless ``judge_cache`` names another file (or ``none``).

Per step (:meth:`RubricTask.step_metrics`): ``rubric/*`` figures by rubric tag (values, share met,
abstentions, binding weight: :func:`rvpo.tasks.rubric.reward.rubric_tag_metrics`), ``rubric/judge_wall_s``
(seconds spent judging the step) and ``judge/*`` (requests, cache hits, abstentions by reason,
latency p50/p95, tokens; :meth:`rvpo.judge.JudgeClient.stats_delta`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvpo.evals.policy import LocalPolicy
from rvpo.judge import JudgeClient, JudgeConfig
from rvpo.judge.backends import judge_model_problem
from rvpo.judge.config import check_http_url
from rvpo.judge.session import EmbeddedJudge
from rvpo.rewards import expand_multichannel
from rvpo.runs import json_safe, write_json
from rvpo.settings import borrow, borrowed_values, check_rules, integer, number, optional
from rvpo.tasks.base import Task, build_options, option, rate
from rvpo.tasks.rubric.alarm import SpreadAlarm
from rvpo.tasks.rubric.data import RubricExample, load_rubric_file, rubric_from_column, rubric_to_json
from rvpo.tasks.rubric.healthbench import run_healthbench
from rvpo.tasks.rubric.reward import RubricReward, parse_verdict_mode

logger = logging.getLogger(__name__)

EMBEDDED_JUDGE_MODEL = "smollm2-135m-instruct"
HELDOUT_SPEC = "heldout"


class _TaskJudge:
    """The judge the reward calls: whatever client the task's open session holds."""

    def __init__(self, task: RubricTask):
        self.task = task

    def judge_many(self, requests):
        return self.task.require_judge().judge_many(requests)


@dataclass(frozen=True)
class RubricOptions:
    """``task_options`` of the rubric task (docs/rubrics.md).

    The ``judge_*`` options that are :class:`rvpo.judge.JudgeConfig` fields are borrowed from it
    (:func:`rvpo.settings.borrow`: its doc and default; only ``judge_timeout_s`` differs, with its
    reason); the others mean something of the task's own (``None``: the embedded judge, the run
    folder's cache, a mode chosen by the verdict)."""

    judge_url: str | None = option(None, "OpenAI-compatible endpoint root (incl. `/v1`); none: the embedded judge")
    judge_model: str | None = option(None, "with `judge_url`: the served model name (required); without: the "
                                     "embedded judge's model, a model folder, a `.gguf` file or "
                                     "`smollm2-135m-instruct`")
    judge_api_key_env: str | None = option(None, "environment variable holding the endpoint's key (checked at "
                                           "start; the key is never logged)")
    judge_cache: str | None = option(None, "verdict cache file (default `<run dir>/judge_cache.sqlite`); `none` "
                                     "disables")
    judge_concurrency: int = borrow(JudgeConfig, "concurrency", note="Also the embedded server's batch size.")
    judge_timeout_s: float = borrow(JudgeConfig, "timeout_s", 120.0, why="the embedded judge is slow on a CPU")
    judge_json_mode: bool | None = option(None, "ask for `response_format: json_object` (default: on for the "
                                          "embedded judge, off for a URL)")
    judge_max_tokens: int = borrow(JudgeConfig, "max_tokens")
    judge_max_retries: int = borrow(JudgeConfig, "max_retries")
    judge_max_reasks: int = borrow(JudgeConfig, "max_reasks")
    judge_rpm: float | None = borrow(JudgeConfig, "requests_per_minute")
    judge_tpm: float | None = borrow(JudgeConfig, "tokens_per_minute")
    judge_backend: str = option("model", "embedded judge: `model` (a language model) or `rule` (a keyword judge, "
                                "for tests)")
    judge_server_model: str = option(EMBEDDED_JUDGE_MODEL, "the embedded judge's model (embedded name or a folder)")
    judge_server_args: tuple[str | int | float, ...] = option((), "extra `rvpo judge serve` arguments (e.g. `[--fault-rate, "
                                                "'0.1']`)")
    judge_start_timeout_s: float = option(600.0, "seconds to wait for the embedded judge to listen")
    heldout: float = option(0.2, "held-out share (or count, when >= 1) of `--data`")
    split_seed: int = option(0, "the hash seed choosing the held-out rows")
    max_channels: int | None = option(None, "M, the channel count (default: the largest training rubric)")
    scale: str = option("unit", "channel values: `unit` (0/1) or `points` (0/|points|)")
    on_error: str = option("raise", "a malformed data row: `raise` (stop with file:line) or `skip` it")
    verdict: str = option("soft", "`soft`: the judge's probability of the desirable outcome where it gives one; "
                          "`hard`: its yes/no; `threshold:<t>`: met iff p_met >= t")
    judge_threshold: float | None = borrow(JudgeConfig, "threshold")
    judge_logprobs: bool | None = option(None, "ask the judge for logprobs (default: unless `verdict: hard`; "
                                         "`false` for a server that rejects them)")
    judge_alarm_steps: int = option(3, "the first steps at which a dead judge is reported on the console")

    def __post_init__(self) -> None:
        """Check each value; a ``TypeError`` names the option."""
        if self.judge_url is not None:
            try:
                check_http_url(self.judge_url, "judge_url")
            except ValueError as e:
                raise TypeError(f"{e} (expected the endpoint root including /v1)") from None
        if self.judge_url and not self.judge_model:
            raise TypeError("judge_model: required with judge_url (the model name the endpoint serves)")
        try:
            parse_verdict_mode(self.verdict)
        except ValueError as e:
            raise TypeError(str(e)) from None
        if self.judge_api_key_env is not None and not os.environ.get(str(self.judge_api_key_env)):
            raise TypeError(f"judge_api_key_env: environment variable {self.judge_api_key_env} is not set")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise TypeError(f"{name}: expected {' or '.join(map(repr, choices))}, got {getattr(self, name)!r}")
        args = self.judge_server_args
        if isinstance(args, str) or not all(isinstance(a, (str, int, float)) for a in args):
            raise TypeError("judge_server_args: expected a list of `rvpo judge serve` arguments")
        check_rules(self, _RULES, label=str)


_CHOICES = {"judge_backend": ("model", "rule"), "scale": ("unit", "points"), "on_error": ("raise", "skip")}
"""Options that take one of a few words."""
_RULES = {"heldout": ("a fraction in [0, 1) or a count >= 1", number(0)[1]), "max_channels": optional(integer(1)),
          "judge_start_timeout_s": ("seconds > 0", number(0, above=True)[1]), "judge_alarm_steps": integer(0)}
"""Range rules of :class:`RubricOptions` (:func:`rvpo.settings.check_rules`)."""


class RubricTask(Task):
    name = "rubric"
    description = "LLM-judged rubrics (HealthBench / Rubrics-as-Rewards), one reward channel per rubric item"
    default_data = ""
    default_eval_data = HELDOUT_SPEC
    columns = ("rubric",)
    eval_metrics = ("overall", "satisfied", "abstained")
    target_metric = "overall"
    metric_prefixes = ("rubric/", "judge/")
    progress_metrics = ("rubric/satisfied",)

    Options = RubricOptions

    def __init__(self, **options: Any):
        o = self.options = build_options(RubricOptions, options)
        judge_server_model = o.judge_server_model
        if not o.judge_url and o.judge_model and o.judge_backend == "model":  # no endpoint: the embedded judge's model
            judge_server_model = check_judge_model(o.judge_model, "judge_model")
        elif judge_server_model != EMBEDDED_JUDGE_MODEL:
            judge_server_model = check_judge_model(judge_server_model, "judge_server_model")
        self.judge_url, self.judge_model, self.judge_api_key_env = o.judge_url, o.judge_model, o.judge_api_key_env
        self.judge_cache = o.judge_cache
        self.judge_backend, self.judge_server_model = o.judge_backend, judge_server_model
        self.judge_server_args = [str(a) for a in o.judge_server_args]
        self.judge_start_timeout_s = float(o.judge_start_timeout_s)
        self.heldout, self.split_seed = o.heldout, int(o.split_seed)
        self.max_channels, self.scale, self.on_error = o.max_channels, o.scale, o.on_error
        self.verdict = str(o.verdict).strip().lower()
        self.judge_alarm_steps = o.judge_alarm_steps
        self._alarm: Any = None
        served = o.judge_model or (judge_server_model if o.judge_backend == "model" else "rvpo-rule")
        try:  # every client setting checked now, before a run folder exists (base_url/cache filled in later)
            self._judge_template = JudgeConfig(
                **borrowed_values(o, JudgeConfig), base_url=o.judge_url, model=served, cache_path=None,
                json_mode=(o.judge_url is None) if o.judge_json_mode is None else bool(o.judge_json_mode),
                logprobs=(self.verdict != "hard") if o.judge_logprobs is None else bool(o.judge_logprobs))
        except ValueError as e:
            raise TypeError(f"judge settings: {e}") from None
        self._train_spec: str | None = None
        self._m: int | None = None
        self._reward: Any = None
        self.judge: Any = None
        self.embedded: Any = None
        self.judge_totals: dict[str, Any] = {}

    # ------------------------------------------------------------------ data

    def _split_key(self, example_id: str) -> int:
        return int(hashlib.sha256(f"{self.split_seed}:{example_id}".encode()).hexdigest()[:12], 16)

    def _split(self, examples: list[RubricExample]) -> tuple[list[RubricExample], list[RubricExample]]:
        """``(train, heldout)``: the ``heldout`` share (or count) with the smallest id hashes is held out."""
        n = len(examples)
        k = int(self.heldout) if self.heldout >= 1 else int(round(self.heldout * n))
        if self.heldout > 0 and n >= 2:
            k = max(1, k)
        k = min(k, n - 1) if n >= 2 else 0
        order = sorted(range(n), key=lambda i: (self._split_key(examples[i].id), i))
        held = set(order[:k])
        return ([ex for i, ex in enumerate(examples) if i not in held],
                [ex for i, ex in enumerate(examples) if i in held])

    @staticmethod
    def to_row(ex: RubricExample) -> dict:
        """A TRL row: the conversation, the rubric (JSON string column) and the example tags."""
        return {"prompt": ex.conversation, "id": ex.id, "rubric": rubric_to_json(ex.items),
                "example_tags": list(ex.example_tags)}

    @staticmethod
    def to_example(row: dict) -> RubricExample:
        return RubricExample(str(row["id"]), list(row["prompt"]), rubric_from_column(row["rubric"]),
                             tuple(row.get("example_tags") or ()))

    def load(self, spec: str, split: str, seed: int = 0) -> list[dict]:
        if split == "eval" and spec == HELDOUT_SPEC:
            if not self._train_spec:
                raise ValueError("eval.data 'heldout' is the held-out part of 'data': set 'data' (or eval.data FILE)")
            _, held = self._split(list(load_rubric_file(self._train_spec, on_error=self.on_error)))
            if not held:
                raise ValueError(f"{self._train_spec}: task_options.heldout={self.heldout} holds out no example; "
                                 "set eval.data FILE, a larger heldout, or eval.enabled false")
            return [self.to_row(ex) for ex in held]
        if not spec:
            raise ValueError("the rubric task needs a data file: --data FILE (HealthBench or Rubrics-as-Rewards "
                             "schema; .jsonl, .json or .parquet)")
        ds = load_rubric_file(spec, on_error=self.on_error)
        if ds.skipped:
            logger.warning("%s", ds.summary())
        if split != "train":
            return [self.to_row(ex) for ex in ds]
        self._train_spec = spec
        train, _ = self._split(list(ds))
        m = max(len(ex.items) for ex in train)
        if self.max_channels is not None and m > self.max_channels:
            raise ValueError(f"{spec}: a training rubric has {m} items but task_options.max_channels="
                             f"{self.max_channels}")
        self._m = self.max_channels or m
        self._reward = None
        return [self.to_row(ex) for ex in train]

    # ------------------------------------------------------------------ rewards

    @property
    def reward(self) -> Any:
        """The task's :class:`~rvpo.tasks.rubric.reward.RubricReward`; one per task, its last batch feeds step_metrics."""
        if self._m is None:
            raise RuntimeError("rubric task: load the training data first (the channel count is its largest rubric)")
        if self._reward is None:
            self._reward = RubricReward(_TaskJudge(self), max_channels=self._m, scale=self.scale, name="item",
                                        digits=2, verdict=self.verdict)
        return self._reward

    def reward_funcs(self) -> list:
        return expand_multichannel(self.reward)

    # ------------------------------------------------------------------ the judge

    def require_judge(self) -> Any:
        if self.judge is None:
            raise RuntimeError("rubric task: no judge; use the task inside `with task.session(run_dir):`")
        return self.judge

    def judge_config(self, base_url: str, run_dir: Path) -> Any:
        """The client config: the template from the options, the URL, the cache file and the key (env only)."""
        import dataclasses

        if self.judge_cache is None:
            cache = str(Path(run_dir) / "judge_cache.sqlite")
        elif str(self.judge_cache).lower() in ("none", "off", ""):
            cache = ""
        else:
            cache = str(Path(self.judge_cache).expanduser())
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
        key = os.environ.get(self.judge_api_key_env) if self.judge_api_key_env else None
        return dataclasses.replace(self._judge_template, base_url=base_url, cache_path=cache, api_key=key)

    @contextlib.contextmanager
    def session(self, run_dir: Path) -> Iterator[RubricTask]:
        """Open the judge for the run: start the embedded server if no ``judge_url``; stop it on exit, always."""
        run_dir = Path(run_dir)
        embedded = None
        try:
            url = self.judge_url
            if not url:
                args = ["--backend", self.judge_backend,
                        "--served-name", self._judge_template.model, *self.judge_server_args]
                if self.judge_backend == "model":
                    args += ["--model", self.judge_server_model,
                             "--max-batch", str(self._judge_template.concurrency)]
                embedded = self.embedded = EmbeddedJudge(args, run_dir / "judge_server.log",
                                                         self.judge_start_timeout_s)
                logger.info("starting the embedded judge (%s %s)", self.judge_backend, self.judge_server_model)
                url = embedded.start()
            self.judge = JudgeClient(self.judge_config(url, run_dir))
            self.judge.stats_delta()  # per-step figures start here
            yield self
        finally:
            try:
                if self.judge is not None:
                    self.judge_totals = json_safe(self.judge.stats.as_dict())
                    with contextlib.suppress(OSError):
                        write_json(run_dir / "judge_stats.json",
                                   {"judge": self.judge.config.as_dict(), "totals": self.judge_totals,
                                    "embedded": embedded is not None})
                    self.judge.close()
            finally:
                self.judge = None
                if embedded is not None:
                    embedded.stop()
                self.embedded = None

    # ------------------------------------------------------------------ per step

    def step_metrics(self, advantages: Any = None, *, data: Any = None) -> dict[str, float]:
        out: dict[str, float] = {}
        if advantages is None and data is not None:
            advantages = data.advantages
        r = self._reward
        if r is not None and r.last_values:
            binding = None
            if advantages is not None:
                b = advantages.binding  # (N_global, M), channels in item order
                if tuple(b.shape) == (len(r.last_values), r.max_channels):
                    binding = b
            out.update(r.tag_metrics(binding=binding, prefix="rubric/"))
            out["rubric/items_per_prompt"] = sum(map(len, r.last_rubrics)) / len(r.last_rubrics)
            out["rubric/judge_wall_s"] = round(r.stats.last_judge_s, 3)
            out["rubric/soft_frac"] = (r.stats.last_soft / r.stats.last_judged) if r.stats.last_judged else math.nan
            out.update(self._spread(r, data))
        if self.judge is not None:
            out.update(self.judge.stats_delta("judge/"))
        if self.embedded is not None:
            out["judge/server_alive"] = float(self.embedded.alive())
        return out

    def _spread(self, r: Any, data: Any) -> dict[str, float]:
        """The dead-judge alarm's figures (:class:`rvpo.tasks.rubric.alarm.SpreadAlarm`) for the last batch."""
        g = int(getattr(data, "group_size", 0) or 0) if data is not None else 0
        if g < 1 or len(r.last_values) % g:
            return {}
        if self._alarm is None:
            self._alarm = SpreadAlarm(steps=self.judge_alarm_steps, verdict=self.verdict)
        return self._alarm.observe(r.last_values, g, hard=r.last_hard, probs=r.last_p,
                                   step=int(getattr(data, "step", 0) or 0))

    @property
    def judge_finding(self) -> str | None:
        """The dead-judge alarm's sentence ("the judge cannot tell these completions apart: ..."), or None."""
        return None if self._alarm is None else self._alarm.finding

    def findings(self) -> list[str]:
        return [self.judge_finding] if self.judge_finding else []

    # ------------------------------------------------------------------ held-out eval

    def evaluate(self, model: Any, tokenizer: Any, rows: Sequence[dict], *, max_new_tokens: int,
                 batch_size: int) -> dict[str, Any]:
        """Greedy answers, every item judged (same judge), HealthBench scores; see the module docstring."""
        policy = LocalPolicy(model, tokenizer=tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return self._grade(rows, policy)

    def score(self, rows: Sequence[dict], responses: Sequence[str], **kw: Any) -> dict[str, Any]:
        """Judge given answers (one per row, in order) against the rows' rubrics: :meth:`evaluate`'s result for
        the same answers. Needs the judge: call it inside ``with task.session(run_dir):``."""
        if len(rows) != len(responses):
            raise ValueError(f"{len(rows)} rows but {len(responses)} responses")
        return self._grade(rows, _GivenAnswers(responses))

    def _grade(self, rows: Sequence[dict], policy: Any) -> dict[str, Any]:
        """``policy``'s answers to ``rows``, every item judged by the session's judge."""
        judge = self.require_judge()
        examples = [self.to_example(r) for r in rows]
        since = judge.stats.snapshot()
        res = run_healthbench(examples, policy, judge)
        judged = judge.stats.delta(since)
        judge.stats_delta()  # the next training step's figures leave the eval's requests out
        return healthbench_result(res, judged)

    def describe_eval(self) -> str:
        text = ("overall: HealthBench score (points of met items, pitfalls negative, over positive points; clipped "
                "mean, CI +-1.96 bootstrap SE); satisfied: share of judged items with the desirable outcome (Wilson "
                "CI over items); abstained: share of items the judge could not grade (left out of the scores).")
        t = self.judge_totals or (json_safe(self.judge.stats.as_dict()) if self.judge is not None else {})
        if t:
            fails = ", ".join(f"{k} {v}" for k, v in (t.get("failures") or {}).items()) or "none"
            text += (f" Judge `{self._judge_template.model}` over the run: {t['requests']} requests, "
                     f"{t['cache_hits']} cache hits, {t['calls']} HTTP calls, {t['abstentions']} abstentions "
                     f"({fails}), tokens in/out {t['tokens_in']}/{t['tokens_out']}, latency p50/p95 "
                     f"{_s(t.get('latency_p50_s'))}/{_s(t.get('latency_p95_s'))}.")
        if self.judge_finding:
            text += f" **Warning: {self.judge_finding}**"
        return text


class _GivenAnswers:
    """A policy (``answer(conversations)``) that returns answers already written, in order."""

    def __init__(self, answers: Sequence[str]):
        self.answers = [str(a) for a in answers]

    def answer(self, conversations: Sequence[Any]) -> list[str]:
        return list(self.answers)


def check_judge_model(model: str, field: str) -> str:
    """``model`` if it is the embedded judge's name, a model folder or a ``.gguf`` file; else ``TypeError``
    naming ``field`` and the path (checked before any run folder exists)."""
    problem = judge_model_problem(model)
    if problem:
        raise TypeError(f"{field}: {problem}")
    return str(model)


def _s(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def healthbench_result(res: Any, judged: dict[str, Any] | None = None) -> dict[str, Any]:
    """A :class:`~rvpo.tasks.rubric.healthbench.HealthBenchResult` as the task's eval contract (strict JSON).

    ``metrics``: ``overall``, ``satisfied``, ``abstained`` and ``axis/<name>``; ``ci95`` for each.
    """
    s = res.scores
    met = judged_n = 0
    for rec in res.records:
        for it in rec["items"]:
            if it["criteria_met"] is None:
                continue
            judged_n += 1
            met += (not it["criteria_met"]) if it["points"] < 0 else bool(it["criteria_met"])
    sat, abst = rate(met, judged_n), rate(s.n_abstained, s.n_items)

    def cm(c) -> tuple[Any, Any]:
        if c.n == 0 or not math.isfinite(c.mean):
            return None, None
        se = c.bootstrap_se if math.isfinite(c.bootstrap_se) else 0.0
        return c.mean, [c.mean - 1.96 * se, c.mean + 1.96 * se]

    metrics: dict[str, Any] = {}
    ci: dict[str, Any] = {}
    metrics["overall"], ci["overall"] = cm(s.overall)
    metrics["satisfied"], ci["satisfied"] = (sat.value, [sat.lo, sat.hi]) if judged_n else (None, None)
    metrics["abstained"], ci["abstained"] = (abst.value, [abst.lo, abst.hi]) if s.n_items else (None, None)
    for axis, c in s.by_axis.items():
        metrics[f"axis/{axis}"], ci[f"axis/{axis}"] = cm(c)
    out = {"n": s.n_examples, "metrics": metrics, "ci95": ci, "status": "failed" if res.failure else "ok",
           "failure": res.failure, "scores": s.as_dict(), "n_items": s.n_items, "n_abstained": s.n_abstained,
           "answer_s": round(res.answer_s, 3), "judge_s": round(res.judge_s, 3),
           "judge": judged or {}, "records": res.records}
    return json_safe(json.loads(json.dumps(out, default=str, allow_nan=True)))


def make_task(**options: Any) -> RubricTask:
    """The rubric task; ``options`` (``task_options``): :class:`RubricOptions`."""
    return RubricTask(**options)


make_task.Options = RubricOptions  # type: ignore[attr-defined]
