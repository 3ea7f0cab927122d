"""Base rates of the constraints task's channels for an untrained policy (sampled, the task's sizes).

    nice -n 5 .venv/bin/python benchmarks/constraints_base_rates.py --prompts 48 --group 8 --max-new-tokens 48
    nice -n 5 .venv/bin/python benchmarks/constraints_base_rates.py --greedy-eval test --limit 128
    nice -n 5 .venv/bin/python benchmarks/constraints_base_rates.py --greedy-eval ifeval --limit 160 --max-new-tokens 160

Sampling mode: ``--prompts`` train-split prompts x ``--group`` samples at ``--temperature`` (1.0),
bf16 generation; prints, per channel, the share of completions that meet it, its n, and the share
of groups where the channel has no spread (all G equal: no learning signal), plus the prompt-level
"all met" rate and the mean quality. Greedy mode: IFEval's four numbers on the held-out split or
the real IFEval file. ``--out FILE`` writes the JSON (responses included). Loads the embedded
SmolLM2-135M-Instruct unless ``--model`` names another.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from rvpo.model.generation import generate
from rvpo.model.policy import load_policy
from rvpo.runs import to_json
from rvpo.tasks.constraints import make_task, score_responses


def sample_rates(task, model, tok, args) -> dict:
    rows = task.load("builtin", "train")[: args.prompts]
    prompts = [r["prompt"] for r in rows for _ in range(args.group)]
    t0 = time.perf_counter()
    comps = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                     batch_size=args.batch_size, seed=args.seed)
    secs = time.perf_counter() - t0
    cols = {c: [r[c] for r in rows for _ in range(args.group)] for c in task.columns}
    table = {}
    for fn in task.reward_funcs():
        vals = fn(prompts, comps, **cols)
        groups = [vals[i:i + args.group] for i in range(0, len(vals), args.group)]
        scored = [g for g in groups if g[0] is not None]
        flat = [v for g in scored for v in g]
        table[fn.__name__] = {"rate": sum(flat) / len(flat) if flat else None, "n": len(flat),
                              "zero_spread": (sum(max(g) == min(g) for g in scored) / len(scored)) if scored else None}
    res = score_responses([r for r in rows for _ in range(args.group)], comps)
    return {"mode": "sample", "prompts": len(rows), "group": args.group, "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature, "seconds": round(secs, 1), "channels": table,
            "all_met": res["metrics"]["prompt_strict"], "metrics": res["metrics"], "ci95": res["ci95"],
            "mean_words": sum(len(c.split()) for c in comps) / len(comps),
            "examples": [{"prompt": p[0]["content"], "completion": c} for p, c in zip(prompts[:: args.group], comps[:: args.group], strict=True)]}


def greedy_eval(task, model, tok, args) -> dict:
    spec = "builtin:test" if args.greedy_eval == "test" else f"ifeval:{args.ifeval_path}" if args.ifeval_path else "ifeval"
    rows = task.load(spec, "eval")[: args.limit or None]
    t0 = time.perf_counter()
    comps = generate(model, tok, [r["prompt"] for r in rows], max_new_tokens=args.max_new_tokens, temperature=0.0,
                     batch_size=args.batch_size)
    res = score_responses(rows, comps)
    res.update(mode="greedy", data=spec, max_new_tokens=args.max_new_tokens, seconds=round(time.perf_counter() - t0, 1))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="policy (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--prompts", type=int, default=48, help="sampling mode: train prompts")
    p.add_argument("--group", type=int, default=8, help="sampling mode: samples per prompt (G)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--max-new-tokens", type=int, default=48, help="completion length")
    p.add_argument("--batch-size", type=int, default=32, help="prompts per generate call")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--greedy-eval", choices=["test", "ifeval"], default=None,
                   help="instead of sampling: greedy IFEval numbers on the held-out split or the IFEval file")
    p.add_argument("--ifeval-path", default=None, help="IFEval input_data.jsonl (default ../shared/data/ifeval)")
    p.add_argument("--limit", type=int, default=0, help="greedy mode: first N rows (0 = all)")
    p.add_argument("--task-options", default="{}", help="JSON dict of make_task options")
    p.add_argument("--out", default=None, help="write the full JSON result here")
    p.add_argument("--fp32", action="store_true", help="generate in fp32 (default bf16)")
    args = p.parse_args()
    task = make_task(**json.loads(args.task_options))
    model, tok = load_policy(args.model)
    if not args.fp32:
        model.to(torch.bfloat16)
    res = greedy_eval(task, model, tok, args) if args.greedy_eval else sample_rates(task, model, tok, args)
    if args.out:
        with open(args.out, "w") as f:
            f.write(to_json(res))
    if res["mode"] == "sample":
        print(f"{res['prompts']} prompts x G={res['group']}, {res['max_new_tokens']} tokens, T={res['temperature']}, "
              f"{res['seconds']} s, mean words {res['mean_words']:.1f}")
        print("| channel | rate | n | zero-spread groups |\n| --- | --- | --- | --- |")
        for name, d in res["channels"].items():
            r, z = d["rate"], d["zero_spread"]
            print(f"| {name} | {'n/a' if r is None else f'{r:.2f}'} | {d['n']} | {'n/a' if z is None else f'{z:.2f}'} |")
        print(f"all instructions met (prompt_strict): {res['all_met']:.3f}")
    else:
        m, ci = res["metrics"], res["ci95"]
        print(f"greedy on {res['data']}: n={res['n']} prompts, {res['n_instructions']} instructions "
              f"({res['n_unsupported']} unsupported excluded, {res['n_dropped_prompts']} prompts dropped), "
              f"{res['max_new_tokens']} tokens, {res['seconds']} s")
        for k in ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose", "quality"):
            if m.get(k) is not None:
                print(f"  {k}: {m[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
