"""Adaptive k (rvpo.core.adaptive) and the noise-floor mitigation: contract, rule, invariances."""

import math

import pytest
import torch
import yaml

from rvpo import compute_advantages
from rvpo.core import Adaptive, AdaptiveK, make_schedule, schedule_to_dict, schedule_to_str, solve_adaptive_k

NAN = float("nan")


def _rewards(n=256, m=9, seed=0, nan=0.0):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(n, m, generator=g, dtype=torch.float64)
    r[:, -1] = (r[:, -1] > 0.3).double()  # a binary channel, like a constraint
    if nan:
        r[torch.rand(n, m, generator=g) < nan] = NAN
    return r


def _achieved_frac(out, form="linear"):
    """Mean (neff - 1) / (M - 1) (linear) or log neff / log M (power) from the binding weights
    themselves (independent of the solver)."""
    b, present = out.binding, out.present
    m = present.sum(1).double()
    h = -(b * torch.where(b > 0, b.log(), torch.zeros_like(b))).sum(1)
    z = torch.where(present, out.z, torch.nan)
    spread = (z.nan_to_num(-1e300).amax(1) - z.nan_to_num(1e300).amin(1)) > 1e-6
    rows = (m >= 2) & spread
    frac = (h.exp() - 1) / (m - 1) if form == "linear" else h / m.log()
    return float(frac[rows].mean())


@pytest.mark.parametrize("spec", ["adaptive", "adaptive:0.3", "adaptive:0.3:0.5:4", "adaptive:0.4:0.1:6:power",
                                  {"type": "adaptive", "target": 0.2, "k_max": 5}])
def test_schedule_round_trips(spec):
    s = make_schedule(spec)
    assert make_schedule("adaptive") == Adaptive(0.35, 0.25, 8.0, "power")  # the one default setting
    assert isinstance(s, Adaptive)
    assert make_schedule(schedule_to_str(s)) == s
    assert make_schedule(yaml.safe_load(yaml.safe_dump(schedule_to_dict(s)))) == s
    rule = s(3, 10)
    assert isinstance(rule, AdaptiveK) and rule == s(0, 1)  # the rule does not depend on the step


@pytest.mark.parametrize("spec,match", [("adaptive:0", "target"), ("adaptive:1.5", "target"),
                                        ("adaptive:0.5:4:1", "k_min"), ("adaptive:0.5:0:4", "k_min"),
                                        ("adaptive:0.5:1:4:cubic", "form"), ("adaptive:x", "cannot parse")])
def test_bad_adaptive_specs_name_the_field(spec, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(spec)


@pytest.mark.parametrize("form", ["linear", "power"])
@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_resolved_k_hits_the_target_effective_channels(target, form):
    r = _rewards()
    rule = make_schedule(f"adaptive:{target}:0.01:50:{form}")(0, 1)
    out = compute_advantages(r, 8, "rvpo", k=rule)
    assert isinstance(out.k, float) and 0.01 < out.k < 50
    assert _achieved_frac(out, form) == pytest.approx(target, abs=2e-3)
    met = out.metrics()
    assert met["rvpo/k"] == out.k and met["rvpo/k_adaptive/target"] == target
    assert met["rvpo/k_adaptive/frac"] == pytest.approx(target, abs=2e-3)
    assert met["rvpo/k_adaptive/clipped"] == 0.0
    # the same k as a float gives the same advantages: the rule only chooses k
    fixed = compute_advantages(r, 8, "rvpo", k=out.k)
    assert torch.allclose(fixed.advantages, out.advantages, atol=1e-9)


def test_lower_target_means_more_risk_and_power_form_grows_k_with_m():
    r = _rewards()
    ks = [compute_advantages(r, 8, "rvpo", k=AdaptiveK(t, 0.01, 50)).k for t in (0.8, 0.5, 0.2)]
    assert ks == sorted(ks)
    assert ks[0] < ks[1] < ks[2]
    # Gaussian-like z-scores: the linear form keeps k nearly flat in M, the power form raises it
    g = torch.Generator().manual_seed(1)
    lin, pw = [], []
    for m in (4, 32):
        x = torch.randn(512, m, generator=g, dtype=torch.float64)
        lin.append(compute_advantages(x, 8, "rvpo", k=AdaptiveK(0.3, 0.01, 50, "linear")).k)
        pw.append(compute_advantages(x, 8, "rvpo", k=AdaptiveK(0.5, 0.01, 50, "power")).k)
    assert pw[1] > 1.2 * pw[0] and abs(lin[1] - lin[0]) < 0.5 * lin[0]


def test_variable_m_permutation_invariance_and_purity():
    r = _rewards(nan=0.2)
    rule = AdaptiveK(0.4, form="linear")
    a = compute_advantages(r, 8, "rvpo", k=rule)
    perm = torch.cat([torch.randperm(8) + 8 * b for b in torch.randperm(32).tolist()])
    b = compute_advantages(r[perm], 8, "rvpo", k=rule)
    assert b.k == pytest.approx(a.k, rel=1e-9)
    assert torch.allclose(b.advantages, a.advantages[perm], atol=1e-9)
    assert compute_advantages(r, 8, "rvpo", k=rule).k == a.k  # no hidden state
    assert _achieved_frac(a) == pytest.approx(0.4, abs=2e-3)


def test_bounds_and_degenerate_batches():
    r = _rewards()
    hi = compute_advantages(r, 8, "rvpo", k=AdaptiveK(0.01, 0.5, 2.0))
    assert hi.k == 2.0 and hi.extra["k_adaptive/clipped"] == 1.0
    lo = compute_advantages(r, 8, "rvpo", k=AdaptiveK(0.99, 0.5, 2.0))
    assert lo.k == 0.5 and lo.extra["k_adaptive/clipped"] == -1.0
    flat = torch.ones(16, 3)  # no spread anywhere: k changes nothing, the low end is used
    out = compute_advantages(flat, 4, "rvpo", k=AdaptiveK(0.3, 0.5, 4.0))
    assert out.k == 0.5 and torch.equal(out.advantages, torch.zeros(16))
    one = compute_advantages(_rewards(m=1), 8, "rvpo", k=AdaptiveK())  # M = 1: nothing to choose
    assert one.k == AdaptiveK().k_min and all(math.isfinite(v) for v in one.metrics().values())


def test_solver_zero_weight_removes_the_channel():
    z = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(64, 3, dtype=torch.bool)
    k_w, info_w = solve_adaptive_k(z, mask, AdaptiveK(0.5, 0.01, 50, "linear"), weights=torch.tensor([1.0, 1.0, 0.0]))
    k_2, info_2 = solve_adaptive_k(z[:, :2], mask[:, :2], AdaptiveK(0.5, 0.01, 50, "linear"))
    assert k_w == pytest.approx(k_2, rel=1e-9) and info_w["neff_target"] == info_2["neff_target"] == 1.5


# ---- the noise floor ---------------------------------------------------------------------------

def _with_coin_judge(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = _rewards(n=n, m=5, seed=seed)
    coin = (torch.rand(n, 1, generator=g) < 0.5).double()
    return torch.cat([r, coin], dim=1)  # last channel answers at random


def test_noise_floor_shrinks_a_random_judge_and_unbinds_it():
    r = _with_coin_judge()
    floor = [0.0] * 5 + [0.5]  # a coin's verdict has std 0.5 whatever the truth
    off = compute_advantages(r, 8, "rvpo", k=2.0)
    on = compute_advantages(r, 8, "rvpo", k=2.0, noise_floor=floor)
    rel = on.reliability.double().mean(0)
    assert torch.all(rel[:5] == 1.0) and rel[5] < 0.25
    assert on.binding_mean[5] < 0.6 * off.binding_mean[5]
    assert on.metrics()["rvpo/reliability/5"] == pytest.approx(float(rel[5]))
    # hand check of one group: Z scaled by max(0, 1 - floor^2 / var)
    grp = r[:8, 5]
    lam = max(0.0, 1 - 0.25 / float(grp.var()))
    z_off = compute_advantages(r, 8, "gdpo").z[:8, 5]
    assert torch.allclose(compute_advantages(r, 8, "gdpo", noise_floor=floor).z[:8, 5], lam * z_off, atol=1e-12)


def test_zero_floor_is_off_and_bad_floors_are_rejected():
    r = _with_coin_judge(n=64)
    for est in ("gdpo", "rvpo", "rvpo_explicit", "hardmin"):
        a = compute_advantages(r, 8, est, noise_floor=0.0).advantages
        assert torch.equal(a, compute_advantages(r, 8, est).advantages)
    for bad, match in ((-1.0, "noise_floor"), ([0.1, 0.2], "noise_floor"), (float("inf"), "noise_floor")):
        with pytest.raises(ValueError, match=match):
            compute_advantages(r, 8, "rvpo", noise_floor=bad)
