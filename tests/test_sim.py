"""Tests of the constraint-neglect simulation (rvpo.sim) and the ``rvpo sim`` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

import rvpo.sim.run as sim_run
from rvpo import compute_advantages
from rvpo.cli import main as cli_main
from rvpo.sim import STYLES, SimConfig, SimEnv, parse_method, run_methods, run_one

SHORT = dict(steps=30, seeds=2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cli(argv, capsys):
    """Run ``rvpo <argv>`` in-process; return (exit code, stdout, stderr)."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------- the mechanism (docstring example)

def test_worked_example_mean_prefers_violator_softmin_does_not():
    # G = 4: one greedy sample (easy 1.0 x4, constraint 0), three balanced (easy 0.7 x4, constraint 1)
    r = torch.tensor([[1.0] * 4 + [0.0]] + [[0.7] * 4 + [1.0]] * 3, dtype=torch.float64)
    gdpo = compute_advantages(r, 4, "gdpo", eps=1e-8)  # the hand-worked numbers have no eps
    assert torch.allclose(gdpo.z[0], torch.tensor([1.5] * 4 + [-1.5], dtype=torch.float64), atol=1e-4)
    assert gdpo.advantages[0] > 0 > gdpo.advantages[1]  # the sum of z-scores rewards the violation
    rv = compute_advantages(r, 4, "rvpo", k=2.0, eps=1e-8)
    assert torch.equal(rv.z, gdpo.z)  # same z-scores: only the aggregation differs
    assert rv.aggregate[0].item() == pytest.approx(-0.700, abs=1e-3)
    assert rv.aggregate[1].item() == pytest.approx(-0.405, abs=1e-3)
    assert rv.advantages[0] < 0 < rv.advantages[1]
    # ... and the reverse situation (violation is the norm) punishes the rare satisfier too
    r2 = torch.tensor([[1.0] * 4 + [0.0]] * 3 + [[0.7] * 4 + [1.0]], dtype=torch.float64)
    agg = compute_advantages(r2, 4, "rvpo", k=2.0).aggregate
    assert agg[3] < agg[0]


# ---------------------------------------------------------------- environment and determinism

def test_rewards_depend_only_on_styles():
    env = SimEnv(SimConfig(m_easy=3, noise=0.0, p_sat=1.0, p_violate_sat=0.0))
    styles = torch.arange(len(STYLES)).repeat(5)
    r = env.sample_rewards(styles, torch.Generator().manual_seed(0))
    assert r.shape == (len(styles), 4)
    assert torch.equal(r, env.channel_means[styles])  # noise-free: exactly the style's means
    env = SimEnv(SimConfig())
    a = env.sample_rewards(styles, torch.Generator().manual_seed(3))
    b = env.sample_rewards(styles, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert set(a[:, -1].tolist()) <= {0.0, 1.0}  # the constraint is binary


def test_deterministic_per_seed_and_independent_of_other_seeds():
    cfg = SimConfig(**SHORT)
    m = parse_method("rvpo")
    a, b = run_one(cfg, m, 1), run_one(cfg, m, 1)
    assert torch.equal(a.channel_curves, b.channel_curves)
    assert not torch.equal(a.channel_curves, run_one(cfg, m, 0).channel_curves)
    batch = run_methods(cfg, [m])[m.label]  # seeds 0 and 1 in one call
    assert torch.equal(batch[1].channel_curves, a.channel_curves)


def test_environment_is_the_same_for_every_method(monkeypatch):
    """The first step's rewards (same seed, same initial policy) are identical for all estimators,
    and rvpo with k = 0 (mean of z-scores) reproduces gdpo's training run."""
    seen: dict[str, torch.Tensor] = {}
    real = sim_run.compute_advantages

    def spy(rewards, group_size, estimator, **kw):
        seen.setdefault(estimator, rewards.clone())
        return real(rewards, group_size, estimator, **kw)

    monkeypatch.setattr(sim_run, "compute_advantages", spy)
    cfg = SimConfig(steps=1, seeds=1)
    for spec in ("grpo", "gdpo", "rvpo", "rvpo_explicit", "hardmin"):
        run_one(cfg, parse_method(spec), 7)
    first = seen["gdpo"]
    assert all(torch.equal(v, first) for v in seen.values()) and len(seen) == 5
    monkeypatch.setattr(sim_run, "compute_advantages", real)
    # gdpo whitens the SUM of z-scores and rvpo at k = 0 their MEAN: equal up to eps / std of the
    # aggregate (1e-4 relative at the default eps, which 40 steps carry to ~1e-4 in the curves)
    cfg = SimConfig(steps=40, eps=1e-8)
    g, r0 = run_one(cfg, parse_method("gdpo"), 0), run_one(cfg, parse_method("rvpo:0"), 0)
    assert torch.allclose(g.channel_curves, r0.channel_curves, atol=1e-5)


def test_default_regime_rvpo_keeps_the_constraint_and_gdpo_does_not():
    cfg = SimConfig(steps=150, seeds=3)
    res = run_methods(cfg, [parse_method("gdpo"), parse_method("rvpo")])
    gd = [r.final_sat for r in res["gdpo"]]
    rv = [r.final_sat for r in res["rvpo[linear:0.5:2]"]]
    assert min(rv) > 0.95 and min(rv) > max(gd) + 0.02, (rv, gd)
    assert all(r.steps_to_target is not None for r in res["rvpo[linear:0.5:2]"])
    # gdpo buys the lost satisfaction with easy-channel reward: a real trade-off, not a broken run
    easy = lambda runs: sum(float(r.channel_curves[-1, 0]) for r in runs) / len(runs)  # noqa: E731
    assert easy(res["gdpo"]) > easy(res["rvpo[linear:0.5:2]"])


def test_few_easy_channels_show_no_collapse():
    """Honesty check: with one easy channel both methods keep the constraint."""
    cfg = SimConfig(m_easy=1, steps=150, seeds=2)
    res = run_methods(cfg, [parse_method("gdpo"), parse_method("rvpo")])
    assert all(r.final_sat > 0.95 for runs in res.values() for r in runs)


def test_parse_method_and_config_errors():
    from rvpo.core import Constant, Linear, make_schedule

    assert make_schedule(parse_method("rvpo:2").k) == Constant(2.0)
    assert make_schedule(parse_method("rvpo").k) == Linear(0.5, 2.0)
    assert parse_method("rvpo").label == "rvpo[linear:0.5:2]" and parse_method("rvpo:2").label == "rvpo[k=2]"
    assert parse_method("rvpo_explicit:0.25").beta == 0.25
    for bad in ("foo", "gdpo:1", "rvpo:x", "rvpo_explicit:-1"):
        with pytest.raises(ValueError):
            parse_method(bad)
    for field, value in (("group_size", 1), ("init_sat", 1.0), ("batch_prompts", 99), ("methods", ["gdpo", "gdpo"])):
        with pytest.raises(ValueError, match=field):
            SimConfig(**{field: value}).validate()


# ---------------------------------------------------------------- the command line

def test_cli_writes_run_dir(tmp_path, capsys):
    rc, out, err = _cli(["sim", "--seeds", "0..1", "--steps", "20", "--methods", "gdpo,rvpo,hardmin",
                         "--out", str(tmp_path), "-q"], capsys)
    assert rc == 0, err
    (run_dir,) = list(tmp_path.iterdir())
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "results.json", "results.csv", "curves.csv", "curves.png"} <= names
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["steps"] == 20 and cfg["methods"] == ["gdpo", "rvpo", "hardmin"]
    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    assert len(rows) == 6 and {"final_sat", "steps_to_95", "ch/constraint"} <= set(rows[0])
    curves = list(csv.DictReader((run_dir / "curves.csv").open()))
    assert len(curves) == 3 * 21 and "constraint_std" in curves[0]
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "constraint sat" in out and "Welch" in out and "gdpo" in out


def test_cli_json(tmp_path, capsys):
    rc, out, err = _cli(["sim", "--seeds", "0..1", "--steps", "15", "--methods", "gdpo,rvpo", "--no-plots",
                         "--json", "--out", str(tmp_path), "-q"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    assert set(data["methods"]) == {"gdpo", "rvpo[linear:0.5:2]"}
    m = data["methods"]["gdpo"]
    assert 0 <= m["final_sat"]["mean"] <= 1 and m["final_sat"]["n"] == 2
    assert data["significance"]["a"] == "rvpo[linear:0.5:2]" and data["significance"]["b"] == "gdpo"
    assert Path(data["run_dir"]).is_dir() and "curves.png" not in data["files"]


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "5"], "0..4"),          # a bare count is refused, with the range it probably meant
        (["--seeds", "0,2"], "consecutive"),
        (["--seeds", "3..1"], "--seeds"),
        (["--group-size", "1"], "--group-size"),
        (["--noise", "-1"], "--noise"),
        (["--steps", "ten"], "--steps"),
        (["--methods", "gdpo,bogus"], "--methods"),
        (["--batch-prompts", "9"], "--batch-prompts"),
        (["--init-sat", "1"], "--init-sat"),
        (["--sweep", "k", "--k-values", "1,x"], "--k-values"),
        (["--sweep", "nope"], "--sweep"),
        (["--sweep", "k", "--methods", "gdpo"], "--methods"),
        (["--sweep", "m_easy", "--m-easy-values", "2.5"], "--m-easy-values"),
    ],
)
def test_cli_bad_values_one_line_exit_2(argv, option, tmp_path, capsys):
    rc, out, err = _cli(["sim", *argv, "--out", str(tmp_path)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "error" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written for a bad command


def test_cli_help_documents_every_option(capsys):
    from rvpo.cli import build_parser

    parser = build_parser()
    sim = parser._subparsers._group_actions[0].choices["sim"]
    for action in sim._actions:
        assert action.help, f"{action.option_strings} has no help"
    rc, out, _ = _cli(["sim", "--help"], capsys)
    assert rc == 0 and "--easy-gap" in out and "--sweep" in out


@pytest.mark.parametrize("kind, values, png", [("k", "0,2", "k_sweep.png"), ("beta", "0,1", "beta_sweep.png"),
                                               ("m_easy", "1,4", "m_easy_sweep.png")])
def test_cli_sweeps(kind, values, png, tmp_path, capsys):
    opt = {"k": "--k-values", "beta": "--beta-values", "m_easy": "--m-easy-values"}[kind]
    rc, out, err = _cli(["sim", "--sweep", kind, opt, values, "--seeds", "0..1", "--steps", "15",
                         "--out", str(tmp_path), "--json", "-q"], capsys)
    assert rc == 0, err
    data = json.loads(out)
    n_methods = 2 if kind == "m_easy" else 1  # m_easy sweeps gdpo and rvpo by default
    assert len(data["points"]) == 2 * n_methods
    assert [p["value"] for p in data["points"]][:: n_methods] == [float(v) for v in values.split(",")]
    run_dir = Path(data["run_dir"])
    assert {"config.yaml", "sweep.json", "sweep.csv", png} <= {p.name for p in run_dir.iterdir()}


def test_cli_seeds_read_like_experiment():
    from rvpo.cli import build_parser
    from rvpo.cli.sim import _config

    args = build_parser().parse_args(["sim", "--seeds", "3..5"])
    cfg = _config(args)
    assert (cfg.seed_offset, cfg.seeds) == (3, 3)
    cfg = _config(build_parser().parse_args(["sim"]))
    assert (cfg.seed_offset, cfg.seeds) == (0, 5)
