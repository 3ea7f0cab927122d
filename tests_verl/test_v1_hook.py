"""The V1 trainer hook: verl's real PPOTrainer._compute_advantage, with an in-memory TransferQueue.

The trainer objects are built without ``__init__`` (no Ray workers, no models): only the attributes
``_compute_advantage`` reads are set. The data path from the TransferQueue to the estimator and back
(nested tensors, padding, uid handling, write-back) is verl's own code.
"""

import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.v1 import get_trainer_cls, trainer_base
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from rvpo.integrations import verl_runner
from vhelpers import KEYS, FakeTQ, algo_config, make_dataproto, make_rows


@pytest.fixture
def tq(monkeypatch):
    fake = FakeTQ()
    monkeypatch.setattr(trainer_base, "tq", fake)
    return fake


def _trainer(cls, algo, step=1, total=10):
    t = object.__new__(cls)
    t.config = OmegaConf.create({"algorithm": OmegaConf.to_container(algo), "actor_rollout_ref": {"rollout": {"n": 4}}})
    t.global_steps, t.total_training_steps = step, total
    return t


def _stored(tq, meta, field="advantages"):
    return [tq.rows[k][field] for k in meta.keys]


def _expected(rows, algo, **ctx):
    """The estimator called directly with the components (what the hook must reproduce)."""
    data = make_dataproto(rows)
    adv, _ = get_adv_estimator_fn(algo.adv_estimator)(
        data.batch["token_level_rewards"], data.batch["response_mask"], data.non_tensor_batch["uid"],
        config=algo, non_tensor_batch=data.non_tensor_batch, **ctx)
    return [adv[i, : r[3]] for i, r in enumerate(rows)]


def test_rvpo_trainers_are_registered():
    assert get_trainer_cls("rvpo_sync") is verl_runner.RVPOTrainerSync
    assert issubclass(verl_runner.RVPOTrainerSync, PPOTrainerSync)
    assert get_trainer_cls("rvpo_colocate_async") is verl_runner.RVPOTrainerColocateAsync
    assert get_trainer_cls("rvpo_separate_async") is verl_runner.RVPOTrainerSeparateAsync
    verl_runner.register()  # idempotent


@pytest.mark.parametrize("whiten", ["token", "sequence"])
def test_hook_passes_components_and_step_through_verl_v1(tq, whiten):
    rows = make_rows("interleaved")
    meta = tq.put_rows(rows)
    algo = algo_config(rvpo_k_schedule="linear:0.5:2.0", rvpo_whiten=whiten)
    metrics = {}
    out = _trainer(verl_runner.RVPOTrainerSync, algo, step=4, total=10)._compute_advantage(meta, metrics)
    assert out.keys == meta.keys
    got = _stored(tq, meta)
    want = _expected(rows, algo, global_steps=4, total_training_steps=10)
    for g, w, r in zip(got, want, rows, strict=True):
        assert g.shape == (r[3],)
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_stored(tq, meta, "returns")[0], got[0])
    assert metrics["rvpo/k"] == pytest.approx(1.0)  # step 4 of 10: 0.5 + 1.5 * 3/9
    assert f"rvpo/binding/{KEYS[1]}" in metrics
    assert ["uid", "extra_fields"] in tq.gets  # the hook's extra fetch


def test_plain_v1_trainer_cannot_feed_rvpo_or_gdpo(tq):
    """Verified by running verl's own V1 trainer: the components never reach the estimator. gdpo
    fails even before its reward-key assert: V1 never fetches "prompts"/"attention_mask", which gdpo
    reads to place each component at the last response token."""
    meta = tq.put_rows(make_rows())
    with pytest.raises(RuntimeError, match="rvpo_sync"):
        _trainer(PPOTrainerSync, algo_config())._compute_advantage(meta, {})
    gdpo = algo_config(adv_estimator="gdpo", gdpo_reward_keys=list(KEYS))
    with pytest.raises(KeyError, match="prompts"):
        _trainer(PPOTrainerSync, gdpo)._compute_advantage(meta, {})


def test_hook_leaves_other_estimators_alone(tq):
    rows = make_rows()
    meta = tq.put_rows(rows)
    grpo = algo_config(adv_estimator="grpo")
    _trainer(PPOTrainerSync, grpo)._compute_advantage(meta, {})
    plain = [t.clone() for t in _stored(tq, meta)]
    n_gets = len(tq.gets)
    _trainer(verl_runner.RVPOTrainerSync, grpo)._compute_advantage(meta, {})
    assert ["uid", "extra_fields"] not in tq.gets[n_gets:]
    for a, b in zip(plain, _stored(tq, meta), strict=True):
        torch.testing.assert_close(a, b)


def test_hook_reports_missing_keys_with_what_is_there(tq):
    meta = tq.put_rows(make_rows(), extra_key_drop="accuracy_reward")
    with pytest.raises(KeyError, match="format_reward"):
        _trainer(verl_runner.RVPOTrainerSync, algo_config())._compute_advantage(meta, {})


def test_components_from_extra_fields_handles_partial_keys():
    rows = [{"reward_extra_info": {"a": 1.0, "b": 2.0}}, {"reward_extra_info": {"a": 0.5}}, "not-a-dict"]
    out = verl_runner.components_from_extra_fields(rows, ["a", "b"])
    assert out == {"a": [1.0, 0.5, None], "b": [2.0, None, None]}
