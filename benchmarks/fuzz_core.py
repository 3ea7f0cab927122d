"""Fuzz the advantage core: N seeded hostile reward tensors x estimator settings (issue 15).

Every estimator x dtype (float16, bfloat16, float32, float64, int64) x option (eps incl. 0, weights
up to 1e300, k from 0 to inf and adaptive, drop_zero_spread, whiten, unbiased, noise_floor) over
tensors with NaN, +-inf, 1e300, subnormals, constants and mixed scales (``rvpo.core.fuzz``).
Counts what held: finite advantages in the caller's dtype, finite aggregate / z / binding / metrics,
and no exception. Then the float32-vs-float64 precision bound of whitened rvpo over k in [0, 1e3].

    nice -n 10 .venv/bin/python benchmarks/fuzz_core.py [--cases 100000] [--start 0]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch

from rvpo.core.fuzz import check_case, fuzz_case, precision_errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    failed = collections.Counter()
    first: dict[str, int] = {}
    by_est = collections.Counter()
    bad_seeds = set()
    for seed in range(args.start, args.start + args.cases):
        case = fuzz_case(seed)
        by_est[case["estimator"]] += 1
        try:
            problems = check_case(case)
        except Exception as e:  # noqa: BLE001 - counting every way it can fail is the point
            problems = [f"{type(e).__name__}: {str(e)[:100]}"]
        if problems:
            bad_seeds.add(seed)
        for p in problems:
            failed[p] += 1
            first.setdefault(p, seed)
    wall = time.perf_counter() - t0
    print(f"{args.cases} cases (seeds {args.start}..{args.start + args.cases - 1}) in {wall:.0f} s; "
          f"per estimator: {dict(by_est)}")
    print(f"held: {args.cases - len(bad_seeds)}/{args.cases}")
    if failed:
        print("FAILED:", {p: (n, f"first seed {first[p]}") for p, n in failed.items()})
    ks = [0.0, 1e-7, 1e-6, 5e-6, 1e-5, 3e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1e3]
    errs = precision_errors(ks)
    print("max |rvpo float32 - float64| after whitening (256 x 8 uniform, G = 4):")
    print("  " + ", ".join(f"k={k:g}: {e:.1e}" for k, e in errs.items()))


if __name__ == "__main__":
    main()
