"""rvpo sim: adaptive k methods, unreliable judge channels and the +floor mitigation."""

import json

import pytest
import torch

from rvpo.cli import main as cli_main
from rvpo.sim import SimConfig, SimEnv, parse_method, run_one


def test_adaptive_method_parses_labels_and_logs_resolved_k():
    m = parse_method("rvpo:adaptive")
    assert m.label == "rvpo[adaptive]" and m.k == "adaptive:0.35:0.25:8.0:power"
    assert parse_method("rvpo:adaptive:0.2:0.5:4:linear").label == "rvpo[adaptive:0.2:0.5:4:linear]"
    run = run_one(SimConfig(steps=20), m, 0)
    assert torch.isfinite(run.k_curve).all() and ((run.k_curve >= 0.25) & (run.k_curve <= 8.0)).all()
    assert run.k_curve.std() > 0  # resolved per batch, not a constant


def test_noisy_judges_are_coins_or_partly_truthful_and_change_nothing_else():
    cfg = SimConfig(m_easy=2, noisy=3, noisy_random=1.0)
    env = SimEnv(cfg)
    assert env.channel_names == ["easy1", "easy2", "noisy1", "noisy2", "noisy3", "constraint"]
    styles = torch.zeros(20000, dtype=torch.long)  # all greedy: constraint mostly violated
    r = env.sample_rewards(styles, torch.Generator().manual_seed(0))
    assert r.shape == (20000, 6) and set(r[:, 2:5].unique().tolist()) == {0.0, 1.0}
    assert abs(float(r[:, 2:5].mean()) - 0.5) < 0.01  # a coin, whatever the truth
    assert abs(float(torch.corrcoef(torch.stack([r[:, 2], r[:, 5]]))[0, 1])) < 0.03
    half = SimEnv(SimConfig(m_easy=2, noisy=1, noisy_random=0.5))
    rh = half.sample_rewards(styles, torch.Generator().manual_seed(0))
    agree = float((rh[:, 2] == rh[:, 3]).double().mean())
    assert abs(agree - 0.75) < 0.02  # truthful half the time, right by chance half of the rest
    assert half.channel_means[0, 2].item() == pytest.approx(0.5 * 0.05 + 0.25)
    assert env.noise_floor() == [0.0, 0.0, 0.5, 0.5, 0.5, 0.0]
    # without judges the random stream is the one the earlier results were measured on
    base = SimEnv(SimConfig(m_easy=2))
    assert torch.equal(base.sample_rewards(styles[:50], torch.Generator().manual_seed(4)),
                       SimEnv(SimConfig(m_easy=2, noisy=0)).sample_rewards(styles[:50], torch.Generator().manual_seed(4)))


def test_floor_suffix_and_its_errors():
    m = parse_method("rvpo:2+floor")
    assert m.floor and m.label == "rvpo[k=2]+floor" and m.k == "constant:2.0"
    assert parse_method("gdpo+floor").floor
    with pytest.raises(ValueError, match="grpo"):
        parse_method("grpo+floor")
    with pytest.raises(ValueError):
        parse_method("gdpo:1+floor")


def test_floor_unbinds_the_random_judges():
    from rvpo import compute_advantages

    cfg = SimConfig(noisy=4)

    env = SimEnv(cfg)
    styles = torch.multinomial(torch.full((4,), 0.25), 64, replacement=True, generator=torch.Generator().manual_seed(1))
    r = env.sample_rewards(styles, torch.Generator().manual_seed(1))
    off = compute_advantages(r, 8, "rvpo", k=2.0)
    on = compute_advantages(r, 8, "rvpo", k=2.0, noise_floor=env.noise_floor())
    judges = slice(cfg.m_easy, cfg.m_easy + cfg.noisy)
    m = len(env.channel_names)
    # a coin binds more than its share 1/M without the floor, less with it
    assert (off.binding_mean[judges] > 1 / m).all() and (on.binding_mean[judges] < 1 / m).all()
    assert on.binding_mean[judges].sum() < 0.6 * off.binding_mean[judges].sum()
    assert on.reliability[:, judges].mean() < 0.25 and (on.reliability[:, :cfg.m_easy] == 1).all()


def test_cli_noisy_and_adaptive(tmp_path, capsys):
    rc = cli_main(["sim", "--steps", "5", "--seeds", "0..0", "--noisy", "2", "--noisy-random", "0.5", "--no-plots",
                   "--methods", "gdpo,rvpo:adaptive,rvpo:adaptive+floor", "--out", str(tmp_path), "--json", "-q"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["methods"]) == {"gdpo", "rvpo[adaptive]", "rvpo[adaptive]+floor"}
    assert payload["channels"][-3:] == ["noisy1", "noisy2", "constraint"]
    with pytest.raises(SystemExit) as e:
        cli_main(["sim", "--noisy-random", "2", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "--noisy-random" in capsys.readouterr().err
