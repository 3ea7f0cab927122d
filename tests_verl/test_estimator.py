"""The rvpo estimators inside verl 0.9.1: registry, compute_advantage on a real DataProto, GDPO at k -> 0."""

import logging
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
from verl.trainer.ppo.ray_trainer import compute_advantage

import rvpo.integrations.verl as rv
from rvpo import compute_advantages
from rvpo.core import DEFAULT_EPS
from vhelpers import KEYS, G, algo_config, make_dataproto, make_rows


def _grouped(rows):
    """Rows reordered into contiguous uid groups (first-seen order) and the permutation used."""
    order = {}
    for i, r in enumerate(rows):
        order.setdefault(r[0], []).append(i)
    perm = [i for idx in order.values() for i in idx]
    rewards = torch.tensor([rows[i][2] for i in perm], dtype=torch.float64)
    return perm, rewards


def _core_per_seq(rows, estimator="rvpo", **params):
    """(N,) the core's advantages in the batch's row order."""
    perm, rewards = _grouped(rows)
    out = compute_advantages(rewards, G, estimator, **params)
    adv = torch.empty(len(rows), dtype=torch.float64)
    adv[perm] = out.advantages
    return adv, out


def _run(data, estimator, config, **ctx):
    with rv.batch_context(non_tensor_batch=data.non_tensor_batch, uids=list(data.non_tensor_batch["uid"]), **ctx):
        out = compute_advantage(data, adv_estimator=estimator, config=config)
    return out.batch["advantages"]


def test_verl_registry_finds_the_plugin():
    for name, fn in [("rvpo", rv.compute_rvpo_outcome_advantage),
                     ("rvpo_explicit", rv.compute_rvpo_explicit_outcome_advantage),
                     ("hardmin", rv.compute_hardmin_outcome_advantage)]:
        assert get_adv_estimator_fn(name) is fn
    rv.register()  # idempotent
    assert get_adv_estimator_fn("rvpo") is rv.compute_rvpo_outcome_advantage


def test_register_refuses_a_foreign_estimator_under_our_name():
    reg = core_algos.ADV_ESTIMATOR_REGISTRY
    saved = reg["hardmin"]
    reg["hardmin"] = lambda **kw: None
    try:
        with pytest.raises(ValueError, match="already registered"):
            rv.register()
    finally:
        reg["hardmin"] = saved


def test_verl_compute_advantage_does_not_pass_components_to_third_party_estimators():
    """Verified by running: verl 0.9.1 hands non_tensor_batch to 'gdpo' only, so we fail loudly."""
    data = make_dataproto(make_rows())
    with pytest.raises(RuntimeError, match="rvpo_sync"):
        compute_advantage(data, adv_estimator="rvpo", config=algo_config())


@pytest.mark.parametrize("estimator,params", [
    ("rvpo", {"rvpo_k": 1.0}), ("rvpo", {"rvpo_k": 4.0}), ("rvpo_explicit", {"rvpo_beta": 0.7}), ("hardmin", {}),
])
def test_sequence_whitening_returns_core_advantages_broadcast(estimator, params):
    rows = make_rows("interleaved")
    data = make_dataproto(rows)
    adv = _run(data, estimator, algo_config(rvpo_whiten="sequence", **params))
    core_params = {"k": params.get("rvpo_k", 1.0), "beta": params.get("rvpo_beta", 0.5)}
    want, _ = _core_per_seq(rows, estimator, eps=DEFAULT_EPS, whiten=True, **core_params)
    mask = data.batch["response_mask"]
    assert adv.shape == mask.shape and adv.dtype == torch.float32
    torch.testing.assert_close(adv.double(), want.unsqueeze(-1) * mask.double(), rtol=1e-5, atol=1e-6)
    assert (adv[mask == 0] == 0).all()


def test_group_order_does_not_matter():
    """Interleaved (a0 b0 c0 a1 ...) and contiguous uid layouts give the same per-row advantages."""
    inter, contig = make_rows("interleaved"), make_rows("contiguous")
    cfg = algo_config(rvpo_whiten="sequence")
    a_i, a_c = _run(make_dataproto(inter), "rvpo", cfg), _run(make_dataproto(contig), "rvpo", cfg)
    key = lambda rows: {(r[0], r[1]): i for i, r in enumerate(rows)}
    ki, kc = key(inter), key(contig)
    for rk in ki:
        torch.testing.assert_close(a_i[ki[rk]], a_c[kc[rk]])


def test_token_whitening_is_verl_masked_whiten_of_the_core_aggregate():
    """Independent numpy check of the token convention: token-weighted mean, unbiased token variance,
    x * rsqrt(var + 1e-8), on response tokens."""
    rows = make_rows("interleaved")
    data = make_dataproto(rows)
    adv = _run(data, "rvpo", algo_config(rvpo_whiten="token", rvpo_k=2.0))
    agg, _ = _core_per_seq(rows, "rvpo", k=2.0, eps=DEFAULT_EPS, whiten=False)
    mask = data.batch["response_mask"].double().numpy()
    x = agg.numpy()[:, None] * mask
    n_tok = mask.sum()
    mean = x.sum() / n_tok
    var = (((x - mean) ** 2) * mask).sum() / n_tok * n_tok / (n_tok - 1)
    want = (x - mean) / np.sqrt(var + 1e-8) * mask
    np.testing.assert_allclose(adv.double().numpy(), want, rtol=1e-5, atol=1e-5)


def _gdpo(data, weights=None):
    cfg = algo_config(adv_estimator="gdpo", gdpo_reward_keys=list(KEYS))
    if weights is not None:
        cfg.gdpo_reward_weights = list(weights)
    return compute_advantage(data, adv_estimator="gdpo", config=cfg).batch["advantages"]


@pytest.mark.parametrize("k", [0.0, 1e-6])
@pytest.mark.parametrize("weights", [None, [2.0, 1.0]])
def test_k_to_zero_with_token_whitening_equals_verl_gdpo(weights, k):
    """At k -> 0 the soft-min is the (weighted) MEAN of Z; verl's gdpo takes the weighted SUM.
    Whitening removes the constant factor sum(w), so the whitened advantages agree."""
    rows = make_rows("interleaved")
    data = make_dataproto(rows)
    gd = _gdpo(make_dataproto(rows), weights)
    cfg = algo_config(rvpo_k=k, rvpo_whiten="token", rvpo_eps=1e-6)  # verl's eps, for bit-parity
    if weights is not None:
        cfg.rvpo_reward_weights = weights
    ours = _run(data, "rvpo", cfg)
    torch.testing.assert_close(ours, gd, rtol=1e-4, atol=1e-4)
    assert ours.abs().max() > 0.5  # a real signal, not two zero tensors


def test_k_to_zero_with_sequence_whitening_differs_from_gdpo_by_the_documented_factor():
    """Equal response lengths L: token whitening's unbiased variance is over N*L tokens, sequence
    whitening's over N responses, so adv_seq = adv_tok * sqrt(L (N-1) / (N L - 1)) (up to eps).
    Unequal lengths: token whitening weights long responses more, no constant factor."""
    rows = make_rows("interleaved", equal_lengths=True)
    gd = _gdpo(make_dataproto(rows))
    seq = _run(make_dataproto(rows), "rvpo", algo_config(rvpo_k=1e-6, rvpo_whiten="sequence", rvpo_eps=1e-6))
    n, length = len(rows), rows[0][3]
    factor = math.sqrt(length * (n - 1) / (n * length - 1))
    torch.testing.assert_close(seq, gd * factor, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(seq, gd, atol=1e-3)

    rows = make_rows("interleaved", equal_lengths=False)
    gd = _gdpo(make_dataproto(rows))
    seq = _run(make_dataproto(rows), "rvpo", algo_config(rvpo_k=1e-6, rvpo_whiten="sequence", rvpo_eps=1e-6))
    ratio = seq[gd != 0] / gd[gd != 0]
    assert ratio.max() - ratio.min() > 1e-3


def test_missing_components_abstain_instead_of_poisoning_the_batch():
    rows = make_rows("interleaved")
    rows[0][2][1] = None  # one accuracy abstains
    i_all = next(i for i, r in enumerate(rows) if r[0] == "b" and r[1] == 2)
    rows[i_all][2][:] = [None, None]  # a response with no component at all
    data = make_dataproto(rows)
    for whiten in ("token", "sequence"):
        adv = _run(data, "rvpo", algo_config(rvpo_whiten=whiten))
        assert torch.isfinite(adv).all()
        assert (adv[i_all] == 0).all()
        assert adv.abs().sum() > 0
    # verl's own gdpo (code reading in anchors, verified here): one None poisons every advantage
    gd = _gdpo(make_dataproto(rows))
    assert torch.isnan(gd).all()


def test_k_schedule_uses_the_global_step_from_the_hook():
    rows = make_rows()
    cfg = algo_config(rvpo_k_schedule="linear:0.5:2.0")
    for step, k in [(1, 0.5), (10, 2.0), (4, 1.0)]:
        metrics = {}
        _run(make_dataproto(rows), "rvpo", cfg, global_steps=step, total_training_steps=10, metrics=metrics)
        assert metrics["rvpo/k"] == pytest.approx(k)
        assert set(metrics) >= {f"rvpo/binding/{k_}" for k_ in KEYS} | {f"rvpo/reward/{k_}/mean" for k_ in KEYS}
    with pytest.raises(RuntimeError, match="needs the training step"):
        _run(make_dataproto(rows), "rvpo", cfg)
    # a step given in kwargs (a future verl that passes it) wins over the context
    est = get_adv_estimator_fn("rvpo")
    d = make_dataproto(rows)
    a5, _ = est(d.batch["token_level_rewards"], d.batch["response_mask"], d.non_tensor_batch["uid"], config=cfg,
                non_tensor_batch=d.non_tensor_batch, global_steps=10, total_training_steps=10)
    a2, _ = est(d.batch["token_level_rewards"], d.batch["response_mask"], d.non_tensor_batch["uid"],
                config=algo_config(rvpo_k=2.0), non_tensor_batch=d.non_tensor_batch)
    torch.testing.assert_close(a5, a2)


def test_scalar_fallback_only_when_allowed_and_loud(caplog):
    rows = make_rows()
    data = make_dataproto(rows)
    with caplog.at_level(logging.WARNING):
        adv = compute_advantage(data, adv_estimator="rvpo",
                                config=algo_config(rvpo_allow_scalar=True, rvpo_whiten="sequence")).batch["advantages"]
    assert "NOT multi-reward RVPO" in caplog.text
    perm, _ = _grouped(rows)
    scalar = torch.tensor([float(np.nansum(rows[i][2])) for i in perm], dtype=torch.float64)
    out = compute_advantages(scalar, G, "rvpo", k=1.0, eps=DEFAULT_EPS)
    want = torch.empty(len(rows), dtype=torch.float64)
    want[perm] = out.advantages
    torch.testing.assert_close(adv.double(), want.unsqueeze(-1) * data.batch["response_mask"].double(),
                               rtol=1e-5, atol=1e-6)


def test_config_and_batch_errors_are_clear():
    rows = make_rows()
    with pytest.raises(KeyError, match="available"):
        _run(make_dataproto(rows), "rvpo", algo_config(rvpo_reward_keys=["format_reward", "nope"]))
    with pytest.raises(ValueError, match="rvpo_reward_weights"):
        _run(make_dataproto(rows), "rvpo", algo_config(rvpo_reward_weights=[1.0]))
    with pytest.raises(ValueError, match="rvpo_whiten"):
        _run(make_dataproto(rows), "rvpo", algo_config(rvpo_whiten="batch"))
    with pytest.raises(ValueError, match="rvpo_k_schedule"):
        _run(make_dataproto(rows), "rvpo", algo_config(rvpo_k_schedule="wobbly:1"))
    with pytest.raises(ValueError, match="same number of responses"):
        _run(make_dataproto(rows[:-1]), "rvpo", algo_config())
    cfg = algo_config(rvpo_reward_keys=None, gdpo_reward_keys=list(KEYS))  # falls back to gdpo's keys
    assert rv.RVPOSettings.from_config(cfg).reward_keys == tuple(KEYS)


def test_adaptive_k_needs_no_step_and_logs_what_drove_it():
    rows = make_rows("interleaved")
    cfg = algo_config(rvpo_k_schedule="adaptive:0.3:0.5:6", rvpo_whiten="sequence")
    metrics = {}
    adv = _run(make_dataproto(rows), "rvpo", cfg, metrics=metrics)  # no global step: fine for adaptive
    k = metrics["rvpo/k"]
    assert 0.5 <= k <= 6 and metrics["rvpo/k_adaptive/target"] == 0.3 and "rvpo/k_adaptive/neff" in metrics
    # the resolved k, given as a constant, reproduces the advantages
    fixed = _run(make_dataproto(rows), "rvpo", algo_config(rvpo_k=k, rvpo_whiten="sequence"))
    torch.testing.assert_close(adv, fixed, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rvpo_noise_floor"):
        _run(make_dataproto(rows), "rvpo", algo_config(rvpo_noise_floor=[-1.0]))


def test_settings_are_the_advantage_spec_with_its_defaults():
    """algorithm.rvpo_* is read through rvpo.core.AdvantageSpec: the defaults are the spec's (eps 1e-4,
    k linear 0.5 -> 2.0), rvpo_k is the constant short form, and bad values name the verl key."""
    from rvpo.core import AdvantageSpec

    s = rv.RVPOSettings.from_config(OmegaConf.create({"rvpo_reward_keys": list(KEYS)}), "rvpo")
    assert s.advantage == AdvantageSpec(whiten=False)  # token whitening is the adapter's, not the core's
    assert s.resolve_k(1, 10) == 0.5 and s.resolve_k(10, 10) == 2.0
    with pytest.raises(RuntimeError, match="needs the training step"):
        s.resolve_k(None, None)
    assert s.resolve_k(None, None, m=1) == 0.5  # one component: k has no effect, no step needed
    s = rv.RVPOSettings.from_config(algo_config(rvpo_k=3.0, rvpo_eps=1e-6, rvpo_whiten="sequence"), "hardmin")
    assert s.advantage == AdvantageSpec(estimator="hardmin", k="3", eps=1e-6, whiten=True)
    with pytest.raises(ValueError, match=r"algorithm\.rvpo_eps: must be >= 0"):
        rv.RVPOSettings.from_config(algo_config(rvpo_eps=-1.0))
    with pytest.raises(ValueError, match=r"algorithm\.rvpo_beta"):
        rv.RVPOSettings.from_config(algo_config(rvpo_beta="x"))
