"""IFEval, all 541 prompts, for the embedded SmolLM2-135M-Instruct: the four numbers, next to the published one.

    .venv/bin/python benchmarks/ifeval_full.py                       # 541 prompts, 256 new tokens, greedy
    .venv/bin/python benchmarks/ifeval_full.py --limit 8             # a smoke run (about a minute on 2 cores)
    .venv/bin/python benchmarks/ifeval_full.py --max-new-tokens 1280 --responses-out smollm2_ifeval.jsonl

Generation: the chat template, greedy decoding, ``--max-new-tokens`` per prompt (the stated token
budget; a response cut at the budget is scored as it is), batches of ``--batch-size`` prompts sorted by
length (less padding), precision ``auto`` (fp32 on a CPU without bf16 units). Scoring: the code of
``rvpo eval constraints`` (:func:`rvpo.tasks.constraints.score_responses`): all 25 instruction types,
langdetect seeded for the three language types, no prompt dropped. ``--responses-out`` writes
``{key, response}`` JSONL, which ``rvpo eval constraints --data ifeval --responses FILE`` and
``benchmarks/ifeval_agreement.py --responses FILE`` read back.

Published figure for comparison: the SmolLM2-135M-Instruct model card
(https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct, "Instruction model" table, row
"IFEval (Average prompt/inst)") gives 29.9, against 17.2 for SmolLM-135M-Instruct; the same pair
(29.9 vs 17.2) is quoted in https://github.com/xezpeleta/Idaztian/releases/tag/v1.2.1. The card does
not say whether strict or loose is averaged, nor the generation budget (their evaluation used
lighteval), so compare it with both averages printed here, as an order of magnitude, not a replication.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: shared cores (see tests/conftest.py)

PUBLISHED = {"value": 29.9, "metric": "IFEval (Average prompt/inst)",
             "source": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct (model card, instruction model table)"}
DEFAULT_IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"


def generate_sorted(model, tok, prompts: list, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy responses in the original order, generated in length-sorted batches (with progress on stderr)."""
    from rvpo.model.generation import generate

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0]["content"]))
    out: list[str] = [""] * len(prompts)
    t0 = time.perf_counter()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        texts = generate(model, tok, [prompts[i] for i in idx], max_new_tokens=max_new_tokens,
                         temperature=0.0, batch_size=batch_size)
        for i, text in zip(idx, texts, strict=True):
            out[i] = text
        done = min(start + batch_size, len(order))
        print(f"  {done}/{len(order)} prompts, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ifeval", default=str(DEFAULT_IFEVAL), help="IFEval input_data.jsonl (541 prompts)")
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts (0 = all 541)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="token budget per response (stated in the output)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto: bf16 only where the CPU has bf16 matrix units, else fp32")
    p.add_argument("--model", default=None, help="a model folder or run directory (default: the embedded model)")
    p.add_argument("--responses-out", default=None, help="write {key, response} JSONL here")
    p.add_argument("--json", default=None, help="write the numbers as JSON here")
    args = p.parse_args()
    if not Path(args.ifeval).is_file():
        print(f"SKIPPED: {args.ifeval}: no such file (the IFEval prompts)")
        return 0
    from rvpo.model.policy import load_policy
    from rvpo.tasks.constraints import load_jsonl_rows, score_responses
    from rvpo.tasks.constraints.instructions import detect_language

    detect_language("fail now, not after generating, if langdetect is missing")
    rows = load_jsonl_rows(args.ifeval)
    rows = rows[: args.limit] if args.limit else rows
    t0 = time.perf_counter()
    model, tok = load_policy(args.model, precision=args.precision)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    responses = generate_sorted(model, tok, [r["prompt"] for r in rows], args.max_new_tokens, args.batch_size)
    t_gen = time.perf_counter() - t1
    res = score_responses(rows, responses)
    t_total = time.perf_counter() - t0
    m = res["metrics"]
    if args.responses_out:
        Path(args.responses_out).write_text("".join(json.dumps({"key": r["key"], "response": s}) + "\n"
                                                    for r, s in zip(rows, responses, strict=True)), encoding="utf-8")
    precision = getattr(model, "rvpo_precision", None)
    print(f"IFEval: {res['n']} prompts, {res['n_instructions']} instructions, model "
          f"{args.model or 'smollm2-135m-instruct (embedded)'}, greedy, {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}, precision {getattr(precision, 'name', args.precision)}")
    print("| metric | ours [95% CI] |\n| --- | --- |")
    for k in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose"):
        lo, hi = res["ci95"][k]
        print(f"| {k} | {100 * m[k]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |")
    avg_strict = 50 * (m["prompt_strict"] + m["inst_strict"])
    avg_loose = 50 * (m["prompt_loose"] + m["inst_loose"])
    print(f"| average prompt/inst, strict | {avg_strict:.1f} |\n| average prompt/inst, loose | {avg_loose:.1f} |")
    print(f"published: {PUBLISHED['value']} ({PUBLISHED['metric']}; {PUBLISHED['source']})")
    print(f"wall time: {t_total:.0f} s (model load {t_load:.0f} s, generation {t_gen:.0f} s, "
          f"{t_gen / max(len(rows), 1):.2f} s/prompt)")
    if res["n_unsupported"]:
        print(f"note: {res['n_unsupported']} instructions of unknown type counted as not followed")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": res["n"], "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "metrics": {k: m[k] for k in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")},
            "ci95": {k: res["ci95"][k] for k in ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")},
            "average_strict": avg_strict, "average_loose": avg_loose, "published": PUBLISHED,
            "seconds": {"total": t_total, "load": t_load, "generation": t_gen}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
