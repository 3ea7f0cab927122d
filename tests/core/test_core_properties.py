"""Hypothesis properties of the soft-min aggregate and the estimators built on it."""

import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rvpo import compute_advantages
from rvpo.core import hard_min, soft_min, weighted_mean_var

settings.register_profile("rvpo", max_examples=60, deadline=None)
settings.load_profile("rvpo")

ESTIMATORS = ["grpo", "gdpo", "rvpo", "rvpo_explicit", "hardmin"]
zval = st.floats(-6.0, 6.0, allow_nan=False)


@st.composite
def z_rows(draw, max_m=8):
    m = draw(st.integers(1, max_m))
    row = draw(st.lists(zval, min_size=m, max_size=m))
    return torch.tensor([row], dtype=torch.float64)


@st.composite
def reward_batches(draw, special=False):
    g = draw(st.integers(1, 6))
    b = draw(st.integers(1, 4))
    m = draw(st.integers(1, 5))
    # quarter-steps: shifts and power-of-two scalings of them are exact in float64
    vals = st.integers(-40, 40).map(lambda x: x / 4)
    if special:
        vals = st.one_of(
            st.floats(-10.0, 10.0),
            st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 1e300, 0.0, 5e-324, 1e-300]),
        )
    flat = draw(st.lists(vals, min_size=b * g * m, max_size=b * g * m))
    return torch.tensor(flat, dtype=torch.float64).view(b * g, m), g


k_pos = st.floats(0.05, 20.0)


@given(z_rows(), k_pos)
def test_between_min_and_mean(z, k):
    a = soft_min(z, k)[0].item()
    assert z.min().item() - 1e-9 <= a <= z.mean().item() + 1e-9


@given(z_rows())
def test_k_to_zero_is_the_mean(z):
    mean, var, _ = weighted_mean_var(z)
    for k in (1e-3, 1e-7):
        a = soft_min(z, k)[0].item()
        assert abs(a - mean.item()) <= k * var.item() / 2 + k * k * 50 + 1e-12


@given(z_rows())
def test_k_to_inf_is_the_min(z):
    m = z.shape[1]
    for k in (1e3, 1e6):
        gap = soft_min(z, k)[0].item() - hard_min(z)[0].item()
        assert -1e-9 <= gap <= math.log(m) / k + 1e-9


@given(z_rows(), k_pos, st.data())
def test_monotone_in_each_channel(z, k, data):
    j = data.draw(st.integers(0, z.shape[1] - 1))
    bump = data.draw(st.floats(1e-3, 3.0))
    z2 = z.clone()
    z2[0, j] += bump
    assert soft_min(z2, k)[0].item() >= soft_min(z, k)[0].item() - 1e-12


@given(z_rows(), k_pos, st.randoms())
def test_invariant_to_permuting_channels(z, k, rnd):
    perm = list(range(z.shape[1]))
    rnd.shuffle(perm)
    a, w = soft_min(z, k)
    a2, w2 = soft_min(z[:, perm], k)
    assert abs(a.item() - a2.item()) < 1e-10
    assert torch.allclose(w[:, perm], w2, atol=1e-12)


@given(z_rows(), st.floats(1e-3, 2.0))
def test_second_order_taylor(z, k):
    # A = mean - k/2 var + O(k^2 R^3) with R the spread around the mean
    mean, var, _ = weighted_mean_var(z)
    r = (z - mean).abs().max().item()
    assume(k * r <= 0.5)
    a = soft_min(z, k)[0].item()
    assert abs(a - (mean.item() - k / 2 * var.item())) <= k * k * r**3 + 1e-12


@given(reward_batches(special=True), st.sampled_from(ESTIMATORS), st.floats(0.0, 50.0), st.floats(0.0, 5.0))
def test_finite_whatever_comes_in(batch, estimator, k, beta):
    r, g = batch
    out = compute_advantages(r, g, estimator, k=k, beta=beta)
    assert torch.isfinite(out.advantages).all()
    assert out.z is None or torch.isfinite(out.z).all()
    assert torch.isfinite(out.aggregate).all()
    assert torch.isfinite(out.binding).all()
    assert out.n_nan.sum().item() == torch.isnan(r).sum().item()
    assert out.n_inf.sum().item() == torch.isinf(r).sum().item()
    assert (out.advantages[out.m_eff == 0] == 0).all()


@given(reward_batches(), st.sampled_from(ESTIMATORS), st.randoms())
def test_equivariant_to_permuting_completions_within_a_group(batch, estimator, rnd):
    r, g = batch
    perm = []
    for start in range(0, r.shape[0], g):
        idx = list(range(start, start + g))
        rnd.shuffle(idx)
        perm += idx
    a = compute_advantages(r, g, estimator, k=1.3).advantages
    b = compute_advantages(r[perm], g, estimator, k=1.3).advantages
    assert torch.allclose(a[perm], b, atol=1e-9)


@given(reward_batches(), st.sampled_from(["gdpo", "rvpo", "rvpo_explicit", "hardmin"]), st.data())
def test_invariant_to_shift_and_positive_scale_of_a_channel_in_a_group(batch, estimator, data):
    r, g = batch
    j = data.draw(st.integers(0, r.shape[1] - 1))
    grp = data.draw(st.integers(0, r.shape[0] // g - 1))
    shift = data.draw(st.integers(-400, 400)) / 4
    scale = 2.0 ** data.draw(st.integers(-4, 4))
    r2 = r.clone()
    rows = slice(grp * g, (grp + 1) * g)
    r2[rows, j] = r2[rows, j] * scale + shift
    # eps=0 makes scaling exact; zero-spread groups give Z = 0 either way. The aggregate is what
    # must not move: whitening is then the same affine map of it (with eps=0 it would also blow
    # rounding noise of an all-zero aggregate up to unit scale, which says nothing about invariance)
    a = compute_advantages(r, g, estimator, k=1.1, eps=0.0, whiten=False).aggregate
    b = compute_advantages(r2, g, estimator, k=1.1, eps=0.0, whiten=False).aggregate
    assert torch.allclose(a, b, atol=1e-6)


@given(reward_batches())
def test_whitened_rvpo_at_k_to_zero_is_whitened_gdpo(batch):
    r, g = batch  # every channel present: the mean and the sum differ by the constant 1/M
    m = r.shape[1]
    # eps=0: with eps > 0 whitening divides by (std + eps), and std differs by the factor M
    ra = compute_advantages(r, g, "rvpo", k=1e-8, eps=0.0)
    gd = compute_advantages(r, g, "gdpo", eps=0.0)
    assert torch.allclose(ra.aggregate * m, gd.aggregate, atol=1e-6)
    # whitening divides by the batch spread: compare only where there is a spread to divide by
    # (an aggregate that is 0 up to eps-sized terms would be amplified the same way in both)
    assume(gd.aggregate.std().item() > 1e-3 if r.shape[0] > 1 else False)
    assert torch.allclose(ra.advantages, gd.advantages, atol=1e-5)


@given(reward_batches())
def test_rvpo_at_huge_k_is_hardmin(batch):
    r, g = batch
    a = compute_advantages(r, g, "rvpo", k=1e9, whiten=False).aggregate
    b = compute_advantages(r, g, "hardmin", whiten=False).aggregate
    assert torch.allclose(a, b, atol=1e-6)


@given(reward_batches(), st.data())
def test_own_advantage_is_monotone_in_own_reward(batch, data):
    # raising one completion's reward on one channel never lowers its own (unwhitened) aggregate
    r, g = batch
    assume(g >= 2)
    i = data.draw(st.integers(0, r.shape[0] - 1))
    j = data.draw(st.integers(0, r.shape[1] - 1))
    r2 = r.clone()
    r2[i, j] += data.draw(st.floats(0.01, 5.0))
    a = compute_advantages(r, g, "rvpo", k=1.5, whiten=False).aggregate[i].item()
    b = compute_advantages(r2, g, "rvpo", k=1.5, whiten=False).aggregate[i].item()
    assert b >= a - 1e-6
