"""AdvantageSpec: one declaration of the advantage settings; TRL parity of its defaults; the fused path."""

import pytest
import torch
import yaml

from rvpo import compute_advantages
from rvpo.core import AdaptiveK, AdvantageParams, AdvantageSpec, soft_min
from rvpo.core.aggregate import _soft_min, _soft_min_neg_kz
from rvpo.core.groups import _group_zscores, group_zscores, make_batch


def _trl_normalize_then_sum(rpf: torch.Tensor, g: int, weights: torch.Tensor) -> torch.Tensor:
    """TRL 1.16 GRPOTrainer, multi_objective_aggregation="normalize_then_sum", re-typed line by line
    (trl/trainer/grpo_trainer.py, _generate_and_score_completions), with trl.trainer.utils.nanstd
    re-typed too (importing trl costs ~15 s of transformers imports)."""

    def nanstd(x, dim=None, keepdim=False):
        mean = torch.nanmean(x, dim=dim, keepdim=True)
        variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
        count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
        correction = torch.where(count > 1, count / (count - 1), torch.full_like(variance, float("nan")))
        std = torch.sqrt(variance * correction)
        return std if keepdim else (std.squeeze(dim) if dim is not None else std.reshape(()))

    unscorable_mask = torch.isnan(rpf).all(dim=1)
    grouped = rpf.view(-1, g, rpf.shape[1])
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, rpf.shape[1])
    rewards = (reward_k * weights.unsqueeze(0)).nansum(dim=1)
    rewards[unscorable_mask] = torch.nan
    std_rewards = nanstd(rewards).expand_as(rewards)
    adv = (rewards - torch.nanmean(rewards)) / (std_rewards + 1e-4)
    return torch.where(unscorable_mask, torch.zeros_like(adv), adv)


def test_gdpo_with_the_spec_defaults_is_trls_normalize_then_sum():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(64, 5, generator=g)
    r[:, 4] = (r[:, 4] > 0.5).float()
    r[torch.rand(64, 5, generator=g) < 0.15] = float("nan")
    r[7] = float("nan")  # an unscorable completion
    w = torch.tensor([1.0, 0.5, 2.0, 1.0, 3.0])
    spec = AdvantageSpec(estimator="gdpo")
    ours = spec.compute(r, 8, weights=w).advantages
    torch.testing.assert_close(ours, _trl_normalize_then_sum(r, 8, w), rtol=1e-5, atol=1e-5)
    assert spec.eps == 1e-4


def test_defaults_help_round_trip_and_validation():
    spec = AdvantageSpec()
    assert spec.k == "linear:0.5:2.0" and spec.estimator == "rvpo"
    assert set(AdvantageSpec.help()) == set(spec.to_dict()) and all(AdvantageSpec.help().values())
    s2 = AdvantageSpec.from_dict({"estimator": "rvpo", "k": "adaptive", "weights": [1, 2], "noise_floor": 0.5})
    assert s2.k == "adaptive:0.35:0.25:8.0:power"  # the default adaptive setting, written out
    assert AdvantageSpec.from_dict(yaml.safe_load(yaml.safe_dump(s2.to_dict()))) == s2
    assert isinstance(s2.params(3, 10)["k"], AdaptiveK)
    assert AdvantageSpec(k=2).params()["k"] == 2.0
    assert AdvantageSpec(k="linear:0.5:2.0").params(9, 10)["k"] == 2.0
    with pytest.raises(ValueError, match=r"unknown advantage setting 'unbaised' \(did you mean 'unbiased'\?\)"):
        AdvantageSpec.from_dict({"unbaised": True})
    with pytest.raises(ValueError, match="algorithm.k: cannot parse"):
        AdvantageSpec.from_dict({"k": "wobbly:1"}, where="algorithm.")
    for bad, match in (({"estimator": "nope"}, "estimator"), ({"whiten": "no"}, "whiten"),
                       ({"eps": -1}, "eps"), ({"scale": "row"}, "scale"), ({"weights": ["a"]}, "weights")):
        with pytest.raises(ValueError, match=match):
            AdvantageSpec.from_dict(bad)


def test_spec_params_are_exactly_compute_advantages_kwargs():
    r = torch.rand(32, 3, generator=torch.Generator().manual_seed(1))
    spec = AdvantageSpec(estimator="rvpo", k="linear:0.5:2.0", eps=1e-6, drop_zero_spread=True)
    kw = spec.params(5, 11)
    assert kw["k"] == pytest.approx(1.25)
    est = kw.pop("estimator")
    AdvantageParams(**kw)  # every key is a core parameter
    torch.testing.assert_close(spec.compute(r, 4, 5, 11).advantages,
                               compute_advantages(r, 4, est, **kw).advantages)


@pytest.mark.parametrize("k", [1e-5, 0.01, 0.3, 1.0, 2.0, 7.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_path_equals_the_plain_formula(k, weighted):
    g = torch.Generator().manual_seed(3)
    r = torch.rand(64, 6, generator=g, dtype=torch.float64)
    r[torch.rand(64, 6, generator=g) < 0.2] = float("nan")
    batch = make_batch(r, 8)
    z, _ = group_zscores(batch, 1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 0.0, 3.0], dtype=torch.float64) if weighted else None
    plain, bind = soft_min(z, k, batch.present, w)
    neg_kz, _ = _group_zscores(batch, 1e-6, True, factor=-k)
    wa = batch.presence if w is None else batch.presence * w
    fused, bfn = _soft_min_neg_kz(neg_kz, k, wa, wa.sum(1), 8 ** 0.5)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bfn(), bind, rtol=1e-12, atol=1e-12)
    lazy, lfn = _soft_min(z, k, batch.present, w, z_bound=8 ** 0.5)
    torch.testing.assert_close(lazy, plain, rtol=0, atol=0)
    out = compute_advantages(r, 8, "rvpo", k=k, eps=1e-6, weights=w, whiten=False)
    torch.testing.assert_close(out.aggregate, plain, rtol=1e-12, atol=1e-12)


def test_defaults_equal_a_default_spec_and_k_is_parsed_once(monkeypatch):
    import dataclasses

    import rvpo.core.spec as spec_module

    assert AdvantageSpec.defaults() == AdvantageSpec().to_dict()
    parsed = []
    real = spec_module.make_schedule
    monkeypatch.setattr(spec_module, "make_schedule", lambda s: parsed.append(s) or real(s))
    spec_module._parse_k.cache_clear()
    a = AdvantageSpec(k="cosine:0.25:3.5")
    b = dataclasses.replace(a, weights=(1.0, 2.0))  # copies of a spec (resolved weights) carry the same k
    c = AdvantageSpec.from_dict(b.to_dict())
    assert parsed == ["cosine:0.25:3.5"] and a.schedule is b.schedule is c.schedule
    AdvantageSpec(k=1.5)  # a number: no string to parse
    assert [p for p in parsed if isinstance(p, str)] == ["cosine:0.25:3.5"]


def test_k_at_is_the_schedule_at_a_step_and_describe_names_it():
    spec = AdvantageSpec(k="linear:0.5:2.0")
    assert [spec.k_at(s, 3) for s in range(3)] == [0.5, 1.25, 2.0] == [spec.params(s, 3)["k"] for s in range(3)]
    assert AdvantageSpec(k=2).k_at() == 2.0
    assert spec.describe() == "rvpo, k linear:0.5:2.0"
    assert AdvantageSpec(estimator="gdpo", k="1.5").describe() == "gdpo, k constant:1.5"
