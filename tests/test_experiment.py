"""``rvpo experiment``: YAML validation, statistics against scipy, and methods x seeds end to end.

The end-to-end test uses the tiny random Llama (``tiny_llama_dir``): 2 methods x 2 seeds x 2 steps
on the tool-call task, with a Ctrl-C in the third run; it checks the plumbing (shared warm start,
resume, skip, files, report), not learning.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal

import numpy as np
import pytest
import yaml
from scipy import stats as st
from transformers import TrainerCallback

from rvpo.experiment import ExperimentError, load_spec, parse_seeds, run_experiment
from rvpo.experiment.aggregate import compare
from rvpo.runs import read_jsonl
from rvpo.stats import bootstrap_diff_ci, mean_ci, welch_t

A = [0.61, 0.55, 0.72, 0.58, 0.66, 0.49, 0.70, 0.63, 0.57, 0.68, 0.52, 0.64]
B = [0.48, 0.52, 0.41, 0.57, 0.45, 0.50, 0.39, 0.55, 0.47, 0.44]


# ----------------------------------------------------------------------------- statistics


def test_welch_and_t_interval_match_the_textbook_formulas():
    t, p = welch_t(A, B)
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)  # Welch (1947): statistic and df by hand
    t_ref = (np.mean(A) - np.mean(B)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))
    assert t == pytest.approx(t_ref, rel=1e-12) and p == pytest.approx(2 * st.t.sf(abs(t_ref), df), rel=1e-9)
    lo, hi = mean_ci(A)
    rlo, rhi = st.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=st.sem(A))
    assert (lo, hi) == (pytest.approx(rlo, rel=1e-12), pytest.approx(rhi, rel=1e-12))
    assert mean_ci([0.5]) != mean_ci([0.5])  # nan: one seed has no interval


def test_bootstrap_ci_of_a_difference_matches_scipy():
    lo, hi = bootstrap_diff_ci(A, B, n_boot=20000, seed=1)
    ref = st.bootstrap((np.array(A), np.array(B)), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                       n_resamples=20000, method="percentile", paired=False, random_state=2).confidence_interval
    # two Monte Carlo estimates of the same quantiles: agree to well under the CI's width (about 0.11)
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)
    assert lo < np.mean(A) - np.mean(B) < hi
    assert bootstrap_diff_ci([1.0, 1.0], [0.25, 0.25]) == (0.75, 0.75)  # no spread: the point itself


def test_compare_says_no_significant_difference_when_p_is_large():
    c = compare([0.5, 0.6, 0.4], [0.45, 0.55, 0.5])
    assert c["p"] >= 0.05 and not c["significant"] and c["verdict"].startswith("no significant difference")
    c = compare(A, B)
    assert c["significant"] and c["diff"] == pytest.approx(np.mean(A) - np.mean(B))
    assert compare([0.5], [0.4])["verdict"].startswith("not testable")


# ----------------------------------------------------------------------------- the YAML


def _write(tmp_path, obj, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(obj) if not isinstance(obj, str) else obj)
    return path


GOOD = {"train": {"steps": 2}, "methods": [{"label": "gdpo", "estimator": "gdpo"}, "rvpo"], "seeds": "0..2"}


@pytest.mark.parametrize("change, match", [
    ({"sedes": [0]}, r"exp\.yaml: unknown field 'sedes' \(did you mean 'seeds'\?\)"),
    ({"train": {"stpes": 2}}, r"exp\.yaml: train: unknown field 'stpes' \(did you mean 'steps'\?\)"),
    ({"methods": ["gdpo", {"label": "r", "estimator": "rvpo", "k_shedule": 2}]},
     r"exp\.yaml: methods\[1\] \(r\): unknown field 'k_shedule' \(did you mean 'k_schedule'\?\)"),
    ({"methods": ["gdpo", {"label": "r", "k_schedule": "linear:a:b"}]}, r"methods\[1\] \(r\): config field 'advantage.k'"),
    ({"methods": ["gdpo", {"label": "r", "seed": 3}]}, r"methods\[1\] \(r\): field 'seed': every run .* 'train:'"),
    ({"methods": ["gdpo", "gdpo"]}, r"label 'gdpo' is used twice"),
    ({"methods": [{"estimator": "gdpo"}]}, r"methods\[0\]: field 'label'"),
    ({"methods": ["nosuch"]}, r"methods\[0\] \(nosuch\): config field 'advantage.estimator'"),
    ({"methods": []}, r"field 'methods': expected a non-empty list"),
    ({"seeds": "2..0"}, r"field 'seeds'"),
    ({"seeds": [0, 0]}, r"repeats a seed"),
    ({"target": "exact_mach_rate"}, r"field 'target': unknown metric 'exact_mach_rate' \(did you mean 'exact_match_rate'"),
    ({"train": {"eval": {"enabled": False}}}, r"field 'target': .* train:rewards"),
    ({"train": {"config": "missing.yaml"}}, r"missing\.yaml"),
])
def test_bad_experiment_yaml_names_the_file_and_field(tmp_path, change, match):
    with pytest.raises(ExperimentError, match=match):
        load_spec(_write(tmp_path, {**GOOD, **change}))


def test_spec_defaults_seeds_and_train_config_file(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 5\ngroup_size: 3\n")
    spec = load_spec(_write(tmp_path, {**GOOD, "train": {"config": "base.yaml", "steps": 4}}))
    assert spec.name == "exp" and spec.seeds == (0, 1, 2) and spec.target == "exact_match_rate"
    assert spec.base.steps == 4 and spec.base.group_size == 3  # the file's train fields override the YAML's
    assert [m.label for m in spec.methods] == ["gdpo", "rvpo"] and spec.methods[1].cfg.advantage.estimator == "rvpo"
    assert spec.run_dir("rvpo", 2) == spec.root / "runs" / "rvpo-seed2"
    assert spec.config(spec.methods[0], 7).seed == 7
    assert parse_seeds("0..2,7") == (0, 1, 2, 7) and parse_seeds(3) == (3,)
    spec = load_spec(_write(tmp_path, GOOD), seeds="5..6", out=str(tmp_path / "o"), train_set={"steps": "9"})
    assert spec.seeds == (5, 6) and spec.root == tmp_path / "o" / "exp" and spec.methods[0].cfg.steps == 9
    with pytest.raises(ExperimentError, match="invalid YAML"):
        load_spec(_write(tmp_path, "train: [", name="bad.yaml"))


# ----------------------------------------------------------------------------- end to end


class SigintIn(TrainerCallback):
    """Ctrl-C (SIGINT to ourselves) as step ``step + 1`` of the run whose folder name is ``run`` begins."""

    def __init__(self, run: str, step: int):
        self.run, self.step, self.fired = run, step, False

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.fired and f"/{self.run}/" in args.output_dir and state.global_step == self.step:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)


def _experiment(tmp_path, model):
    train = {"model": model, "task": "rvpo.tasks.toolcall.task:make_task",  # a user's task, by dotted path
             "steps": 2, "group_size": 2, "prompts_per_step": 1, "max_completion_length": 4, "train_examples": 8,
             "save_steps": 1, "save_total_limit": 0, "lora": {"r": 2, "alpha": 4},
             "eval": {"examples": 2, "max_new_tokens": 4, "batch_size": 2},
             "warmstart": {"steps": 2, "batch_size": 2}}
    methods = [{"label": "rvpo", "estimator": "rvpo", "k_schedule": {"type": "linear", "start": 0.5, "end": 2.0}},
               {"label": "gdpo-dotted", "estimator": "rvpo.core.estimators:gdpo"}]  # a user's estimator
    return _write(tmp_path, {"name": "tiny", "out": str(tmp_path / "out"), "train": train, "methods": methods,
                             "seeds": [0, 1]})


def test_experiment_end_to_end_interrupt_resume_skip(tmp_path, tiny_llama_dir, capsys):
    from rvpo.cli import main

    path = _experiment(tmp_path, tiny_llama_dir)
    spec = load_spec(path)
    root = spec.root
    # first call: Ctrl-C in run 3 (rvpo seed 1) during its first step; the experiment stops after it
    res = run_experiment(spec, callbacks=[SigintIn("rvpo-seed1", step=0)], progress=False, log=lambda m: None)
    assert res.interrupted and res.trained == ["rvpo-seed0", "gdpo-dotted-seed0", "rvpo-seed1"]
    assert (root / "runs" / "rvpo-seed1" / "INTERRUPTED").is_file()
    assert [r["step"] for r in read_jsonl(root / "runs" / "rvpo-seed1" / "metrics.jsonl")] == [1]
    assert not (root / "runs" / "gdpo-dotted-seed1").exists()

    # second call, through the CLI: resumes rvpo seed 1, runs the last one, writes everything
    capsys.readouterr()
    assert main(["experiment", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4/4 runs finished" in out and "gdpo-dotted vs rvpo on exact_match_rate" in out
    for d in (root / "runs").iterdir():
        assert [r["step"] for r in read_jsonl(d / "metrics.jsonl")] == [1, 2], d.name  # each step once
        assert json.loads((d / "experiment_run.json").read_text())["finished"]
    resumed = json.loads((root / "runs" / "rvpo-seed1" / "experiment_run.json").read_text())
    assert resumed["sessions"] == 2 and not (root / "runs" / "rvpo-seed1" / "INTERRUPTED").exists()

    # one warm start per seed, trained by the first method, loaded by the second; shared evals copied
    for seed in (0, 1):
        owner, other = root / "runs" / f"rvpo-seed{seed}", root / "runs" / f"gdpo-dotted-seed{seed}"
        assert (owner / "warmstart" / "adapter_config.json").is_file() and not (other / "warmstart").exists()
        assert yaml.safe_load((other / "config.yaml").read_text())["warmstart"]["from_dir"] == str(owner / "warmstart")
        assert yaml.safe_load((other / "config.yaml").read_text())["seed"] == seed
        for name in ("eval_before.json", "eval_warmstart.json"):
            assert (other / name).read_text() == (owner / name).read_text()

    # the files
    with open(root / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 8 and {"rewards/format/mean", "rvpo/k", "rvpo/binding/format",
                                 "rvpo/zero_spread_frac/correctness"} <= set(curves[0])
    with open(root / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert [(r["label"], r["seed"]) for r in runs] == [("rvpo", "0"), ("gdpo-dotted", "0"), ("rvpo", "1"),
                                                       ("gdpo-dotted", "1")]
    assert all(r["finished"] == "True" and float(r["wall_s"]) > 0 and r["after/exact_match_rate"] != "" and
               r["before/format_rate"] != "" for r in runs)
    results = json.loads((root / "results.json").read_text())
    assert results["runs_finished"] == 4 and results["methods"]["rvpo"]["target"]["n"] == 2
    (cmp,) = results["comparisons"]
    assert cmp["label"] == "gdpo-dotted" and cmp["vs"] == "rvpo" and cmp["metric"] == "exact_match_rate"
    assert {p.name for p in (root / "plots").iterdir()} >= {"reward_format.png", "reward_correctness.png", "k.png",
                                                            "binding.png", "zero_spread.png"}
    report = (root / "report.md").read_text()
    assert "all 4 runs finished" in report and "## Held-out evaluation" in report
    assert "| **rvpo** after RL | 2 |" in report and "| *before training (base model)* | 2 |" in report
    assert "## Difference from `rvpo` on `exact_match_rate`" in report and "Welch" in report
    assert cmp["verdict"] in report and "![reward_format](plots/reward_format.png)" in report
    assert "Sum over runs:" in report

    # third call: nothing left to train (a train call would fail the test)
    def no_train(*a, **k):
        raise AssertionError("a finished run was trained again")

    again = run_experiment(load_spec(path), train_fn=no_train, progress=False)
    assert again.trained == [] and len(again.skipped) == 4 and not again.interrupted
    # the eval batch size sets only the speed: the finished runs still count
    faster = yaml.safe_load(path.read_text())
    faster["train"]["eval"]["batch_size"] = 1
    again = run_experiment(load_spec(_write(tmp_path, faster, "faster.yaml")), train_fn=no_train, progress=False)
    assert again.trained == [] and len(again.skipped) == 4

    # a changed method no longer matches its folders: refused, naming the field
    changed = yaml.safe_load(path.read_text())
    changed["methods"][0]["k_schedule"] = 1.0
    with pytest.raises(ExperimentError, match="advantage.k"):
        run_experiment(load_spec(_write(tmp_path, changed, "changed.yaml")), train_fn=no_train, progress=False)
    assert main(["experiment", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count(" done ") == 4


def test_training_metric_target_and_seed_bands_on_synthetic_runs(tmp_path):
    from rvpo.experiment.aggregate import RunData, curve_stats, target_value

    spec = load_spec(_write(tmp_path, {**GOOD, "train": {"eval": {"enabled": False}},
                                       "target": "train:rewards/format/mean", "last_steps": 2}))
    recs = [{"step": s, "rewards/format/mean": v} for s, v in [(1, 0.0), (2, 0.5), (3, 1.0)]]
    run = RunData(label="gdpo", seed=0, run_dir=tmp_path, steps=3, finished=True, records=recs)
    assert target_value(spec, run) == pytest.approx(0.75)  # mean of the last 2 steps
    other = RunData(label="gdpo", seed=1, run_dir=tmp_path, steps=3, finished=True,
                    records=[{"step": s, "rewards/format/mean": v} for s, v in [(1, 0.0), (2, 0.0), (3, 0.0)]])
    steps, mean, std, n = curve_stats([run, other], "rewards/format/mean")["gdpo"]
    assert steps == [1, 2, 3] and mean == [0.0, 0.25, 0.5] and n == [2, 2, 2]
    assert std == pytest.approx([0.0, 0.5 / 2 ** 0.5, 1.0 / 2 ** 0.5])  # sample std of (v, 0) = v / sqrt(2)
    _, smoothed, _, _ = curve_stats([run], "rewards/format/mean", smooth=2)["gdpo"]
    assert smoothed == [0.0, 0.25, 0.75]  # trailing mean over 2 steps


# ----------------------------------------------------------------------------- near-binary outcomes


def _fake_runs(spec, outcomes):
    """Finished run folders as rvpo train leaves them: ``outcomes[label]`` = held-out exact_match_rate per seed."""
    from rvpo.runs import write_json, write_yaml
    from rvpo.train.config import to_dict

    for m in spec.methods:
        for seed, after in zip(spec.seeds, outcomes[m.label], strict=True):
            d = spec.run_dir(m.label, seed)
            (d / "final").mkdir(parents=True)
            write_yaml(d / "config.yaml", to_dict(spec.config(m, seed)))
            (d / "summary.md").write_text("fake")
            write_json(d / "eval_before.json", {"n": 4, "metrics": {"exact_match_rate": 0.75 if seed in (2, 4) else 0.6,
                                                                 "format_rate": 0.6}})
            write_json(d / "eval_after.json", {"n": 4, "metrics": {"exact_match_rate": after, "format_rate": 0.9}})
            recs = [{"step": s, "rewards/format/mean": 0.5 + 0.1 * s, "rewards/correctness/mean": after,
                     "rvpo/binding/format": 0.3} for s in (1, 2)]
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_hold_fisher_channels_and_cached_screen_in_the_report(tmp_path):
    from rvpo.experiment import finish
    from rvpo.tasks.base import get_task

    spec = load_spec(_write(tmp_path, {**GOOD, "out": str(tmp_path / "runs"), "seeds": "0..4",
                                       "hold": {"metric": "exact_match_rate", "at_least": 0.5},
                                       "constraint_channels": ["format"], "screen": {"prompts": 2, "group_size": 4}}))
    assert spec.easy_channels == ("correctness",) and spec.screen["max_new_tokens"] == spec.base.max_completion_length
    _fake_runs(spec, {"gdpo": [0.0, 0.0, 0.1, 0.0, 0.0], "rvpo": [0.7, 0.8, 0.6, 0.9, 0.55]})
    calls = []

    def sample(cfg, prompts, g, tokens, temperature, seed, batch_size, out_dir, log):
        calls.append((prompts, g, tokens))
        # format (the constraint) falls as correctness rises within every group
        rewards = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] * prompts
        return {"task": get_task("toolcall"), "names": ["format", "correctness"], "weights": [1.0, 1.0],
                "rows": [{"id": f"p{i}"} for i in range(prompts)], "texts": ["x"] * (prompts * g), "rewards": rewards}

    res = run_experiment(spec, screen_fn=sample, progress=False, train_fn=lambda *a, **k: pytest.fail("trained"))
    assert len(res.skipped) == 10 and calls == [(2, 4, spec.base.max_completion_length)]
    run_experiment(spec, screen_fn=sample, progress=False)
    assert len(calls) == 1  # cached: screen.json's key matches
    # a method added later: the stored samples are screened again, nothing is sampled
    from rvpo.experiment.screen import run_screen

    raw_more = yaml.safe_load(spec.path.read_text())
    raw_more["methods"] = raw_more["methods"] + [{"label": "hardmin", "estimator": "hardmin"}]
    (tmp_path / "more").mkdir()
    more = run_screen(load_spec(_write(tmp_path / "more", {**raw_more, "out": str(tmp_path / "runs")})),
                      sample_fn=sample)
    assert len(calls) == 1 and [m["label"] for m in more["methods"]][-1] == "hardmin"
    assert more["timings"]["reused_samples"] is True
    report, summary = finish(spec)
    h = summary["hold"]
    assert (h["methods"]["gdpo"]["kept"], h["methods"]["rvpo"]["kept"]) == (0, 5)
    assert h["comparisons"][0]["p"] == pytest.approx(st.fisher_exact([[5, 0], [0, 5]])[1]) == pytest.approx(0.0079, abs=1e-4)
    ch = summary["channels"]["methods"]["rvpo"]
    assert ch["constraint/heldout_after"]["n"] == 0  # toolcall reports no metric named "format"
    assert ch["easy/train_last"]["mean"] == pytest.approx(np.mean([0.7, 0.8, 0.6, 0.9, 0.55]))
    assert ch["constraint/train_first"]["mean"] == pytest.approx(0.65) and ch["binding/constraint"]["mean"] == 0.3
    scr = summary["screen"]["methods"]
    from rvpo.screen import screen

    want = screen([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] * 2, 4,
                  [("rvpo", {"estimator": "rvpo", "k": 0.5})], ["format", "correctness"], ["format"])  # k at step 0
    assert scr["rvpo"]["push"] == pytest.approx(want.methods[0].constraint_push) and scr["rvpo"]["push"] != 0
    assert (spec.root / "screen.md").is_file() and len((spec.root / "screen_samples.jsonl").read_text().splitlines()) == 8
    text = report.read_text()
    assert "## Kept the constraint: `exact_match_rate`" in text and "| rvpo | 5/5 |" in text and "| 0.008 |" in text
    assert f"{scr['rvpo']['push']:+.3f} ± " in text  # the predicted push beside the kept share
    assert "## Constraint vs easy channels" in text and (spec.root / "plots" / "constraint_vs_easy.png").is_file()
    assert json.loads((spec.root / "results.json").read_text())["hold"]["comparisons"][0]["kept_a"] == 5
    # without at_least: kept = after >= before - 0.1 (before 0.75 for seeds 2 and 4, else 0.6)
    raw = yaml.safe_load(spec.path.read_text())
    raw["hold"] = {"metric": "exact_match_rate"}
    spec2 = load_spec(_write(tmp_path, raw))
    _, s2 = finish(spec2)
    assert s2["hold"]["methods"]["rvpo"]["kept"] == 3 and s2["hold"]["methods"]["rvpo"]["seeds_kept"] == [0, 1, 3]
    # while_improving: kept only where that held-out metric also rose (format_rate 0.6 -> 0.9 everywhere;
    # exact_match_rate rose for rvpo's seeds 0, 1, 3 only)
    raw["hold"] = {"metric": "exact_match_rate", "at_least": 0.5, "while_improving": "format_rate"}
    _, s3 = finish(load_spec(_write(tmp_path, raw)))
    assert s3["hold"]["methods"]["rvpo"]["kept"] == 5 and "while held-out format_rate rose" in s3["hold"]["rule"]
    raw["hold"]["while_improving"] = "exact_match_rate"
    _, s4 = finish(load_spec(_write(tmp_path, raw)))
    assert s4["hold"]["methods"]["rvpo"]["seeds_kept"] == [0, 1, 3] and s4["hold"]["methods"]["gdpo"]["kept"] == 0
    alone = s4["hold"]["metric_rule_only"]  # ... and the metric rule by itself, beside it: all 5 of rvpo's seeds
    assert alone["methods"]["rvpo"]["kept"] == 5 and alone["rule"] == "held-out exact_match_rate after RL >= 0.5"
    assert alone["comparisons"][0]["p"] == pytest.approx(0.0079, abs=1e-4)
    assert "metric_rule_only" not in s2["hold"]  # only where while_improving is set


@pytest.mark.parametrize("change, match", [
    ({"hold": {"metric": "exact_match_rate", "at_lest": 0.5}}, r"exp\.yaml: hold: unknown field 'at_lest'"),
    ({"hold": {"metric": "exact_match_rate", "at_least": "half"}}, r"field 'hold\.at_least': expected a number"),
    ({"hold": "exact_match_rate"}, r"field 'hold': expected a mapping"),
    ({"hold": {"metric": "exact_match_rate", "while_improving": "train:reward"}},
     r"field 'hold\.while_improving': expected a held-out metric name"),
    ({"constraint_channels": ["fromat"]}, r"field 'constraint_channels': 'fromat' is not a channel of task 'toolcall'"),
    ({"screen": {"prompts": 0}}, r"field 'screen\.prompts': expected an int >= 1"),
    ({"screen": {"group": 8}}, r"exp\.yaml: screen: unknown field 'group'"),
])
def test_bad_hold_channels_screen_fields_are_named(tmp_path, change, match):
    with pytest.raises(ExperimentError, match=match):
        load_spec(_write(tmp_path, {**GOOD, **change}))
