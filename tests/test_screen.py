"""``rvpo screen``: the predicted push against the exact first-order change under ``rvpo sim``'s update.

Truth from the sim (docs/screen.md derives it): a tabular softmax over S styles, all equally likely
(``init_sat=0.5``), rewards a function of the style only (``noise=0``, ``p_sat=1``,
``p_violate_sat=0``), one step ``logits[p] += lr/(B G) sum_g A_g (onehot_g - pi)``. Then

    (B S / lr) * dE_j = mean_p [ push_pj + Abar_p (rbar_pj - E_j) ]          (first order in lr)

``Abar_p`` the group's mean advantage, ``rbar_pj`` its mean reward, ``E_j`` the policy's expected
reward. gdpo's advantages sum to zero per group, so for gdpo the screen's push is the whole change.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rvpo.cli import main
from rvpo.core import AdvantageSpec
from rvpo.screen import DEFAULT_METHODS, group_push, parse_methods, screen
from rvpo.sim import SimConfig, SimEnv, parse_method, run_one

SIM_METHODS = [("gdpo", "gdpo", {"estimator": "gdpo"}), ("rvpo k=0.5", "rvpo:0.5", {"estimator": "rvpo", "k": 0.5}),
               ("rvpo k=2", "rvpo:2", {"estimator": "rvpo", "k": 2}), ("rvpo k=4", "rvpo:4", {"estimator": "rvpo", "k": 4}),
               ("hardmin", "hardmin", {"estimator": "hardmin"})]


def _sim_batch(cfg: SimConfig, env: SimEnv, seed: int) -> torch.Tensor:
    """The rewards of run_one's first step (same generator calls in the same order as rvpo.sim.run)."""
    gen = torch.Generator().manual_seed(seed)
    prompts = torch.randperm(cfg.prompts, generator=gen)[: cfg.batch_prompts]
    probs = env.init_logits()[prompts].softmax(-1)
    styles = torch.multinomial(probs, cfg.group_size, replacement=True, generator=gen)
    return env.sample_rewards(styles.reshape(-1), gen)


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(m_easy=8, easy_gap=0.3, noise=0.0, p_sat=1.0, p_violate_sat=0.0, init_sat=0.5, prompts=3000,
                    batch_prompts=3000, group_size=8, steps=1, lr=1e-3, seeds=1)
    env = SimEnv(cfg)
    rewards = _sim_batch(cfg, env, seed=0)
    res = screen(rewards, cfg.group_size, [(lab, d) for lab, _, d in SIM_METHODS], env.channel_names, ["constraint"])
    truth = {}
    for lab, sim_spec, _ in SIM_METHODS:
        run = run_one(cfg, parse_method(sim_spec), 0, env)
        truth[lab] = (run.channel_curves[1] - run.channel_curves[0]) * cfg.batch_prompts * env.num_styles / cfg.lr
    return cfg, env, rewards, res, truth


def test_screen_is_the_exact_first_order_change_of_the_sim_with_the_group_baseline_term(sim):
    cfg, env, rewards, res, truth = sim
    e = env.expected(env.init_logits()[0].softmax(-1))  # (M,) every prompt starts at the same policy
    g = rewards.reshape(-1, cfg.group_size, rewards.shape[1])
    for lab, _, d in SIM_METHODS:
        adv = AdvantageSpec.from_dict(d).compute(rewards, cfg.group_size).advantages
        push, _ = group_push(rewards, adv, cfg.group_size)
        baseline = adv.reshape(-1, cfg.group_size).mean(1, keepdim=True) * (g.mean(1) - e)  # (P, M)
        exact = (push + baseline).mean(0)
        assert torch.allclose(exact, truth[lab], rtol=5e-3, atol=5e-4), lab  # second order in lr = 1e-3
        assert torch.allclose(push.mean(0), torch.tensor(res.method(lab).push, dtype=torch.float64), atol=1e-12)
    # gdpo sums to zero per group: the screen alone is the exact change
    assert torch.allclose(torch.tensor(res.method("gdpo").push, dtype=torch.float64), truth["gdpo"], rtol=5e-3, atol=5e-4)


def test_screen_predicts_the_sign_of_every_channel_and_its_size_within_tolerance(sim):
    _, env, _, res, truth = sim
    for lab, _, _ in SIM_METHODS:
        pred = torch.tensor(res.method(lab).push, dtype=torch.float64)
        assert torch.equal(pred.sign(), truth[lab].sign()), (lab, pred, truth[lab])
        assert torch.allclose(pred, truth[lab], atol=0.02, rtol=0.1), (lab, pred, truth[lab])
    # the design has a real sign flip on the constraint: the mean of z-scores neglects it, the soft-min keeps it
    assert res.method("gdpo").neglected == "constraint" and res.method("gdpo").neglected_significant
    assert res.method("gdpo").constraint_push < 0 < res.method("rvpo k=2").constraint_push
    assert res.method("hardmin").constraint_push > res.method("rvpo k=4").constraint_push > res.method("rvpo k=2").constraint_push
    assert res.method("hardmin").neglected is None
    ci = env.channel_names.index("constraint")
    assert res.method("hardmin").binding[ci] > res.method("gdpo").binding[ci]


def test_monitor_channels_are_reported_but_never_trained_and_abstentions_count_zero():
    torch.manual_seed(0)
    r = torch.rand(16 * 4, 3)
    r[:, 2] = r[:, 0] * 10  # a monitor that copies channel 0
    r[::5, 1] = math.nan
    base = screen(r[:, :2], 4, [("gdpo", {"estimator": "gdpo"})], ["a", "b"])
    mon = screen(r, 4, [("gdpo", {"estimator": "gdpo"})], ["a", "b", "words"], monitor_channels=["words"])
    assert mon.weights == [1.0, 1.0, 0.0] and mon.monitor_channels == ["words"] and mon.easy_channels == ["a", "b"]
    assert mon.method("gdpo").push[:2] == pytest.approx(base.method("gdpo").push[:2], abs=1e-12)  # not trained on
    assert mon.method("gdpo").push[2] == pytest.approx(10 * mon.method("gdpo").push[0])  # but reported
    assert mon.method("gdpo").binding[2] == 0
    assert all(math.isfinite(x) for x in mon.method("gdpo").push)
    same = screen(r, 4, [("gdpo", {"estimator": "gdpo"})], ["a", "b", "words"], weights=[1, 1, 0])
    assert same.monitor_channels == ["words"] and same.method("gdpo").push == mon.method("gdpo").push


def test_defaults_markdown_json_round_trip_and_errors():
    torch.manual_seed(1)
    r = (torch.rand(32 * 8, 4) < 0.5).double()
    res = screen(r, 8, channel_names=["constraint", "e1", "e2", "e3"], constraint_channels=["constraint"])
    assert [m.label for m in res.methods] == [lab for lab, _ in DEFAULT_METHODS]
    d = json.loads(json.dumps(res.to_dict()))
    assert type(res).from_dict(d).markdown() == res.markdown()
    assert "push on constraint ± SE" in res.markdown() and "rvpo adaptive" in res.markdown()
    assert res.method("rvpo adaptive").k is not None and res.method("hardmin").k is not None
    with pytest.raises(ValueError, match="group_size"):
        screen(r, 7)
    with pytest.raises(ValueError, match=r"constraint_channels: \['x'\]"):
        screen(r, 8, constraint_channels=["x"])
    with pytest.raises(ValueError, match=r"methods\[0\] \(m\)\.k"):
        screen(r, 8, [("m", {"estimator": "rvpo", "k": "fast"})])
    assert parse_methods("gdpo, rvpo:k=2,rvpo:k=linear:0.5:2.0:eps=0.001,hardmin") == [
        ("gdpo", AdvantageSpec(estimator="gdpo").to_dict()), ("rvpo k=2", AdvantageSpec(k="2").to_dict()),
        ("rvpo k=linear:0.5:2.0", AdvantageSpec(k="linear:0.5:2.0", eps=0.001).to_dict()),
        ("hardmin", AdvantageSpec(estimator="hardmin").to_dict())]
    with pytest.raises(ValueError, match="unknown advantage setting"):
        parse_methods("rvpo:kk=2")


def _write_samples(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_screens_a_samples_file_and_names_bad_lines(tmp_path, capsys):
    torch.manual_seed(2)
    r = (torch.rand(6 * 4, 3) < 0.5).tolist()
    rows = [{"prompt_id": f"p{i // 4}", "completion": "x",
             "rewards": {"constraint": float(a), "rich": float(b), "words": None if i == 3 else float(c)}}
            for i, (a, b, c) in enumerate(r)]
    path = tmp_path / "samples.jsonl"
    _write_samples(path, rows)
    out = tmp_path / "out"
    assert main(["screen", "--samples", str(path), "-G", "4", "--constraint", "constraint", "--monitor", "words",
                 "--methods", "gdpo,rvpo:k=4", "--out", str(out)]) == 0
    got = json.loads((out / "screen.json").read_text())
    want = screen(torch.tensor([[x["rewards"][c] if x["rewards"][c] is not None else math.nan
                                 for c in ("constraint", "rich", "words")] for x in rows]), 4,
                  parse_methods("gdpo,rvpo:k=4"), ["constraint", "rich", "words"], ["constraint"],
                  monitor_channels=["words"])
    assert got["methods"][1]["push"] == pytest.approx(want.methods[1].push)
    assert (out / "screen.md").read_text().count("| rvpo k=4 |") == 1
    bad = list(rows)
    bad[5] = {**rows[5], "prompt_id": "p9"}
    _write_samples(path, bad)
    assert main(["screen", "--samples", str(path), "-G", "4"]) == 2
    assert f"{path}:6: prompt_id 'p9' starts before the group" in capsys.readouterr().err
    bad[5] = {**rows[5], "rewards": {"constraint": "yes", "rich": 1, "words": 1}}
    _write_samples(path, bad)
    assert main(["screen", "--samples", str(path), "-G", "4"]) == 2
    assert ":6: rewards.constraint: expected a finite number or null" in capsys.readouterr().err
    assert main(["screen", "-G", "4"]) == 2


def test_cli_samples_from_a_model_and_scores_with_the_task(tmp_path, tiny_llama_dir):
    out = tmp_path / "s"
    assert main(["screen", "--task", "constraints", "--set", f"model={tiny_llama_dir}", "--prompts", "3", "-G", "2",
                 "--max-new-tokens", "4", "--methods", "gdpo,hardmin", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    res = json.loads((out / "screen.json").read_text())
    assert len(lines) == 6 and lines[0]["prompt_id"] == lines[1]["prompt_id"] != lines[2]["prompt_id"]
    assert list(lines[0]["rewards"]) == res["channel_names"] and res["prompts"] == 3
    assert [m["label"] for m in res["methods"]] == ["gdpo", "hardmin"] and res["timings"]["generate_s"] >= 0
    # screening the written samples again gives the same numbers
    assert main(["screen", "--samples", str(out / "samples.jsonl"), "-G", "2", "--methods", "gdpo,hardmin",
                 "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "screen.json").read_text())
    assert again["methods"][0]["push"] == pytest.approx(res["methods"][0]["push"], nan_ok=True)


def test_screen_weights_resolve_like_rvpo_train():
    """A mapping by name, a list, or the task's defaults; monitor channels always 0; bad names refused."""
    from rvpo.tasks.base import get_task
    from rvpo.tasks.base import resolve_channel_weights as channel_weights

    task = get_task("neglect")
    names = task.channel_names()
    assert channel_weights(task, names, None) == [0.0 if n == "words" else 1.0 for n in names]
    w = channel_weights(task, names, {"constraint": 3})
    assert w[names.index("constraint")] == 3.0 and w[names.index("words")] == 0.0
    assert channel_weights(task, names, [2.0] * len(names))[names.index("words")] == 0.0
    with pytest.raises(ValueError, match="unknown channel"):
        channel_weights(task, names, {"constrant": 1})


def test_prompts_a_step_for_a_steady_push():
    from rvpo.screen import steady_prompts

    assert steady_prompts(0.1, 0.02, 25) == 4          # per-prompt sd 0.1: 2 * 0.1 / sqrt(4) = 0.1
    assert steady_prompts(0.1, 0.02, 25, z=1.0) == 1
    assert steady_prompts(0.1, 0.0201, 25) == 5        # just above: one more prompt
    assert steady_prompts(-0.1, 0.02, 25) is None and steady_prompts(0.0, 0.02, 25) is None
    assert steady_prompts(0.1, math.nan, 25) is None and steady_prompts(None, 0.02, 25) is None

    torch.manual_seed(0)
    g, p = 8, 24
    length = torch.rand(p * g)
    r = torch.stack([(length < 0.6).float(), (length > 0.3).float(), (length > 0.5).float()], 1)  # a limit vs two
    res = screen(r, g, [("gdpo", {"estimator": "gdpo"}), ("k2", {"estimator": "rvpo", "k": 2.0})],
                 ["constraint", "e1", "e2"], constraint_channels=["constraint"])
    for m in res.methods:
        want = [steady_prompts(m.constraint_push, m.constraint_se, m.constraint_n),
                steady_prompts(m.easy_push, m.easy_se, m.easy_n)]
        assert m.constraint_n == m.easy_n == p
        assert m.prompts_per_step() == (None if None in want else max(want))
    assert res.method("gdpo").constraint_push < 0 and res.method("gdpo").prompts_per_step() is None
    row = next(line for line in res.markdown().splitlines() if line.startswith("| gdpo"))
    assert "never (a push <= 0)" in row
    assert res.from_dict(json.loads(json.dumps(res.to_dict()))).method("k2").easy_n == p


def test_cli_screens_a_lora_folder_as_the_merged_policy(tmp_path, tiny_llama_dir):
    """`--set model=<run>/warmstart` (a LoRA adapter folder): the screen samples the adapted policy, merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    adapter = tmp_path / "warmstart"
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(adapter)
    outs = {}
    for label, model in (("base", tiny_llama_dir), ("adapter", adapter)):
        out = tmp_path / label
        assert main(["screen", "--task", "constraints", "--set", f"model={model}", "--prompts", "2", "-G", "2",
                     "--max-new-tokens", "6", "--methods", "gdpo", "--out", str(out)]) == 0
        outs[label] = [json.loads(x)["completion"] for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(outs["adapter"]) == 4 and outs["adapter"] != outs["base"]  # the adapter's weights were used
