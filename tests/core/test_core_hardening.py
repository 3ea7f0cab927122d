"""Issue 15, the advantage core: dtypes, eps = 0, float32 precision over k, clear errors, a fuzz run."""

import collections

import numpy as np
import pytest
import torch

from rvpo import compute_advantages
from rvpo.core import AdaptiveK
from rvpo.core.fuzz import DTYPES, ESTIMATORS, check_case, fuzz_case, precision_errors

NAN = float("nan")


def test_fuzz_every_estimator_dtype_and_option_stays_finite():
    seen = collections.Counter()
    failures = []
    for seed in range(3000):
        case = fuzz_case(seed)
        p = case["params"]
        seen[case["estimator"], case["rewards"].dtype] += 1
        seen["eps=0"] += p["eps"] == 0.0
        seen["adaptive"] += isinstance(p.get("k"), AdaptiveK)
        seen["noise_floor"] += "noise_floor" in p
        seen["weights"] += "weights" in p
        problems = check_case(case)
        if problems:
            failures.append((seed, problems))
    assert not failures, failures[:5]
    # the draw really covers the grid it claims to
    assert all(seen[e, d] > 10 for e in ESTIMATORS for d in DTYPES if d != torch.int64)
    assert sum(seen[e, torch.int64] for e in ESTIMATORS) > 100
    assert seen["eps=0"] > 500 and seen["adaptive"] > 30 and seen["noise_floor"] > 200 and seen["weights"] > 500


def test_float32_matches_float64_over_k():
    ks = [0.0, 1e-7, 1e-6, 5e-6, 1e-5, 3e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1e3]
    errs = precision_errors(ks)
    assert max(errs.values()) < 5e-6, errs  # was 6e-2 at k = 1e-5 with the direct formula
    r = torch.rand(256, 8, generator=torch.Generator().manual_seed(0))
    # gdpo whitens the SUM of z-scores, rvpo at k -> 0 their MEAN: equal up to eps / std, so a tiny eps here
    gd = compute_advantages(r, 4, "gdpo", eps=1e-8).advantages
    assert (compute_advantages(r, 4, "rvpo", k=1e-5, eps=1e-8).advantages - gd).abs().max() < 1e-4  # the Taylor term


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_caller_dtype_returned_and_half_inputs_do_not_overflow(dtype):
    r = torch.tensor([[6e4] * 4, [-6e4] * 4], dtype=dtype)
    for est, kw in (("grpo", {"scale": "none"}), ("grpo", {}), ("gdpo", {}), ("rvpo", {"k": 2.0})):
        out = compute_advantages(r, 2, est, **kw)
        assert out.advantages.dtype == dtype and torch.isfinite(out.advantages).all()
        assert torch.isfinite(out.aggregate).all()
    big = compute_advantages(torch.rand(8, 3), 4, "grpo", weights=[1e38, 1e38, 1e38], scale="none")
    assert torch.isfinite(big.advantages).all() and big.advantages.abs().max() > 1e30


def test_integer_rewards_are_float32_and_agree_with_floats():
    r = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])
    out = compute_advantages(r, 4, "rvpo", k=1.0)
    assert out.advantages.dtype == torch.float32
    assert torch.equal(out.advantages, compute_advantages(r.float(), 4, "rvpo", k=1.0).advantages)


def test_eps_zero_is_safe():
    # a subnormal spread beside one near 1e30: finite, and the huge channel's z-scores are kept
    r = torch.tensor([[1e-310, 1e30], [3e-310, 2e30], [2e-310, 1e30], [5e-310, 3e30]], dtype=torch.float64)
    out = compute_advantages(r, 4, "rvpo", eps=0.0)
    assert torch.isfinite(out.advantages).all() and out.advantages.abs().max() > 0.5
    # equal aggregates that differ by rounding only: no spread, advantages 0 (not +-1.8)
    base = torch.full((8, 3), 0.1, dtype=torch.float64)
    base[1] += 1e-17
    base[3] += 2e-17
    assert compute_advantages(base, 4, "gdpo", eps=0.0).advantages.abs().max() == 0.0


@pytest.mark.parametrize("kwargs,match", [
    ({"rewards": torch.zeros(4, 0)}, "rewards: need at least one reward channel"),
    ({"rewards": torch.tensor([[1 + 1j, 2], [3, 4]])}, "rewards: complex"),
    ({"rewards": [[1.0, 2.0], [3.0]]}, "rewards:"),
    ({"whiten": "no"}, "whiten: expected True or False"),
    ({"unbiased": None}, "unbiased: expected True or False"),
    ({"drop_zero_spread": 1}, "drop_zero_spread"),
    ({"group_size": 2.0}, "group_size"),
    ({"group_size": True}, "group_size"),
    ({"group_size": 0}, "group_size"),
    ({"k": "2"}, "k: expected a number"),
    ({"k": True}, "k: expected a number"),
    ({"noise_floor": "x"}, "noise_floor"),
    ({"eps": -1.0}, "eps"),
    ({"weights": ["a", "b"]}, "weights"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
    call = {"rewards": torch.rand(4, 2), "group_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        compute_advantages(call.pop("rewards"), call.pop("group_size"), "rvpo", **call)


def test_sensible_inputs_are_accepted():
    r = [[1.0, None], [0.0, 1.0], [None, None], [1.0, 0.5]]  # None abstains, as NaN
    out = compute_advantages(r, np.int64(4), "rvpo", k=np.float64(1.5))
    nan = torch.tensor([[1.0, NAN], [0.0, 1.0], [NAN, NAN], [1.0, 0.5]])
    assert torch.equal(out.advantages, compute_advantages(nan, 4, "rvpo", k=1.5).advantages)
    assert out.advantages[2] == 0 and out.n_nan.tolist() == [1, 2]
    assert compute_advantages(np.ones((4, 2)), 2, "gdpo", whiten=np.bool_(False)).advantages.dtype == torch.float64
