"""``rvpo train`` end to end on a tiny random Llama: run dir layout, Ctrl-C, resume without repeats.

The model is a 2-layer, hidden-64 LlamaForCausalLM with SmolLM2's tokenizer (``tiny_llama_dir``),
so a step takes well under a second; its completions are noise, which is fine here: these tests
check the plumbing (files, steps, checkpoints), not learning (see benchmarks/learning_toolcall.py).
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml
from transformers import TrainerCallback

from rvpo.runs import append_jsonl, read_jsonl
from rvpo.train.config import ConfigError, build_config
from rvpo.train.run import INTERRUPTED, load_resume_config, train


def _cfg(tmp_path, model, **over):
    base = {"model": model, "out": str(tmp_path / "runs"), "steps": "3", "group_size": "2",
            "prompts_per_step": "1", "max_completion_length": "4", "train_examples": "8", "save_steps": "1",
            "save_total_limit": "0", "lora.r": "2", "lora.alpha": "4", "eval.examples": "2",
            "eval.max_new_tokens": "4", "eval.batch_size": "2", "estimator": "rvpo", "k_schedule": "linear:0.5:2.0",
            "warmstart.steps": "2", "warmstart.batch_size": "2"}
    base.update(over)
    return build_config(string_overrides=base)


class SigintAt(TrainerCallback):
    """Send ourselves SIGINT ``times`` times (as Ctrl-C would) once step ``step`` is done and logged,
    i.e. as step ``step + 1`` begins (a real Ctrl-C mostly lands mid-step: generation dominates)."""

    def __init__(self, step: int, times: int = 1):
        self.step, self.times = step, times

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def _steps(run_dir):
    return [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]


def test_ctrl_c_then_resume_keeps_every_step_once(tmp_path, tiny_llama_dir, capsys):
    from rvpo.cli import main

    cfg = _cfg(tmp_path, tiny_llama_dir)
    # Ctrl-C during step 2: step 2 finishes, is checkpointed, and training stops (of 3 steps)
    res = train(cfg, callbacks=[SigintAt(1)], progress=False, log=lambda m: None)
    run = res.run_dir
    assert res.interrupted and (run / INTERRUPTED).is_file()
    stopped = res.last_step
    assert stopped == 2
    assert (run / "checkpoints" / f"checkpoint-{stopped}" / "trainer_state.json").is_file()
    assert _steps(run) == list(range(1, stopped + 1))
    assert json.loads((run / INTERRUPTED).read_text())["step"] == stopped
    assert not (run / "final").exists() and not (run / "eval_after.json").exists()
    assert "interrupted" in (run / "summary.md").read_text()

    # a crash after logging a step but before its checkpoint: that line must not survive the resume
    append_jsonl(run / "metrics.jsonl", {"step": stopped + 1, "fake": True})
    assert load_resume_config(run) == cfg
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 0
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert not any(r.get("fake") for r in recs)
    assert all("rewards/format/mean" in r and "rewards/correctness/mean" in r and "rvpo/k" in r for r in recs)
    ks = [r["rvpo/k"] for r in recs]
    assert ks == sorted(ks) and ks[0] >= 0.5 and ks[-1] <= 2.0  # linear schedule, rising
    assert not (run / INTERRUPTED).exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 4

    # run dir layout
    assert (run / "final" / "adapter_config.json").is_file()  # LoRA adapter
    before = json.loads((run / "eval_before.json").read_text())
    after = json.loads((run / "eval_after.json").read_text())
    assert before["n"] == after["n"] == 2 and len(after["records"]) == 2
    assert {p.name for p in (run / "plots").glob("*.png")} >= {"reward_format.png", "reward_correctness.png",
                                                              "k_binding.png"}
    summary = (run / "summary.md").read_text()
    assert "completed 4 of 4 steps" in summary and "| before | 2 |" in summary and "| after RL | 2 |" in summary
    # the warm start ran once (before the interruption) and was reused, not redone, by the resume
    assert (run / "warmstart" / "adapter_config.json").is_file() and "| after warm start (SFT) | 2 |" in summary
    assert not (run / "sft-tmp").exists()

    # resuming the finished run does nothing: no step, no checkpoint, final/ untouched
    final_mtime = (run / "final" / "adapter_model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished at step 4 of 4; nothing to do" in capsys.readouterr().err
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4]
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert (run / "final" / "adapter_model.safetensors").stat().st_mtime_ns == final_mtime

    # the trained run directory is a valid --model for the eval
    capsys.readouterr()
    assert main(["eval", "toolcall", "--model", str(run), "--limit", "1", "--max-new-tokens", "2",
                 "--out", str(tmp_path / "ev"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1


def test_second_ctrl_c_stops_at_once_and_saves(tmp_path, tiny_llama_dir):
    cfg = _cfg(tmp_path, tiny_llama_dir, **{"eval.enabled": "false", "lora.enabled": "false", "save_steps": "10"})
    res = train(cfg, callbacks=[SigintAt(1, times=2)], progress=False, log=lambda m: None)
    assert res.interrupted and res.last_step == 1
    ckpt = res.run_dir / "checkpoints" / "checkpoint-1"
    assert (ckpt / "trainer_state.json").is_file() and (ckpt / "model.safetensors").is_file()
    assert _steps(res.run_dir) == [1]


def test_warm_start_is_reusable_and_a_missing_one_is_a_config_error(tmp_path, tiny_llama_dir):
    first = train(_cfg(tmp_path, tiny_llama_dir, steps="1", **{"eval.enabled": "false"}), progress=False,
                  log=lambda m: None)
    saved = first.run_dir / "warmstart"
    assert (saved / "adapter_config.json").is_file()
    msgs: list[str] = []
    cfg = _cfg(tmp_path, tiny_llama_dir, steps="1", **{"eval.enabled": "false", "warmstart.from_dir": str(saved)})
    second = train(cfg, progress=False, log=msgs.append)
    assert any("reusing" in m for m in msgs) and not any("SFT steps" in m for m in msgs)
    assert second.last_step == 1 and not (second.run_dir / "warmstart").exists()
    bad = _cfg(tmp_path, tiny_llama_dir, **{"warmstart.from_dir": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="warmstart.from_dir"):
        train(bad, progress=False, log=lambda m: None)
