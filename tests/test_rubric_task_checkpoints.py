"""``rvpo eval healthbench|gpqa --checkpoints RUN_DIR``: every checkpoint (full and LoRA) and final/, by step.

The run directory is made by hand (a 1-layer random Llama saved as full checkpoints and as a LoRA
adapter), which is what ``rvpo train`` writes, minus the training: the sweep is about finding,
loading and tabulating the models, not about their scores.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from judge_server_fixture import judge_server
from rvpo.cli import main
from rvpo.evals.checkpoints import sweep_targets
from rvpo.evals.gpqa import INCORRECT_COLUMNS
from test_eval_gpqa import make_tiny_model
from test_rubric_task import healthbench_rows, write_jsonl


def make_run_dir(tmp_path: Path) -> Path:
    """base model + run/checkpoints/checkpoint-{1,2} (2: LoRA) + final/ (LoRA, step 3) + metrics.jsonl."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = make_tiny_model(tmp_path / "base")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": str(base), "task": "rubric"}))
    full = run / "checkpoints" / "checkpoint-1"
    make_tiny_model(full)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    for folder in (run / "checkpoints" / "checkpoint-2", run / "final"):
        model.save_pretrained(folder)
    for s in (1, 2):
        (run / "checkpoints" / f"checkpoint-{s}" / "trainer_state.json").write_text(json.dumps({"global_step": s}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    return run


def test_sweep_targets_by_step(tmp_path):
    run = make_run_dir(tmp_path)
    ts = sweep_targets(run)
    assert [(t.label, t.step) for t in ts] == [("base", 0), ("checkpoint-1", 1), ("checkpoint-2", 2), ("final", 3)]
    assert [t.label for t in sweep_targets(run, include_base=False)] == ["checkpoint-1", "checkpoint-2", "final"]
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2}) + "\n")  # final == the last checkpoint: once
    assert [t.label for t in sweep_targets(run)] == ["base", "checkpoint-1", "checkpoint-2"]
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        sweep_targets(tmp_path / "base")


def test_healthbench_and_gpqa_sweeps_write_table_and_plot(tmp_path, capsys):
    run = make_run_dir(tmp_path)
    data = write_jsonl(tmp_path / "hb.jsonl", healthbench_rows(2))
    with judge_server("rule") as srv:  # --judge-base-url: the old name of --judge-url still works
        rc = main(["eval", "healthbench", "--checkpoints", str(run), "--data", str(data), "--judge-base-url",
                   srv.url, "--judge-model", "rvpo-rule", "--judge-cache", "none", "--max-new-tokens", "4",
                   "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    sweep = Path(out["run_dir"])
    rows = json.loads((sweep / "sweep.json").read_text())["rows"]
    assert [(r["label"], r["step"]) for r in rows] == [("base", 0), ("checkpoint-1", 1), ("checkpoint-2", 2),
                                                       ("final", 3)]
    assert all(r["n"] == 2 and r["n_abstained"] == 0 and r["overall"] is not None for r in rows)
    assert all((sweep / r["label"] / "results.json").is_file() for r in rows)
    assert (sweep / "sweep.png").stat().st_size > 0 and "| checkpoint-2 | 2 |" in (sweep / "sweep.md").read_text()

    gpqa = tmp_path / "gpqa.csv"
    with gpqa.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Correct Answer", *INCORRECT_COLUMNS, "Record ID"])  # synthetic rows below
        for i in range(3):
            w.writerow([f"Synthetic question {i}?", "right", "wrong a", "wrong b", "wrong c", f"rec{i}"])
    assert main(["eval", "gpqa", "--checkpoints", str(run), "--no-base", "--data", str(gpqa), "--max-new-tokens",
                 "4", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "| final | 3 |" in text and "| base |" not in text and "accuracy [95% CI]" in text

    assert main(["eval", "gpqa", "--checkpoints", str(run), "--model", "x", "--data", str(gpqa)]) == 2
    assert "leave out --model" in capsys.readouterr().err
