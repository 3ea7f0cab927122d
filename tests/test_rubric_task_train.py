"""``rvpo train --task rubric`` end to end on the tiny random Llama with the embedded ``rule`` judge.

Checks the plumbing: variable-M channels through TRL, per-step tag and judge figures in
metrics.jsonl, the HealthBench eval before/after with the same judge, the server stopped at the
end, and a judge server killed in the middle of a step: the step completes, the lost verdicts are
counted abstentions (NaN), never zeros.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time

import httpx
from transformers import TrainerCallback

import rvpo.train.run as run_mod
from rvpo.runs import read_jsonl
from rvpo.train.config import build_config
from test_rubric_task import _gone, healthbench_rows, rar_rows, write_jsonl


def _cfg(tmp_path, model, data, **over):
    base = {"model": model, "task": "rubric", "data": str(data), "out": str(tmp_path / "runs"), "steps": "3",
            "group_size": "2", "prompts_per_step": "2", "max_completion_length": "4", "save_steps": "3",
            "save_total_limit": "0", "lora.r": "2", "lora.alpha": "4", "eval.examples": "2",
            "eval.max_new_tokens": "4", "eval.batch_size": "2", "estimator": "rvpo", "k_schedule": "linear:0.5:2.0",
            "task_options.judge_backend": "rule", "task_options.heldout": "2",
            "task_options.judge_timeout_s": "5", "task_options.judge_start_timeout_s": "60"}
    base.update(over)
    return build_config(string_overrides=base)


def _capture_task(monkeypatch) -> list:
    tasks: list = []
    real = run_mod.get_task

    def get_task(name, options=None):
        tasks.append(real(name, options))
        return tasks[-1]

    monkeypatch.setattr(run_mod, "get_task", get_task)
    return tasks


def test_rubric_task_trains_end_to_end_with_the_rule_judge(tmp_path, tiny_llama_dir, monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", healthbench_rows(6) + rar_rows(2))
    tasks = _capture_task(monkeypatch)
    pids: list[int] = []

    class Pid(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            pids.append(tasks[0].embedded.pid)

    res = run_mod.train(_cfg(tmp_path, tiny_llama_dir, data), callbacks=[Pid()], progress=False, log=lambda m: None)
    run = res.run_dir
    assert pids and _gone(pids[0])  # the embedded judge stopped with the run
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]
    m = tasks[0].reward.max_channels
    held = {r["id"] for r in json.loads((run / "eval_before.json").read_text())["records"]}
    sizes = [len(r["rubrics"]) for r in healthbench_rows(6) if r["prompt_id"] not in held]
    sizes += [len(json.loads(r["rubric"])) for r in rar_rows(2) if r["id"] not in held]
    assert m == max(sizes)  # M: the largest training rubric
    for r in recs:
        assert all(f"rewards/item_{j:02d}/mean" in r for j in range(m))
        for key in ("rubric/satisfied", "rubric/abstained", "rubric/judge_wall_s", "judge/requests",
                    "judge/cache_hits", "judge/abstentions", "judge/latency_p50_s", "judge/latency_p95_s",
                    "judge/tokens_in", "judge/tokens_out", "judge/server_alive", "rvpo/k"):
            assert key in r, key
        assert r["judge/requests"] > 0 and r["judge/abstentions"] == 0 and r["judge/server_alive"] == 1.0
        assert any(k.startswith("rubric/binding/") for k in r)
        # requests of a step = sum of the rubric sizes of its 2 prompts x G=2 completions
        assert r["judge/requests"] == 2 * 2 * r["rubric/items_per_prompt"]
    for name in ("eval_before.json", "eval_after.json"):
        ev = json.loads((run / name).read_text())
        assert ev["n"] == 2 and set(ev["metrics"]) >= {"overall", "satisfied", "abstained"}
        assert ev["metrics"]["abstained"] == 0.0 and ev["records"]
    summary = (run / "summary.md").read_text()
    assert "Judge `rvpo-rule` over the run:" in summary and "satisfied" in summary
    assert json.loads((run / "judge_stats.json").read_text())["totals"]["abstentions"] == 0
    assert tasks[0].embedded is None and tasks[0].judge is None  # session closed
    assert "listening on" in (run / "judge_server.log").read_text()


class KillJudgeMidStep(TrainerCallback):
    """As step ``step + 1`` begins, SIGKILL the judge server once it has answered ``after`` requests of it."""

    def __init__(self, tasks: list, step: int = 1, after: int = 2):
        self.tasks, self.step, self.after = tasks, step, after
        self.killed_at: int | None = None
        self.thread: threading.Thread | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step != self.step:
            return
        emb = self.tasks[0].embedded
        stats = lambda: httpx.get(emb.url + "/stats", timeout=5).json()  # noqa: E731
        start = stats()["completions"]

        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = stats()["completions"]
                if done >= start + self.after:
                    os.kill(emb.pid, signal.SIGKILL)
                    self.killed_at = done - start
                    return
                time.sleep(0.01)

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()


def test_judge_killed_mid_step_gives_counted_abstentions_and_the_step_completes(tmp_path, tiny_llama_dir,
                                                                              monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", rar_rows(6))  # 2-4 items a prompt
    tasks = _capture_task(monkeypatch)
    kill = KillJudgeMidStep(tasks)
    cfg = _cfg(tmp_path, tiny_llama_dir, data, **{
        "eval.enabled": "false", "task_options.judge_concurrency": "2", "task_options.judge_max_retries": "1",
        "task_options.judge_server_args": "[--latency, '0.3']"})
    res = run_mod.train(cfg, callbacks=[kill], progress=False, log=lambda m: None)
    recs = read_jsonl(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3] and res.last_step == 3 and not res.interrupted
    assert kill.killed_at is not None and kill.killed_at >= 2
    one, two, three = recs
    assert one["judge/abstentions"] == 0 and one["judge/server_alive"] == 1.0
    # step 2: some verdicts came back before the kill, the rest abstained, counted by reason
    assert 0 < two["judge/abstentions"] < two["judge/requests"]
    assert two["judge/abstain/connection"] == two["judge/abstentions"]
    assert 0 < two["rubric/abstained"] < 1 and two["judge/server_alive"] == 0.0
    # step 3: the judge is gone, every item abstains (NaN, not 0): channel means are null, the step still runs
    assert three["judge/abstentions"] == three["judge/requests"] > 0 and three["rubric/abstained"] == 1.0
    assert all(v is None or math.isnan(v) for k, v in three.items() if k.startswith("rewards/item_") and
               k.endswith("/mean"))
    assert (res.run_dir / "final").is_dir()
    assert "listening on" in (res.run_dir / "judge_server.log").read_text()
