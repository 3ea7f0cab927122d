"""The experiment's ``screen:``: ``rvpo screen`` once on the base model, before the runs, cached.

The methods are the experiment's own: each one's ``AdvantageSpec`` (a k schedule at its step-0
value; the train config's channel weights). ``<root>/screen.json`` is reused while its ``key`` (the
model, task, data and screen settings, and the methods' advantage specs) matches; otherwise the
screen runs again. See docs/screen.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rvpo.experiment.neglect import SCREEN_FILE, read_screen
from rvpo.experiment.sampling import read_samples, sample_and_score
from rvpo.experiment.spec import ExperimentSpec
from rvpo.runs import atomic_write_text, to_json, write_json
from rvpo.screen import screen
from rvpo.tasks.base import get_task

SAMPLE_KEYS = ("model", "task", "task_options", "data", "precision", "screen")
"""The parts of :func:`screen_key` that decide the samples; methods and channel roles only re-screen them."""


def screen_key(spec: ExperimentSpec) -> dict[str, Any]:
    """What decides the screen's result (compared with the cached file's ``key``)."""
    c = spec.base
    return {"model": c.model, "task": c.task, "task_options": dict(c.task_options), "data": c.data,
            "precision": c.precision, "screen": dict(spec.screen or {}),
            "methods": [[m.label, m.cfg.advantage.to_dict()] for m in spec.methods],
            "constraint_channels": list(spec.constraint_channels), "easy_channels": list(spec.easy_channels)}


def _stored_samples(spec: ExperimentSpec, cached: dict | None, key: dict) -> dict | None:
    """The cached screen's samples in ``sample_fn``'s result shape, when only methods or channel roles
    changed since (adding a method to an experiment re-screens in seconds instead of re-sampling)."""
    path = spec.root / "screen_samples.jsonl"
    old = (cached or {}).get("key") or {}
    if not path.is_file() or any(old.get(k) != key[k] for k in SAMPLE_KEYS):
        return None
    try:
        ids, names, rewards = read_samples(path, int(spec.screen["group_size"]))
    except ValueError:
        return None  # unreadable: sample again
    if names != list(cached.get("channel_names") or names):
        return None
    g = int(spec.screen["group_size"])
    return {"task": get_task(spec.base.task, spec.base.task_options), "names": names,
            "weights": cached.get("weights"), "rows": [{"id": i} for i in ids[::g]], "texts": None,
            "rewards": rewards, "timings": {**cached.get("timings", {}), "reused_samples": True}}


def run_screen(spec: ExperimentSpec, sample_fn: Callable[..., dict] | None = None,
               log: Callable[[str], None] | None = None) -> dict | None:
    """Screen the base model unless ``screen.json`` already holds this screen; returns its payload.

    ``sample_fn`` (tests): :func:`rvpo.experiment.sampling.sample_and_score`'s signature and result."""
    if not spec.screen:
        return None
    key = screen_key(spec)
    cached = read_screen(spec)
    if cached and cached.get("key") == key:
        return cached
    s = spec.screen
    got = _stored_samples(spec, cached, key)
    if got is None:
        sample_fn = sample_fn or sample_and_score
        (log or (lambda _m: None))(f"screen: {s['prompts']} prompts x G={s['group_size']}, {s['max_new_tokens']} "
                                   "tokens on the base model")
        spec.root.mkdir(parents=True, exist_ok=True)
        got = sample_fn(spec.base, s["prompts"], s["group_size"], s["max_new_tokens"], s["temperature"], s["seed"],
                        s["batch_size"], spec.root, log=log or (lambda _m: None))
    task, names = got["task"], got["names"]
    methods = [(m.label, {k: v for k, v in m.cfg.advantage.to_dict().items() if k != "weights"})
               for m in spec.methods]
    res = screen(got["rewards"], s["group_size"], methods, names, spec.constraint_channels,
                 weights=got["weights"], monitor_channels=getattr(task, "monitor_channels", ()) or (),
                 easy_channels=list(spec.easy_channels) or None)
    payload = {**res.to_dict(), "key": key, "timings": got.get("timings", {})}
    write_json(spec.root / SCREEN_FILE, payload)
    atomic_write_text(spec.root / "screen.md", f"# Screen of {spec.name} (base model)\n\n" + res.markdown())
    if got["texts"] is None:  # re-screened stored samples: screen_samples.jsonl is already theirs
        return payload
    ids = [str(r.get("id", i)) for i, r in enumerate(got["rows"]) for _ in range(s["group_size"])]
    atomic_write_text(spec.root / "screen_samples.jsonl", "".join(
        to_json({"prompt_id": pid, "completion": t, "rewards": {n: None if math.isnan(v) else v
                                                                for n, v in zip(names, r, strict=True)}}, indent=None) + "\n"
        for pid, t, r in zip(ids, got["texts"], got["rewards"], strict=True)))
    return payload
