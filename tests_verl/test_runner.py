"""The launch route: the example config composes on verl's tree, config checks, the entry point,
and the task runner registering the plug-in inside a real (local, CPU) Ray actor process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from rvpo.integrations import verl_runner

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "verl"


@pytest.fixture(scope="module")
def example_cfg():
    with initialize_config_dir(config_dir=str(EXAMPLES), version_base=None):
        return compose(config_name="rvpo_rlla")


def test_example_config_composes_on_verls_tree(example_cfg):
    cfg = example_cfg
    assert cfg.algorithm.adv_estimator == "rvpo"
    assert list(cfg.algorithm.rvpo_reward_keys) == ["format_reward", "accuracy_reward"]
    assert cfg.trainer.v1.trainer_mode == "rvpo_sync" and cfg.trainer.use_v1
    assert cfg.actor_rollout_ref.rollout.n == 4
    assert cfg.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-6)
    assert cfg.reward.custom_reward_function.path == "pkg://rvpo.integrations.verl_rewards"
    # keys from verl's own ppo_trainer.yaml are there (the example only overrides)
    assert "critic" in cfg and "transfer_queue" in cfg
    verl_runner.check_config(cfg)
    s = verl_runner.RVPOSettings.from_config(cfg.algorithm)
    assert s.resolve_k(1, 100) == pytest.approx(0.5) and s.resolve_k(100, 100) == pytest.approx(2.0)


def test_the_example_reward_function_loads_through_verl(example_cfg):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(example_cfg)
    gt = '<think>t</think>\n<tool_call>\n{"name": "f", "parameters": {"x": 1}}\n</tool_call>'
    out = fn(data_source="rlla", solution_str=gt, ground_truth=gt, extra_info={})
    assert out == {"score": 4.0, "format_reward": 1.0, "accuracy_reward": 3.0}


def test_run_passes_verls_validate_config_and_uses_our_runner(example_cfg, monkeypatch):
    """verl_runner.run up to the Ray launch: check_config + verl's own validate_config accept the example."""
    import verl.trainer.main_ppo as main_ppo

    seen = {}
    monkeypatch.setattr(main_ppo, "run_ppo", lambda config, task_runner_class: seen.update(cls=task_runner_class))
    cfg = OmegaConf.create(OmegaConf.to_container(example_cfg))
    OmegaConf.update(cfg, "actor_rollout_ref.model.path", "/models/Qwen2.5-1.5B-Instruct")
    verl_runner.run(cfg)
    assert seen["cls"] is verl_runner.RVPOTaskRunner


@pytest.mark.parametrize("override,match", [
    ({"trainer.use_v1": False}, "V1 trainer only"),
    ({"trainer.v1.trainer_mode": "sync"}, "rvpo_sync"),
    ({"algorithm.rvpo_reward_keys": None}, "rvpo_reward_keys"),
    ({"actor_rollout_ref.rollout.n": 1}, "rollout.n >= 2"),
])
def test_check_config_rejects_routes_that_cannot_work(example_cfg, override, match):
    cfg = OmegaConf.create(OmegaConf.to_container(example_cfg))
    for k, v in override.items():
        OmegaConf.update(cfg, k, v)
    with pytest.raises(ValueError, match=match):
        verl_runner.check_config(cfg)
    with open_dict(cfg):
        cfg.algorithm.adv_estimator = "gdpo"
    verl_runner.check_config(cfg)  # other estimators are not our business


def test_entry_point_composes_the_config():
    """``python -m rvpo.integrations.verl_runner --cfg job`` prints the composed config (no training)."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "rvpo.integrations.verl_runner", "--config-path", str(EXAMPLES),
         "--config-name", "rvpo_rlla", "--cfg", "job", "algorithm.rvpo_k_schedule=cosine:0.5:3.0"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.algorithm.rvpo_k_schedule == "cosine:0.5:3.0"
    assert cfg.trainer.v1.trainer_mode == "rvpo_sync"


def test_task_runner_registers_the_plugin_inside_the_ray_actor():
    """A real Ray actor (local, 1 CPU) of RVPOTaskRunner: a different process whose verl registries
    hold our estimators and trainers (the route verl's own TaskRunnerV1 cannot provide)."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore"}})
    try:
        actor = verl_runner.RVPOTaskRunner.remote()
        status = ray.get(actor.plugin_status.remote(), timeout=240)
    finally:
        ray.shutdown()
    assert status["pid"] != os.getpid()
    assert status["estimators"] == ["hardmin", "rvpo", "rvpo_explicit"]
    assert status["trainers"] == ["rvpo_colocate_async", "rvpo_separate_async", "rvpo_sync"]
