"""Agreement of rvpo's BFCL checker with BFCL's own ``ast_checker``, per category.

    python benchmarks/bfcl_agreement.py                      # every entry of the 8 Python AST categories
    python benchmarks/bfcl_agreement.py --per-category 50 --edits 6 --show 5

Candidates come from :mod:`rvpo.tasks.toolcall.bfcl_suite` (accepted answers and single edits).
rvpo's side goes through the text path a model's completion takes: the calls are rendered in the
ToolRL output format, parsed back with ``parse_output`` and checked by
:func:`rvpo.tasks.toolcall.bfcl.check`. BFCL's side gets the same calls in its decoded form. A
candidate on which BFCL's checker raises is counted apart ("reference errors"), with rvpo's verdict.
Needs ``pip install --no-deps bfcl-eval==2026.3.23``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

from rvpo.tasks.toolcall.bfcl import CATEGORIES
from rvpo.tasks.toolcall.bfcl_suite import reference_checker, rvpo_verdict, suite


def agreement(categories: list[str], seed: int = 0, per_category: int | None = None, n_edits: int = 12,
              show: int = 0) -> dict[str, dict[str, int]]:
    """``{category: {"n", "agree", "ref_errors", "ref_valid"}}``; prints up to ``show`` disagreements."""
    ref, why = reference_checker()
    if ref is None:
        raise SystemExit(why)
    out: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.Counter())
    shown = 0
    for cat, eid, label, functions, answer, calls in suite(categories, seed, per_category, n_edits):
        c = out[cat]
        mine = rvpo_verdict(functions, calls, answer, cat)
        try:
            theirs = ref(functions, calls, answer, cat)
        except Exception as e:  # BFCL's checker raises on some malformed inputs
            c["ref_errors"] += 1
            c[f"ref_error_ours_{mine}"] += 1
            if shown < show:
                print(f"REF ERROR {cat} {eid} {label}: {type(e).__name__}: {e}; rvpo={mine}; {calls}")
                shown += 1
            continue
        c["n"] += 1
        c["ref_valid"] += theirs
        c["agree"] += mine == theirs
        if mine != theirs:
            c[f"diff_{label}"] += 1
            if shown < show:
                print(f"DIFF {cat} {eid} {label}: rvpo={mine} bfcl={theirs}; {calls}")
                shown += 1
    return {k: dict(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--categories", nargs="*", default=[c for c in CATEGORIES if "irrelevance" not in c
                                                       and "java" not in c],
                   help="BFCL categories (Python AST ones; default all eight)")
    p.add_argument("--seed", type=int, default=0, help="suite seed")
    p.add_argument("--per-category", type=int, default=None, help="entries sampled per category (default all)")
    p.add_argument("--edits", type=int, default=12, help="single edits per entry (plus 2 accepted answers)")
    p.add_argument("--show", type=int, default=10, help="print up to N disagreements")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    res = agreement(args.categories, args.seed, args.per_category, args.edits, args.show)
    print("| category | candidates | BFCL-valid | agreement | BFCL errors |")
    print("| --- | --- | --- | --- | --- |")
    tot = collections.Counter()
    for cat in args.categories:
        c = res.get(cat, {})
        n = c.get("n", 0)
        tot.update({k: c.get(k, 0) for k in ("n", "agree", "ref_valid", "ref_errors")})
        print(f"| {cat} | {n} | {c.get('ref_valid', 0)} | {100 * c.get('agree', 0) / max(n, 1):.2f}% "
              f"| {c.get('ref_errors', 0)} |")
    print(f"| all | {tot['n']} | {tot['ref_valid']} | {100 * tot['agree'] / max(tot['n'], 1):.2f}% | {tot['ref_errors']} |")
    diffs = collections.Counter()
    for c in res.values():
        diffs.update({k: v for k, v in c.items() if k.startswith(("diff_", "ref_error_ours"))})
    if diffs:
        print("differences by edit:", dict(diffs))
    print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0 if tot["agree"] == tot["n"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
