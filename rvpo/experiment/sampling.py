"""Samples for the screen: G completions a prompt from a model, scored by the task's rewards, or read back.

:func:`sample_and_score` loads the task, data and model exactly as ``rvpo train`` does, samples and
scores; :func:`read_samples` reads a samples JSONL (``rvpo screen --samples``, the experiment's stored
``screen_samples.jsonl``). ``rvpo screen`` and the experiment's ``screen:`` step both use them.

Shapes: ``N = prompts x G`` completions, ``M`` reward channels.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvpo.model.generation import generate
from rvpo.model.loading import load_model_and_tokenizer, resolve_model
from rvpo.model.policy import load_policy
from rvpo.runs import iter_json_records
from rvpo.tasks.base import resolve_channel_weights
from rvpo.train.run import load_data, load_task, model_dtype, resolve_precision, reward_funcs


def read_samples(path: str | Path, group_size: int) -> tuple[list[str], list[str], list[list[float]]]:
    """``(prompt_ids, channel_names, rewards (N, M))`` from a samples JSONL; groups must be contiguous
    runs of ``group_size`` lines with one prompt id. Raises ``ValueError`` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--samples {path}: no such file")
    names: list[str] | None = None
    ids: list[str] = []
    rows: list[list[float]] = []
    for rec in iter_json_records(path, where=f"--samples {path}"):
        v = rec.value
        rw = v.get("rewards")
        if "prompt_id" not in v or not isinstance(rw, dict) or not rw:
            raise ValueError(f"{rec.where}: expected {{'prompt_id': ..., 'rewards': {{channel: value}}}}")
        if names is None:
            names = [str(k) for k in rw]
        elif list(rw) != names:
            raise ValueError(f"{rec.where}: channels {list(rw)} differ from the first line's {names}")
        row = []
        for ch in names:
            x = rw[ch]
            if x is None:
                row.append(math.nan)
            elif isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                row.append(float(x))
            else:
                raise ValueError(f"{rec.where}: rewards.{ch}: expected a finite number or null, got {x!r}")
        if len(ids) % group_size and str(v["prompt_id"]) != ids[-1]:
            raise ValueError(f"{rec.where}: prompt_id {v['prompt_id']!r} starts before the group of {ids[-1]!r} has "
                             f"{group_size} samples (groups must be {group_size} consecutive lines)")
        if len(ids) % group_size == 0 and str(v["prompt_id"]) in ids:
            raise ValueError(f"{rec.where}: prompt_id {v['prompt_id']!r} appears in two groups")
        ids.append(str(v["prompt_id"]))
        rows.append(row)
    if not rows:
        raise ValueError(f"--samples {path}: no samples")
    if len(rows) % group_size:
        raise ValueError(f"--samples {path}: {len(rows)} samples is not a multiple of --group-size {group_size}")
    return ids, names or [], rows


def score(task: Any, fns: Sequence[Any], rows: Sequence[dict], texts: Sequence[str], group_size: int) -> list[list[float]]:
    """``(N, M)`` rewards of ``texts`` (G consecutive per row) under TRL's contract (None -> NaN)."""
    reps = [row for row in rows for _ in range(group_size)]
    prompts = [row["prompt"] for row in reps]
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    cols = {c: [row.get(c) for row in reps] for c in getattr(task, "columns", ())}
    out = [[math.nan] * len(fns) for _ in texts]
    for j, fn in enumerate(fns):
        vals = list(fn(prompts=prompts, completions=completions, **cols))
        if len(vals) != len(texts):
            raise ValueError(f"reward {fn.__name__}: returned {len(vals)} values for {len(texts)} completions")
        for i, v in enumerate(vals):
            out[i][j] = math.nan if v is None else float(v)
    return out


def sample_and_score(cfg: Any, prompts: int, group_size: int, max_new_tokens: int, temperature: float, seed: int,
                     batch_size: int, out_dir: Path | None, log=print) -> dict:
    """Load the task, data and model as ``rvpo train`` does; sample and score. Returns a dict with
    ``task, names, weights, rows, texts, rewards, timings``."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    task = load_task(cfg)
    precision = resolve_precision(cfg)
    rows, _ = load_data(cfg, task)
    rows = rows[:prompts]
    fns = reward_funcs(cfg, task)
    names = [fn.__name__ for fn in fns]
    folder = Path(str(cfg.model)).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():  # a LoRA folder (a run's warmstart/) or a run
        model, tok = load_policy(folder, merge=True, precision=precision.name)
    else:
        model, tok = load_model_and_tokenizer(resolve_model(cfg.model), dtype=model_dtype(cfg, precision))
    timings["load_s"] = round(time.perf_counter() - t, 1)
    log(f"sampling {len(rows)} prompts x G={group_size}, {max_new_tokens} tokens, temperature {temperature} "
        f"({precision.name})")
    t = time.perf_counter()
    texts = generate(model, tok, [row["prompt"] for row in rows for _ in range(group_size)],
                     max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size, seed=seed)
    timings["generate_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    with (task.session(out_dir) if out_dir is not None else contextlib.nullcontext()):
        rewards = score(task, fns, rows, texts, group_size)
    timings["score_s"] = round(time.perf_counter() - t, 1)
    return {"task": task, "names": names, "weights": resolve_channel_weights(task, names, cfg.advantage.weights),
            "rows": rows, "texts": texts, "rewards": rewards, "timings": timings, "precision": precision.name}
