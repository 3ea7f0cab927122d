"""Hand-computed cases, edge cases and loop-vs-vectorised equivalence for the advantage core."""

import math

import pytest
import torch

from rvpo import compute_advantages
from rvpo.core import AdvantageParams, get_estimator, hard_min, mean_minus_var, register_estimator, soft_min
from rvpo.core.estimators import ESTIMATORS, AdvantageOutput
from rvpo.core.groups import group_zscores, make_batch
from rvpo.core.reference import reference_advantages

NAN, INF = float("nan"), float("inf")


def t(x):
    return torch.tensor(x, dtype=torch.float64)


# ---- soft-min by hand -------------------------------------------------------------------------

def test_soft_min_hand_computed():
    # A = -(1/k) log((e^{-k} + e^{k}) / 2) = -(1/k) log cosh(k)
    z = t([[1.0, -1.0]])
    assert soft_min(z, 1.0)[0].item() == pytest.approx(-0.4338, abs=1e-4)  # -log(cosh 1) = -0.43378
    assert soft_min(z, 2.0)[0].item() == pytest.approx(-0.6625, abs=1e-4)  # -log(cosh 2)/2 = -0.66252
    assert soft_min(z, 1.0)[0].item() == pytest.approx(-math.log(math.cosh(1.0)), rel=1e-12)


def test_soft_min_binding_weights_are_softmax_of_minus_kz():
    z = t([[1.0, -1.0, 0.5]])
    _, w = soft_min(z, 2.0)
    expected = torch.softmax(-2.0 * z, dim=1)
    assert torch.allclose(w, expected, atol=1e-12)
    assert w[0].argmax().item() == 1  # the worst channel binds


def test_soft_min_limits_and_equal_scores():
    z = t([[0.3, -1.2, 2.0]])
    assert soft_min(z, 0.0)[0].item() == pytest.approx(z.mean().item(), abs=1e-12)
    assert soft_min(z, INF)[0].item() == pytest.approx(-1.2)
    assert soft_min(t([[0.7, 0.7, 0.7]]), 3.0)[0].item() == pytest.approx(0.7, abs=1e-12)


def test_weighted_soft_min_matches_duplicated_channel():
    # weight 2 on a channel == that channel appearing twice
    z = t([[1.0, -0.5]])
    a, _ = soft_min(z, 1.5, weights=t([2.0, 1.0]))
    b, _ = soft_min(t([[1.0, 1.0, -0.5]]), 1.5)
    assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_mask_drops_channels_and_empty_rows_give_zero():
    z = t([[1.0, -5.0], [2.0, 3.0]])
    mask = torch.tensor([[True, False], [False, False]])
    a, w = soft_min(z, 2.0, mask=mask)
    assert a.tolist() == [1.0, 0.0]
    assert w.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    for fn in (lambda: hard_min(z, mask), lambda: mean_minus_var(z, 0.5, mask)):
        agg, _ = fn()
        assert agg.tolist() == [1.0, 0.0]


def test_explicit_mean_minus_var_by_hand():
    z = t([[1.0, -1.0]])  # mean 0, population var 1
    agg, _ = mean_minus_var(z, 0.25)
    assert agg.item() == pytest.approx(-0.25)


def test_bad_k_beta_weights_raise_naming_the_field():
    z = t([[1.0, 0.0]])
    with pytest.raises(ValueError, match="k"):
        soft_min(z, -1.0)
    with pytest.raises(ValueError, match="beta"):
        mean_minus_var(z, -0.1)
    with pytest.raises(ValueError, match="weights"):
        soft_min(z, 1.0, weights=t([1.0, -1.0]))
    with pytest.raises(ValueError, match="weights"):
        compute_advantages(torch.zeros(4, 2), 2, weights=[1.0])


# ---- group z-scores and estimators by hand -----------------------------------------------------

def test_group_zscores_by_hand():
    # group of 3, channel 0 = [1, 2, 3]: mean 2, unbiased std 1 -> Z = [-1, 0, 1]; channel 1 constant
    r = t([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    z, zero = group_zscores(make_batch(r, 3), eps=0.0)
    assert torch.allclose(z[:, 0], t([-1.0, 0.0, 1.0]))
    assert z[:, 1].tolist() == [0.0, 0.0, 0.0]
    assert zero.tolist() == [[False, True]]


def test_nan_abstains_from_group_statistics():
    # channel 0 in a group of 3 with one NaN: stats over [1, 3] -> mean 2, std sqrt(2)
    r = t([[1.0], [NAN], [3.0]])
    z, _ = group_zscores(make_batch(r, 3), eps=0.0)
    assert z[:, 0].tolist() == pytest.approx([-1 / math.sqrt(2), 0.0, 1 / math.sqrt(2)])


def test_singleton_group_and_single_present_value_give_zero():
    out = compute_advantages(t([[1.0, 2.0], [3.0, -4.0]]), group_size=1, estimator="rvpo", whiten=False)
    assert out.advantages.tolist() == [0.0, 0.0]
    out = compute_advantages(t([[1.0], [NAN]]), group_size=2, estimator="gdpo", whiten=False)
    assert out.advantages.tolist() == [0.0, 0.0]


def test_all_abstaining_completion_gets_zero_and_is_left_out_of_whitening():
    r = t([[1.0, 0.0], [0.0, 1.0], [NAN, NAN], [1.0, 1.0]])
    out = compute_advantages(r, group_size=4, estimator="rvpo", k=1.0, eps=1e-8)  # unit std up to eps / std
    assert out.advantages[2].item() == 0.0
    assert out.m_eff.tolist() == [2, 2, 0, 2]
    scored = out.advantages[[0, 1, 3]]
    assert scored.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert scored.std().item() == pytest.approx(1.0, abs=1e-4)


def test_gdpo_by_hand():
    # two groups of 2; each channel's z in a group of 2 is +-1/sqrt(2) (unbiased std = |a-b|/sqrt(2))
    r = t([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    out = compute_advantages(r, 2, "gdpo", eps=0.0, whiten=False)
    s = 1 / math.sqrt(2)
    assert out.advantages.tolist() == pytest.approx([0.0, 0.0, 2 * s, -2 * s])


def test_grpo_scales():
    r = t([[1.0, 1.0], [0.0, 0.0], [3.0, 1.0], [1.0, 1.0]])  # sums [2, 0, 4, 2]
    g = compute_advantages(r, 2, "grpo", eps=0.0, scale="group").advantages
    assert g.tolist() == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2)] * 2)
    n = compute_advantages(r, 2, "grpo", scale="none").advantages
    assert n.tolist() == pytest.approx([1.0, -1.0, 1.0, -1.0])
    b = compute_advantages(r, 2, "grpo", eps=0.0, scale="batch").advantages
    bstd = torch.tensor([2.0, 0.0, 4.0, 2.0]).std().item()
    assert b.tolist() == pytest.approx([1 / bstd, -1 / bstd, 1 / bstd, -1 / bstd])


def test_rvpo_prefers_the_completion_without_a_failing_channel():
    # completion 0 is best on two easy channels but the only one failing the constraint (channel 2).
    # easy z ~ [1.02, -0.15, -1.31, 0.44], constraint z = [-1.5, 0.5, 0.5, 0.5]:
    # gdpo: 2(1.02) - 1.5 = 0.54 > 2(-0.15) + 0.5 = 0.21; rvpo (k=2): -0.96 < -0.01
    r = t([[1.0, 1.0, 0.0], [0.9, 0.9, 1.0], [0.8, 0.8, 1.0], [0.95, 0.95, 1.0]])
    gd = compute_advantages(r, 4, "gdpo").advantages
    rv = compute_advantages(r, 4, "rvpo", k=2.0).advantages
    assert gd[0] > gd[1]  # the sum of z-scores prefers the violation
    assert rv[1] > rv[0]  # the soft-min does not


# ---- diagnostics ------------------------------------------------------------------------------

def test_diagnostics():
    r = t([[1.0, 0.0, NAN], [0.0, 1.0, 2.0], [INF, 1.0, 0.0], [0.5, NAN, 1.0]])
    out = compute_advantages(r, 4, "rvpo", k=2.0)
    assert out.n_nan.tolist() == [0, 1, 1]
    assert out.n_inf.tolist() == [1, 0, 0]
    assert out.m_eff.tolist() == [2, 3, 2, 2]
    assert out.k == 2.0
    assert out.binding_mean.sum().item() == pytest.approx(1.0)
    assert out.min_frac.sum().item() == pytest.approx(1.0)
    # each row's binding weights are softmax(-kZ) over its present channels
    for i in range(4):
        p = out.present[i]
        assert torch.allclose(out.binding[i, p], torch.softmax(-2.0 * out.z[i, p], 0), atol=1e-12)
        assert (out.binding[i, ~p] == 0).all()
    m = out.metrics(["a", "b", "c"])
    assert m["rvpo/k"] == 2.0 and m["rvpo/abstain/b"] == 1.0 and m["rvpo/nonfinite/a"] == 1.0
    assert all(math.isfinite(v) for v in m.values())
    with pytest.raises(ValueError, match="channel_names"):
        out.metrics(["a"])


# ---- loop reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", ["gdpo", "rvpo", "rvpo_explicit", "hardmin"])
@pytest.mark.parametrize("n_groups,g,m,seed", [(1, 1, 1, 0), (5, 1, 3, 1), (7, 2, 4, 2), (16, 8, 5, 3), (9, 16, 17, 4)])
def test_vectorised_matches_loop(estimator, n_groups, g, m, seed):
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(n_groups * g, m, generator=gen, dtype=torch.float64)
    r[torch.rand(r.shape, generator=gen) < 0.15] = NAN
    r[torch.rand(r.shape, generator=gen) < 0.05] = 0.25  # ties and zero-spread groups
    if r.shape[0] > 2:
        r[1] = NAN  # an all-abstaining completion
    w = (torch.rand(m, generator=gen, dtype=torch.float64) + 0.1).tolist()
    for whiten in (True, False):
        out = compute_advantages(r, g, estimator, k=1.7, beta=0.4, weights=w, whiten=whiten).advantages
        ref = reference_advantages(r, g, estimator, k=1.7, beta=0.4, weights=w, whiten=whiten)
        assert torch.allclose(out, ref, rtol=1e-9, atol=1e-9), (out - ref).abs().max()


# ---- registry ---------------------------------------------------------------------------------

def test_registry_lookup_errors_and_custom_estimators():
    assert {"grpo", "gdpo", "rvpo", "rvpo_explicit", "hardmin"} <= set(ESTIMATORS)
    with pytest.raises(ValueError, match="registered"):
        get_estimator("nope")
    with pytest.raises(ValueError, match="cannot import"):
        get_estimator("rvpo.core.does_not_exist:fn")
    with pytest.raises(ValueError, match="unknown advantage parameter"):
        compute_advantages(torch.zeros(2, 1), 2, kk=1.0)

    @register_estimator("test_mean_only")
    def mean_only(batch, p: AdvantageParams) -> AdvantageOutput:
        return ESTIMATORS["rvpo"](batch, AdvantageParams(k=0.0, eps=p.eps))

    try:
        r = torch.randn(8, 3, dtype=torch.float64)
        a = compute_advantages(r, 4, "test_mean_only").advantages
        b = compute_advantages(r, 4, "rvpo", k=0.0).advantages
        assert torch.equal(a, b)
        with pytest.raises(ValueError, match="already registered"):
            register_estimator("test_mean_only")(lambda batch, p: None)
    finally:
        ESTIMATORS.pop("test_mean_only")
    # dotted path to a module-level function works too
    c = compute_advantages(r, 4, "rvpo.core.estimators:gdpo").advantages
    assert torch.equal(c, compute_advantages(r, 4, "gdpo").advantages)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="group_size"):
        compute_advantages(torch.zeros(5, 2), 2)
    with pytest.raises(ValueError, match="group_size"):
        compute_advantages(torch.zeros(4, 2), 0)
    with pytest.raises(ValueError, match="rewards"):
        compute_advantages(torch.zeros(4, 2, 1), 2)
    with pytest.raises(ValueError, match="scale"):
        compute_advantages(torch.zeros(4, 2), 2, "grpo", scale="bogus")


def test_dtype_is_preserved_and_one_dimensional_input_is_one_channel():
    r = torch.tensor([1.0, 0.0, 2.0, 3.0], dtype=torch.float32)
    out = compute_advantages(r, 2, "rvpo")
    assert out.advantages.dtype == torch.float32 and out.advantages.shape == (4,)


@pytest.mark.parametrize("estimator", ["rvpo", "rvpo_explicit", "hardmin"])
def test_drop_zero_spread_equals_removing_the_channel(estimator):
    # channel 2 is constant in group 0 (no signal) but varies in group 1
    r = t([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [0.5, 0.2, 5.0], [0.2, 0.9, 1.0], [0.7, 0.1, 2.0], [0.4, 0.4, 0.0]])
    dropped = compute_advantages(r, 3, estimator, k=2.0, drop_zero_spread=True, whiten=False).aggregate
    kept = compute_advantages(r, 3, estimator, k=2.0, whiten=False).aggregate
    without = compute_advantages(r[:3, :2], 3, estimator, k=2.0, whiten=False).aggregate
    assert torch.allclose(dropped[:3], without, atol=1e-12)  # group 0: as if the channel were absent
    assert torch.allclose(dropped[3:], kept[3:], atol=1e-12)  # group 1: the channel has signal
    if estimator != "hardmin":  # (every completion of group 0 has a negative Z: the min ignores the 0)
        assert not torch.allclose(kept[:3], without)  # by default the Z = 0 channel takes part


def test_equal_values_whose_mean_rounds_are_zero_spread():
    # 0.1 * 3 / 3 != 0.1 in floating point; the rounding residue must not become a signal
    r = t([[0.1], [0.1], [0.1]])
    out = compute_advantages(r, 3, "rvpo", eps=0.0)
    assert out.zero_spread.tolist() == [[True]]
    assert out.z.abs().max().item() == 0.0 and out.advantages.abs().max().item() == 0.0


def test_soft_min_shifted_and_unshifted_paths_agree():
    z = t([[3.0, -2.0, 0.5], [40.0, 41.0, 45.0]])
    for k in (1.0, 10.0, 100.0):  # k * max|z| below and above the no-shift threshold
        a, w = soft_min(z, k)
        ref = -(torch.logsumexp(-k * z, dim=1) - math.log(3)) / k
        assert torch.allclose(a, ref, atol=1e-9)
        assert torch.allclose(w, torch.softmax(-k * z, dim=1), atol=1e-12)
    # shifted path with an inactive channel far below the active ones (exp(-k (0 - 40)) would overflow)
    a, w = soft_min(t([[40.0, 41.0, 0.0]]), 50.0, mask=torch.tensor([[True, True, False]]))
    assert torch.isfinite(a).all() and w[0, 2].item() == 0.0 and w.sum().item() == pytest.approx(1.0)
    a32, _ = soft_min(torch.tensor([[40.0, 41.0]]), 50.0)  # float32: exp(-2000) would underflow unshifted
    assert torch.isfinite(a32).all() and a32.item() == pytest.approx(40.0 + math.log(2 / (1 + math.exp(-50))) / 50, abs=1e-4)


@pytest.mark.parametrize("k", [2e-6, 0.5, 3.0, 25.0, 1e4])  # series, fused -kZ, fused, shifted, shifted
def test_every_soft_min_path_matches_the_loop_and_reports_the_same_z(k):
    gen = torch.Generator().manual_seed(7)
    r = torch.randn(6 * 16, 5, generator=gen, dtype=torch.float64)
    r[torch.rand(r.shape, generator=gen) < 0.2] = NAN
    out = compute_advantages(r, 16, "rvpo", k=k)
    ref = reference_advantages(r, 16, "rvpo", k=k)
    assert torch.allclose(out.advantages, ref, rtol=1e-7, atol=1e-7), (out.advantages - ref).abs().max()
    z_gdpo = compute_advantages(r, 16, "gdpo").z
    assert torch.allclose(out.z, z_gdpo, atol=1e-12)
    assert torch.allclose(out.binding.sum(dim=1), torch.ones(r.shape[0], dtype=torch.float64))


def test_zero_spread_frac_counts_only_the_groups_that_score_the_channel():
    nan = float("nan")
    # 3 groups of 2; channel 0 is scored everywhere (spread in group 0 only), channel 1 only in group 2 (no spread)
    r = torch.tensor([[1.0, nan], [0.0, nan], [1.0, nan], [1.0, nan], [0.0, 1.0], [0.0, 1.0]])
    out = compute_advantages(r, 2, estimator="rvpo", k=1.0)
    assert out.zero_spread_frac.tolist() == pytest.approx([2 / 3, 1.0])
    m = out.metrics(["a", "b"], prefix="rvpo/")
    assert m["rvpo/zero_spread_frac/a"] == pytest.approx(2 / 3) and m["rvpo/zero_spread_frac/b"] == 1.0
