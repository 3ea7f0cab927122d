"""The rubric task (``rvpo train --task rubric``) without a model: data, split, channels, options, judge session.

Fixtures are small files written here in both schemas (HealthBench, Rubrics-as-Rewards); the
embedded judge runs the ``rule`` backend (no model), as a real ``rvpo judge serve`` subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rvpo.tasks.base import get_task


def healthbench_rows(n: int = 5) -> list[dict]:
    """HealthBench-schema rows with 1..3 items (a pitfall in each), axes and themes."""
    rows = []
    for i in range(n):
        items = [{"criterion": f'Advises "fluids" for case {i}.', "points": 5, "tags": ["axis:completeness"]},
                 {"criterion": f'Recommends "antibiotics" for case {i}.', "points": -3, "tags": ["axis:accuracy"]},
                 {"criterion": f'Asks about the "temperature" in case {i}.', "points": 2,
                  "tags": ["axis:context_awareness"]}][: 1 + i % 3]
        rows.append({"prompt": [{"role": "user", "content": f"Case {i}: my child has a fever. What should I do?"}],
                     "rubrics": items, "example_tags": ["theme:emergency"], "prompt_id": f"hb-{i}"})
    return rows


def rar_rows(n: int = 3) -> list[dict]:
    """Rubrics-as-Rewards rows (question + rubric with title/description/weight, one pitfall)."""
    return [{"question": f"Q{i}: how should a sprained ankle be treated?", "id": f"rar-{i}",
             "rubric": json.dumps([{"title": "Rest", "description": 'mentions "rest"', "weight": 5},
                                   {"title": "Ice", "description": 'mentions "ice"', "weight": 3},
                                   {"title": "Surgery", "description": 'recommends "surgery"', "weight": -2},
                                   {"title": "Follow-up", "description": 'suggests "follow-up"', "weight": 1}][: 2 + i % 3])}
            for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class FakeJudge:
    def __init__(self, met: bool | None = True):
        self.met, self.calls = met, []

    def judge_many(self, requests):
        from rvpo.judge.parse import Verdict

        self.calls.append(len(requests))
        return [None if self.met is None else Verdict(criteria_met=self.met, explanation="") for _ in requests]


def test_loads_both_schemas_pads_channels_and_holds_out_a_stable_part(tmp_path):
    data = write_jsonl(tmp_path / "mixed.jsonl", healthbench_rows(5) + rar_rows(3))
    task = get_task("rubric", {"heldout": 2})
    train = task.load(str(data), "train")
    held = task.load("heldout", "eval")
    assert len(train) == 6 and len(held) == 2
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    assert get_task("rubric", {"heldout": 2, "split_seed": 0}).load(str(data), "train") == train  # stable
    m = max(len(json.loads(r["rubric"])) for r in train)
    fns = task.reward_funcs()
    assert [f.__name__ for f in fns] == [f"item_{j:02d}" for j in range(m)] == task.channel_names()

    task.judge = FakeJudge(met=True)
    prompts = [r["prompt"] for r in train]
    completions = [[{"role": "assistant", "content": "rest and fluids"}] for _ in train]
    cols = [f(prompts, completions, rubric=[r["rubric"] for r in train]) for f in fns]  # (M, N)
    assert task.judge.calls == [sum(len(json.loads(r["rubric"])) for r in train)]  # one batch for all channels
    for i, r in enumerate(train):
        items = json.loads(r["rubric"])
        for j in range(m):
            if j >= len(items):
                assert cols[j][i] is None  # padding abstains
            else:  # the sign defined once: met pitfall -> 0, met positive -> 1
                assert cols[j][i] == (0.0 if items[j]["points"] < 0 else 1.0)
    rar = [r for r in train if r["id"].startswith("rar-")]
    assert rar and any("rar:pitfall" in it["tags"] for r in rar for it in json.loads(r["rubric"]))

    task.judge = FakeJudge(met=None)  # judge failures abstain, never 0
    cols = [f(prompts, [[{"role": "assistant", "content": "x"}]] * len(train), rubric=[r["rubric"] for r in train])
            for f in fns]
    assert all(v is None for col in cols for v in col)


def test_step_metrics_by_tag_with_binding(tmp_path):
    import torch

    from rvpo import compute_advantages

    data = write_jsonl(tmp_path / "hb.jsonl", healthbench_rows(3))
    task = get_task("rubric", {"heldout": 0})
    rows = task.load(str(data), "train")  # sizes 1, 2, 3 -> M = 3
    task.judge = FakeJudge(met=True)
    g = 2
    batch = [r for r in rows for _ in range(g)]
    values = task.reward([r["prompt"] for r in batch], ["fluids"] * len(batch), rubric=[r["rubric"] for r in batch])
    rewards = torch.tensor([[float("nan") if v is None else v for v in row] for row in values])
    rewards[1, 0] = 0.0  # some spread
    out = compute_advantages(rewards, group_size=g, estimator="rvpo", k=1.0)
    task.judge = None
    m = task.step_metrics(out)
    for key in ("rubric/satisfied", "rubric/abstained", "rubric/items_per_prompt", "rubric/judge_wall_s",
                "rubric/binding/axis:completeness", "rubric/value/axis:accuracy", "rubric/satisfied/sign:pitfall",
                "rubric/items/axis:context_awareness"):
        assert key in m, key
    assert m["rubric/items_per_prompt"] == pytest.approx(2.0)
    assert m["rubric/satisfied/sign:pitfall"] == 0.0 and m["rubric/satisfied/sign:positive"] == 1.0
    # binding mass over tags of a row sums to 1 (rvpo), averaged over rows
    mass = sum(m[f"rubric/binding/{t}"] for t in ("sign:positive", "sign:pitfall"))
    assert mass == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("options, match", [
    ({"judge_url": "ftp://x"}, "judge_url"),
    ({"judge_url": "http://127.0.0.1:9/v1"}, "judge_model"),
    ({"judge_api_key_env": "RVPO_TEST_UNSET_KEY_VAR"}, "RVPO_TEST_UNSET_KEY_VAR is not set"),
    ({"judge_backend": "echo"}, "judge_backend"),
    ({"judge_concurrency": 0}, "concurrency"),
    ({"heldout": -1}, "heldout"),
    ({"nope": 1}, "nope"),
])
def test_bad_options_name_the_field(options, match):
    os.environ.pop("RVPO_TEST_UNSET_KEY_VAR", None)
    with pytest.raises(ValueError, match=match):
        get_task("rubric", options)


def test_data_errors_are_clear(tmp_path):
    task = get_task("rubric", {})
    with pytest.raises(ValueError, match="--data FILE"):
        task.load("", "train")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "rubrics": []}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        task.load(str(bad), "train")
    with pytest.raises(RuntimeError, match="load the training data"):
        get_task("rubric", {}).reward_funcs()


def test_api_key_comes_only_from_the_named_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-SECRET123")
    monkeypatch.setenv("RVPO_JUDGE_API_KEY", "sk-other")
    monkeypatch.setenv("RVPO_JUDGE_BASE_URL", "http://127.0.0.1:1/v1")  # the environment does not pick the judge
    task = get_task("rubric", {"judge_url": "http://127.0.0.1:9/v1", "judge_model": "m",
                               "judge_api_key_env": "MY_JUDGE_KEY", "judge_cache": "none"})
    cfg = task.judge_config("http://127.0.0.1:9/v1", tmp_path)
    assert cfg.api_key == "sk-test-SECRET123" and cfg.base_url == "http://127.0.0.1:9/v1" and not cfg.cache_path
    assert "SECRET" not in repr(cfg)
    assert get_task("rubric", {}).judge_config("http://h/v1", tmp_path).api_key is None
    assert get_task("rubric", {}).judge_config("http://h/v1", tmp_path).cache_path == str(tmp_path / "judge_cache.sqlite")


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie child of ours counts as gone once reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


def test_session_starts_the_embedded_judge_and_stops_it_on_an_exception(tmp_path):
    from rvpo.judge import JudgeRequest

    task = get_task("rubric", {"judge_backend": "rule", "judge_start_timeout_s": 60})
    with pytest.raises(RuntimeError, match="boom"):
        with task.session(tmp_path) as t:
            pid = t.embedded.pid
            assert t.embedded.url.startswith("http://127.0.0.1:")
            conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "drink fluids"}]
            v = t.judge.judge_many([JudgeRequest(conv, 'Mentions "fluids".', 5)])
            assert v[0] is not None and v[0].criteria_met is True
            assert t.step_metrics()["judge/requests"] == 1
            raise RuntimeError("boom")
    assert _gone(pid) and task.embedded is None and task.judge is None
    assert (tmp_path / "judge_server.log").is_file() and (tmp_path / "judge_cache.sqlite").is_file()
    assert json.loads((tmp_path / "judge_stats.json").read_text())["totals"]["requests"] == 1


def test_embedded_judge_dies_with_a_killed_parent(tmp_path):
    """SIGKILL of the training process (no cleanup code runs) still ends the judge server."""
    script = textwrap.dedent(f"""
        import sys, time
        from rvpo.tasks.base import get_task
        task = get_task("rubric", {{"judge_backend": "rule"}})
        with task.session({str(tmp_path)!r}):
            print(task.embedded.pid, flush=True)
            time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone(child), "the judge server outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
