"""``rvpo eval task NAME``: any task's Task.evaluate on one model or across a run's checkpoints."""

from __future__ import annotations

import json

from rvpo.cli import main
from rvpo.train.config import build_config
from rvpo.train.run import train


def test_eval_task_one_model_writes_the_tasks_metrics(tmp_path, tiny_llama_dir, capsys):
    out = tmp_path / "runs"
    assert main(["eval", "task", "neglect", "--model", tiny_llama_dir, "--limit", "3", "--max-new-tokens", "4",
                 "--task-option", "n_easy=2", "--out", str(out), "--json"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head["task"] == "neglect" and head["n"] == 3
    assert set(head["metrics"]) >= {"constraint", "easy_mean", "words", "rich_8", "rich_10"}
    assert "rich_12" not in head["metrics"]  # the task option reached the task
    run_dir = next(out.glob("eval-neglect-*"))
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == head["metrics"]
    assert len((run_dir / "examples.jsonl").read_text().splitlines()) == 3


def test_eval_task_sweeps_a_runs_checkpoints(tmp_path, tiny_llama_dir, capsys):
    cfg = build_config(string_overrides={
        "model": tiny_llama_dir, "task": "neglect", "out": str(tmp_path / "train"), "steps": "2", "group_size": "2",
        "prompts_per_step": "1", "max_completion_length": "4", "train_examples": "4", "save_steps": "1",
        "save_total_limit": "0", "lora.r": "2", "lora.alpha": "4", "eval.enabled": "false"})
    run = train(cfg, progress=False).run_dir
    out = tmp_path / "evals"
    assert main(["eval", "task", "neglect", "--checkpoints", str(run), "--limit", "2", "--max-new-tokens", "4",
                 "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(r["label"], r["step"]) for r in res["rows"]] == [("base", 0), ("checkpoint-1", 1), ("checkpoint-2", 2)]
    assert all(r["n"] == 2 and 0.0 <= r["constraint"] <= 1.0 for r in res["rows"])  # the task's target metric
    sweep = next(out.glob("neglect-sweep-*"))
    assert (sweep / "sweep.md").is_file() and (sweep / "base" / "results.json").is_file()


def test_eval_task_bad_input_is_one_line(tmp_path, tiny_llama_dir, capsys):
    assert main(["eval", "task", "neglect", "--task-option", "max_word=3", "--out", str(tmp_path)]) == 2
    assert "unknown option 'max_word' (did you mean 'max_words'?)" in capsys.readouterr().err
    assert main(["eval", "task", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["eval", "task", "neglect", "--model", tiny_llama_dir, "--checkpoints", str(tmp_path),
                 "--out", str(tmp_path)]) == 2
    assert "leave out --model" in capsys.readouterr().err
    assert main(["eval", "task", "neglect", "--data", "builtin:nope", "--out", str(tmp_path)]) == 2
    assert "--data 'builtin:nope'" in capsys.readouterr().err
