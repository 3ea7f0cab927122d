"""Bad inputs, round two (issue 22): the same contract as ``test_bad_inputs.py`` (exit 2, one stderr line
naming the field/file/line, no traceback, nothing left behind, no model loaded), plus the resume,
checkpoint, metrics, lock, hub and file-mode cases that need more than one command line.

The table ``CASES`` reuses :func:`test_bad_inputs.test_bad_input_fails_cleanly`'s harness; its
placeholders come from :func:`files2` (and ``{tmp}``, the sandbox).
"""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from rvpo.cli import main
from test_bad_inputs import Bad, _entries, _fill

LONG = "a" * 300
_EXP = ["experiment", "{exp}"]

CASES: dict[str, list[Bad]] = {
    "files": [
        Bad(["train", "--config", "{tmp}"], "is a folder"),
        Bad(["train", "--config", "{binary_yaml}"], "not a UTF-8 text file"),
        Bad(["train", "--config", "{fifo}"], "not a regular file"),
        Bad(["train", "--config", "{dup_yaml}"], "line 2: duplicate key 'steps'"),
        Bad(["experiment", "{tmp}"], "is a folder"),
        Bad(["experiment", "{fifo}"], "not a regular file"),
        Bad(["experiment", "{dup_exp}"], "duplicate key 'seeds'"),
        Bad(["eval", "constraints", "--responses", "{tmp}"], "is a folder"),
        Bad(["eval", "constraints", "--responses", "{fifo}"], "not a regular file"),
        Bad(["eval", "constraints", "--responses", "{afile}/r.jsonl"], "cannot read"),
        Bad(["eval", "constraints", "--responses", "{responses}", "--out", f"runs/{LONG}"], "at most 255"),
        Bad(["train", "--out", f"{{tmp}}/{LONG}"], "at most 255"),
        Bad([*_EXP, "--report-only", "--out", "{afile}"], "afile is not a folder"),
        Bad([*_EXP, "--report-only", "--out", LONG], "at most 255"),
    ],
    "silently accepted": [
        Bad([*_EXP, "--set", "seed=3"], "seeds:"),
        Bad([*_EXP, "--set", "out=x"], "--out"),
        Bad([*_EXP, "--seeds", "0..1000000"], "at most 1000"),
        Bad(["eval", "constraints", "--responses", "{unknown_only}"], "none of the 2 instructions"),
        Bad(["eval", "healthbench", "--data", "{hb}", "--judge-url", "http:///v1", "--judge-model", "m"],
            "has no host"),
        Bad(["eval", "healthbench", "--data", "{hb}", "--judge-url", "http://127.0.0.1:99999/v1",
             "--judge-model", "m"], "JudgeConfig.base_url: the port"),
        Bad(["train", "--task", "rubric", "--judge-url", "http://127.0.0.1:99999/v1", "--judge-model", "m"],
            "judge_url: the port"),
    ],
    "resume": [
        Bad(["train", "--resume", "{empty_cfg_run}"], "config.yaml is empty"),
        Bad(["train", "--resume", "{toolcall_run}", "--task", "constraints"], "config field 'task'"),
        Bad(["train", "--resume", "{toolcall_run}", "--model", "{tmp}"], "config field 'model'"),
    ],
    "slow failures": [
        Bad(["train", "--model", "smollm2"], "did you mean 'smollm2-135m-instruct'"),
        Bad(["train", "--set", "warmstart.from_dir={empty_dir}"], "holds no saved warm start"),
    ],
}
ROWS = [pytest.param(area, bad, id=f"{area}-{i}") for area, rows in CASES.items() for i, bad in enumerate(rows)]


@pytest.fixture(scope="module")
def files2(tmp_path_factory) -> dict[str, str]:
    from rvpo.train.config import build_config, save_config

    d = tmp_path_factory.mktemp("bad_inputs_2")
    (d / "afile").write_text("x\n")
    (d / "binary.yaml").write_bytes(b"\x00\x01\xff\xfe steps: 1\n")
    os.mkfifo(d / "fifo")
    (d / "dup.yaml").write_text("steps: 1\nsteps: 2\n")
    exp = "train: {steps: 1}\nmethods:\n  - {label: r, estimator: rvpo}\nseeds: [0]\n"
    (d / "exp.yaml").write_text(exp)
    (d / "dup_exp.yaml").write_text(exp + "seeds: [1]\n")
    row = {"key": 1, "prompt": "p", "instruction_id_list": ["future:type", "other:type"], "kwargs": [{}, {}],
           "response": "r"}
    (d / "unknown.jsonl").write_text(json.dumps(row) + "\n")
    ok = {**row, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    (d / "responses.jsonl").write_text(json.dumps(ok) + "\n")
    (d / "empty_cfg_run").mkdir()
    (d / "empty_cfg_run" / "config.yaml").write_text("")
    (d / "toolcall_run").mkdir()
    save_config(d / "toolcall_run" / "config.yaml", build_config())
    (d / "empty_dir").mkdir()
    hb = d / "hb.jsonl"
    hb.write_text(json.dumps({"prompt": [{"role": "user", "content": "Q?"}], "prompt_id": "p0", "example_tags": [],
                              "rubrics": [{"criterion": "Answers.", "points": 5, "tags": []}]}) + "\n")
    names = ("afile", "fifo")
    out = {k: str(d / k) for k in names}
    out.update(binary_yaml=str(d / "binary.yaml"), dup_yaml=str(d / "dup.yaml"), exp=str(d / "exp.yaml"),
               dup_exp=str(d / "dup_exp.yaml"), unknown_only=str(d / "unknown.jsonl"),
               responses=str(d / "responses.jsonl"), empty_cfg_run=str(d / "empty_cfg_run"),
               toolcall_run=str(d / "toolcall_run"), empty_dir=str(d / "empty_dir"), hb=str(hb))
    return out


@pytest.mark.parametrize("area,bad", ROWS)
def test_bad_input_fails_cleanly(area, bad, files2, sandbox, capsys, monkeypatch):
    values = {**files2, "tmp": str(sandbox)}
    argv = [_fill(a, values) for a in bad.argv]
    before = _entries(sandbox)
    t0 = time.perf_counter()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    took = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (argv, rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert _fill(bad.names, values) in lines[0], (bad.names, lines[0])
    assert lines[0].startswith("rvpo") and out == "", (lines[0], out)
    assert _entries(sandbox) == before, "a failed command left files or folders behind"
    assert took < 60, f"{took:.0f} s: a bad input must fail within seconds"


# ----------------------------------------------------------------------------- beyond one command line


def _cfg():
    from rvpo.train.config import build_config

    return build_config()


def test_second_resume_of_a_locked_run_is_refused(files2, sandbox, capsys):
    from rvpo.runs import run_lock

    run = files2["toolcall_run"]
    with run_lock(run):
        assert main(["train", "--resume", run]) == 2
        err = capsys.readouterr().err
        assert "in use by another rvpo process" in err and err.count("\n") == 1
    with run_lock(run):  # released when the holder leaves: the next one gets it
        pass


def test_corrupt_checkpoint_falls_back_to_the_intact_one_naming_the_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from rvpo.model.policy import checkpoint_problem, latest_checkpoint

    for step in (1, 2, 3):
        c = tmp_path / "checkpoints" / f"checkpoint-{step}"
        c.mkdir(parents=True)
        (c / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        save_file({"w": torch.ones(4)}, str(c / "adapter_model.safetensors"))
        torch.save({"state": {0: torch.zeros(3)}}, c / "optimizer.pt")
    ck = tmp_path / "checkpoints"
    (ck / "checkpoint-3" / "optimizer.pt").write_bytes(b"garbage" * 10)
    blob = (ck / "checkpoint-2" / "adapter_model.safetensors").read_bytes()
    (ck / "checkpoint-2" / "adapter_model.safetensors").write_bytes(blob[:-8])  # truncated
    warnings: list[str] = []
    step, path = latest_checkpoint(tmp_path, warn=warnings.append)
    assert step == 1 and path.name == "checkpoint-1"
    assert "checkpoint-3/optimizer.pt" in warnings[0] and "checkpoint-1" in warnings[0]
    assert "checkpoint-2/adapter_model.safetensors" in warnings[1]
    assert checkpoint_problem(ck / "checkpoint-1") is None
    (ck / "checkpoint-1" / "trainer_state.json").write_text("{not json")
    assert "trainer_state.json: not valid JSON" in checkpoint_problem(ck / "checkpoint-1")
    assert latest_checkpoint(tmp_path, warn=warnings.append) is None


def test_resume_keeps_interrupted_until_the_checkpoint_loaded(tmp_path):
    """``open_run_dir`` (before the trainer loads the checkpoint) leaves ``INTERRUPTED`` in place."""
    from rvpo.train.run import INTERRUPTED, open_run_dir

    (tmp_path / INTERRUPTED).write_text("{}")
    open_run_dir(_cfg(), resume=tmp_path)
    assert (tmp_path / INTERRUPTED).is_file()


def test_garbage_in_metrics_is_reported_not_dropped_silently(tmp_path):
    from rvpo.runs import CorruptFileError, read_jsonl

    m = tmp_path / "metrics.jsonl"
    m.write_text('{"step": 1}\n{"step": 2}\nGARBAGE\n')
    said: list[str] = []
    assert read_jsonl(m, warn=said.append) == [{"step": 1}, {"step": 2}]
    assert said and "metrics.jsonl:3" in said[0] and "GARBAGE" in said[0]
    m.write_text('{"step": 1}\nGARBAGE\n{"step": 3}\n')
    with pytest.raises(CorruptFileError, match=r"metrics.jsonl:2: invalid JSON"):
        read_jsonl(m)


def test_hub_id_fails_fast_offline_and_unreachable(monkeypatch):
    import huggingface_hub.constants

    from rvpo.model.loading import ModelNotFoundError, check_hub_reachable

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE is set"):
        check_hub_reachable("someorg/not-cached-model")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="cannot be reached"):
        check_hub_reachable("someorg/not-cached-model", timeout_s=2)
    assert time.perf_counter() - t0 < 5


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """summary.md and report.md go through atomic_write_text: 0644 under umask 022, like the plots."""
    from rvpo.runs import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "summary.md", "# s\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == 0o644


def test_eval_constraints_without_langdetect_fails_with_an_install_hint(files2, sandbox, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "langdetect" else real(name, *a))
    row = {"key": 1, "prompt": "p", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}],
           "response": "all lower"}
    (sandbox / "r.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["eval", "constraints", "--responses", "r.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "pip install langdetect" in err and err.count("\n") == 1
    assert _entries(sandbox) == {"r.jsonl"}
    with pytest.raises(TypeError, match="lowercase need langdetect"):  # training too: before any model loads
        from rvpo.tasks.constraints import make_task

        make_task(families=["no_comma", "lowercase"], max_instructions=2)


def test_unknown_instruction_counts_as_not_followed_and_is_reported(tmp_path, capsys):
    row = {"key": 7, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "future:type"],
           "kwargs": [{}, {}], "response": "no commas here"}
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(row) + "\n")
    assert main(["eval", "constraints", "--responses", str(f), "--out", str(tmp_path / "runs"), "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["n"] == 1 and out["n_unsupported"] == 1 and out["n_instructions"] == 2
    assert out["metrics"]["prompt_strict"] == 0.0 and out["metrics"]["inst_strict"] == 0.5
    assert "future:type" in cap.err and "not followed" in cap.err


def test_yaml_reader_names_the_duplicate_key_in_nested_mappings(tmp_path):
    from rvpo.userfiles import read_user_yaml

    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  r: 8\n  alpha: 16\n  r: 4\n")
    with pytest.raises(ValueError, match=r"c.yaml: line 4: duplicate key 'r' \(first on line 2\)"):
        read_user_yaml(p)
    p.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")  # merge keys stay legal
    assert read_user_yaml(p)["other"] == {"x": 1, "y": 2}


@pytest.mark.slow
def test_resume_with_a_corrupt_latest_checkpoint_uses_the_earlier_one(tmp_path, tiny_llama_dir, capsys):
    """End to end on the tiny Llama: Ctrl-C after step 2, garbage over checkpoint-2's optimizer.pt, resume:
    a warning names the file, training restarts from checkpoint-1, every step is logged once."""
    from rvpo.runs import read_jsonl
    from rvpo.train.run import INTERRUPTED, train
    from test_train_e2e import SigintAt, _cfg

    res = train(_cfg(tmp_path, tiny_llama_dir), callbacks=[SigintAt(1)], progress=False, log=lambda m: None)
    run = res.run_dir
    assert res.interrupted and res.last_step == 2
    bad = run / "checkpoints" / "checkpoint-2" / "optimizer.pt"
    bad.write_bytes(b"\x00garbage" * 64)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"{bad}: not a torch.save archive" in err and "checkpoint-1" in err
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert not (run / INTERRUPTED).exists() and (run / "final").is_dir()
