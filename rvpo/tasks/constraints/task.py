"""The constraints task for ``rvpo train``: IFEval-style verifiable instructions, variable M.

Rows: a short request on a topic plus ``min_instructions..max_instructions`` instructions
(generated offline, :mod:`rvpo.tasks.constraints.generate`). Channels: one binary channel per
instruction family (its type id, e.g. ``no_comma``; ``None`` on rows without it) and the
continuous ``quality`` channel (:mod:`rvpo.tasks.constraints.rewards`). No gold answers: the
default run is RL-only. Held-out metrics: IFEval's four numbers, the worst type, quality
(:mod:`rvpo.tasks.constraints.eval`).

Data specs: ``builtin`` / ``builtin:train`` (generated train split), ``builtin:test`` (held-out,
disjoint topics), ``ifeval:PATH`` or a ``.jsonl`` path (IFEval's ``input_data.jsonl`` rows, or
task rows with an ``instructions`` column).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvpo.model.generation import generate
from rvpo.runs import iter_json_records
from rvpo.tasks.base import Task, build_options, option
from rvpo.tasks.constraints.eval import HEADLINE, ifeval_row, score_responses
from rvpo.tasks.constraints.generate import DEFAULT_FAMILIES, FAMILIES, generate_rows
from rvpo.tasks.constraints.instructions import LANGDETECT_HINT, NEEDS_LANGDETECT
from rvpo.tasks.constraints.rewards import make_instruction_reward, quality_reward

IFEVAL_DEFAULT = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ifeval" / "input_data.jsonl"


def load_jsonl_rows(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (or a JSON array): IFEval rows (``instruction_id_list``) or task rows
    (``instructions``), read by :func:`rvpo.runs.iter_json_records`.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file and line.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")

    rows = []
    for rec in iter_json_records(p):
        i, obj, where = rec.line, rec.value, rec.where
        if "instruction_id_list" in obj:
            rows.append(ifeval_row(obj, where))
        elif "instructions" in obj and "prompt" in obj:
            row = dict(obj)
            if isinstance(row["prompt"], str):
                row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            row.setdefault("id", f"{p.name}:{i}")
            if not isinstance(row["instructions"], str):
                row["instructions"] = json.dumps(row["instructions"], sort_keys=True)
            rows.append(row)
        else:
            raise ValueError(f"{where}: expected an IFEval row (instruction_id_list) or a task row (instructions)")
    return rows


@dataclass(frozen=True)
class ConstraintsOptions:
    """``task_options`` of the constraints task (docs/constraints.md)."""

    n_train: int = option(512, "generated prompts in the training split")
    n_test: int = option(128, "generated prompts in the held-out split")
    min_instructions: int = option(1, "fewest instructions a prompt (1 <= min <= max <= 6)")
    max_instructions: int = option(4, "most instructions a prompt, drawn uniformly from min..max")
    families: tuple[str, ...] | None = option(None, "instruction types the generator draws (default the 14 in "
                                                    "docs/constraints.md; any of FAMILIES)")
    quality: bool = option(True, "add the `quality` channel")
    loose_reward: bool = option(False, "reward with IFEval's loose check instead of the strict one")
    data_seed: int = option(0, "generator seed (the run's seed does not change the prompts)")


class ConstraintsTask(Task):
    name = "constraints"
    description = "IFEval-style verifiable instructions (1-6 per prompt, one channel each) plus a quality channel"
    default_data = "builtin"
    default_eval_data = "builtin:test"
    columns = ("instructions", "topic_words")
    eval_metrics = HEADLINE
    target_metric = "prompt_strict"

    Options = ConstraintsOptions

    def __init__(self, **options: Any):
        o = self.options = build_options(ConstraintsOptions, options)
        n_train, n_test, min_instructions, max_instructions = o.n_train, o.n_test, o.min_instructions, o.max_instructions
        families, quality, loose_reward, data_seed = o.families, o.quality, o.loose_reward, o.data_seed
        fams = tuple(families or DEFAULT_FAMILIES)
        unknown = [f for f in fams if f not in FAMILIES]
        if unknown:
            raise TypeError(f"families: unknown {unknown}; known: {', '.join(FAMILIES)}")
        if n_train < 1 or n_test < 1:
            raise TypeError(f"n_train and n_test: expected >= 1, got {n_train}, {n_test}")
        if not 1 <= min_instructions <= max_instructions <= min(6, len(fams)):
            raise TypeError(f"min_instructions/max_instructions: need 1 <= {min_instructions} <= {max_instructions} "
                            f"<= min(6, {len(fams)} families)")
        needs = sorted(set(fams) & NEEDS_LANGDETECT)
        if needs and importlib.util.find_spec("langdetect") is None:
            raise TypeError(f"families: {', '.join(needs)} need langdetect (as IFEval's checker): {LANGDETECT_HINT}")
        self.n_train, self.n_test, self.families = n_train, n_test, fams
        self.min_instructions, self.max_instructions = min_instructions, max_instructions
        self.quality, self.loose_reward, self.data_seed = quality, loose_reward, data_seed

    def load(self, spec: str, split: str, seed: int = 0) -> list[dict]:
        spec = spec or (self.default_data if split == "train" else self.default_eval_data)
        if spec in ("builtin", "builtin:train", "builtin:test"):
            which = "test" if spec == "builtin:test" else "train"
            n = self.n_test if which == "test" else self.n_train
            return generate_rows(which, n, seed=self.data_seed, min_instructions=self.min_instructions,
                                 max_instructions=self.max_instructions, families=self.families)
        path = spec.removeprefix("ifeval:")
        if spec == "ifeval":
            path = str(IFEVAL_DEFAULT)
        return load_jsonl_rows(path)

    def reward_funcs(self) -> list:
        fns = [make_instruction_reward(f, loose=self.loose_reward) for f in self.families]
        return fns + ([quality_reward] if self.quality else [])

    def evaluate(self, model: Any, tokenizer: Any, rows: Sequence[dict], *, max_new_tokens: int,
                 batch_size: int) -> dict[str, Any]:
        responses = generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
                             temperature=0.0, batch_size=batch_size)
        return self.score(rows, responses)

    def score(self, rows: Sequence[dict], responses: Sequence[str], **kw: Any) -> dict[str, Any]:
        """Score given answers (one per row, in order; no model): :func:`score_responses`."""
        return score_responses(rows, responses)

    def describe_eval(self) -> str:
        return ("prompt_*: share of prompts with all instructions followed; inst_*: share of instructions "
                "followed (strict: the response as is; loose: IFEval's 8 variants); worst_type: lowest per-type "
                "strict rate; quality: richness and topic coverage in [0, 1]. Greedy decoding.")


def make_task(**options: Any) -> ConstraintsTask:
    """The constraints task; ``options``: :class:`ConstraintsOptions`."""
    return ConstraintsTask(**options)


make_task.Options = ConstraintsOptions  # type: ignore[attr-defined]
