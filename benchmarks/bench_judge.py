"""Judge throughput, cache and fault tolerance against the local SmolLM2 judge server.

Runs, in one process and against one ``rvpo judge serve --backend model`` subprocess:
  1. N distinct judge requests at concurrency 1, then the same N at concurrency 8 (no cache):
     throughput of each and the ratio c8 / c1 (the server batches concurrent requests).
  2. the concurrency-8 run again with a sqlite cache, twice: the rerun's HTTP call count (goal 0).
then against a second server with ``--fault-rate`` (default 0.3) injected faults:
  3. 2N requests, once with no retries/re-asks and once with the default budget; every request ends
     as a verdict or an abstention, and every abstention is listed with its reason.

Usage: .venv/bin/python benchmarks/bench_judge.py [--n 16] [--free] [--model PATH] [--json-out F]
       .venv/bin/python benchmarks/bench_judge.py --prefix-share [--completions 2] [--criteria 8]
``--prefix-share`` loads the model in this process (no server) and times the constrained verdict of
``completions x criteria`` requests in one batch, every request run whole (before) and each transcript run
once with only its criteria's tails per request (after), each with the rubric item last (today) and
before the instruction (the earlier layout): judge seconds per criterion, side by side.
``--free`` measures unconstrained generation instead of the constrained JSON verdict. The
machine's CPU may be shared: read the ratio within this one run, not against other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import httpx

from rvpo.judge import JudgeClient, JudgeConfig, JudgeRequest
from rvpo.judge.server import spawn_server

TOPICS = ["a sore throat", "a sprained ankle", "trouble sleeping", "a mild fever", "heartburn after meals",
          "a persistent cough", "back pain from sitting", "seasonal allergies", "a small kitchen burn",
          "motion sickness", "dry eyes from screens", "a tension headache"]
ADVICE = ["rest and drink plenty of fluids", "see a doctor if it lasts more than a week",
          "use a cold compress for twenty minutes", "avoid screens an hour before bed",
          "take an over-the-counter pain reliever as directed on the label"]
CRITERIA = [(5, "Recommends seeing a clinician if symptoms persist or worsen."),
            (3, "Mentions staying hydrated."), (-4, "Suggests a prescription-only medicine without a clinician."),
            (2, "Uses clear, non-technical language.")]


def make_requests(n: int) -> list[JudgeRequest]:
    """``n`` distinct (conversation, rubric item) pairs of realistic health-advice shape."""
    out = []
    for i in range(n):
        topic, advice = TOPICS[i % len(TOPICS)], ADVICE[i % len(ADVICE)]
        points, criterion = CRITERIA[i % len(CRITERIA)]
        convo = [{"role": "user", "content": f"I have {topic} since yesterday. What can I do at home? (case {i})"},
                 {"role": "assistant", "content": f"For {topic}, {advice}. If it gets worse, or you notice new "
                                                  f"symptoms, contact a healthcare professional."}]
        out.append(JudgeRequest(convo, criterion, points))
    return out


def timed_run(url: str, reqs: list[JudgeRequest], concurrency: int, json_mode: bool,
              cache_path: str | None = None, **cfg) -> dict:
    client = JudgeClient(JudgeConfig(base_url=url, model="smollm2-135m-instruct", concurrency=concurrency,
                                     json_mode=json_mode, cache_path=cache_path, **cfg))
    t0 = time.perf_counter()
    outcomes = client.judge_detailed(reqs)
    wall = time.perf_counter() - t0
    client.close()
    st = client.stats.as_dict()
    return {"concurrency": concurrency, "n": len(reqs), "wall_s": round(wall, 2),
            "throughput_rps": round(len(reqs) / wall, 3), "stats": st,
            "abstained": [(i, o.reason) for i, o in enumerate(outcomes) if o.verdict is None],
            "verdicts": [None if o.verdict is None else o.verdict.criteria_met for o in outcomes]}


PREFIX_CRITERIA = [c for _, c in CRITERIA] + ["Explains why rest helps recovery.", "Gives a time frame for improvement.",
                                              "Mentions warning signs that need urgent care.",
                                              "Avoids recommending unproven supplements."]


def item_first(msgs: list[dict]) -> list[dict]:
    """The request laid out as before 2026-12-05: the rubric item, then the instruction (item not last)."""
    user = msgs[1]["content"]
    head, instruction, item = user.rsplit("\n\n", 2)
    return [msgs[0], {"role": "user", "content": f"{head}\n\n{item}\n\n{instruction}"}]


def prefix_share(model: str, completions: int, criteria: int, repeats: int) -> dict:
    """Seconds per criterion of the constrained verdict, whole requests vs. shared transcripts (one process).

    Four variants, alternated within each repeat: each request run whole or each transcript shared,
    with today's layout (item last) and the earlier one (item, then the instruction). "whole" with the
    earlier layout is the judge before prefix sharing; its token count equals today's whole layout.
    """
    import torch

    from rvpo.judge import render_judge_messages
    from rvpo.judge.backends import ModelBackend

    backend = ModelBackend(model, precision="auto")
    msgs = []
    for r in make_requests(completions):
        conv = r.conversation
        msgs += [render_judge_messages(conv, c, 5) for c in (PREFIX_CRITERIA * 4)[:criteria]]
    layouts = {"item_last": msgs, "item_first": [item_first(m) for m in msgs]}
    variants = [(f"{share_label}/{layout}", share, layout) for layout in layouts
                for share_label, share in (("whole", False), ("shared", True))]
    out: dict = {"completions": completions, "criteria": criteria, "requests": len(msgs)}
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    ps: dict[str, list[float]] = {}
    with torch.inference_mode():
        backend._constrained(msgs[:1])  # the system prompt's KV cache, once
        for _ in range(repeats):
            for label, share, layout in variants:
                backend.share_prefix = share
                t0 = time.perf_counter()
                ps[label] = backend._constrained(layouts[layout])
                times[label].append(time.perf_counter() - t0)
    for label, _, _ in variants:
        best = min(times[label])
        out[label] = {"s_per_criterion": round(best / len(msgs), 4), "batch_s": round(best, 3), "p": ps[label]}
        print(f"{label:>18}: {best:.2f} s for {len(msgs)} criteria = {best / len(msgs):.3f} s/criterion "
              f"(best of {repeats})", flush=True)
    base = out["whole/item_first"]["batch_s"]
    for label, _, _ in variants:
        out[label]["speedup_vs_whole_item_first"] = round(base / out[label]["batch_s"], 2)
    diff = max(abs(a - b) for a, b in zip(ps["whole/item_last"], ps["shared/item_last"], strict=True))
    out["max_abs_p_diff"] = diff
    out["speedup"] = out["shared/item_last"]["speedup_vs_whole_item_first"]
    print(f"speed-up of shared/item_last over whole/item_first (the judge before sharing): x{out['speedup']}; "
          f"over shared/item_first (item before the instruction): "
          f"x{out['shared/item_first']['batch_s'] / out['shared/item_last']['batch_s']:.2f}; "
          f"max |P(true) whole - shared| = {diff:.2e}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefix-share", action="store_true", help="time shared-transcript judging (see above)")
    ap.add_argument("--completions", type=int, default=2, help="--prefix-share: graded completions")
    ap.add_argument("--criteria", type=int, default=8, help="--prefix-share: criteria per completion")
    ap.add_argument("--repeats", type=int, default=2, help="--prefix-share: timed repeats (best kept)")
    ap.add_argument("--n", type=int, default=16, help="judge requests per run")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model folder or embedded name")
    ap.add_argument("--free", action="store_true", help="unconstrained generation instead of JSON mode")
    ap.add_argument("--max-tokens", type=int, default=96, help="max_tokens per judge answer (free mode)")
    ap.add_argument("--fault-rate", type=float, default=0.3, help="injected fault probability in run 3")
    ap.add_argument("--fault-n", type=int, default=None, help="requests in the fault runs (default 2 n)")
    ap.add_argument("--fault-kinds", default="500,429,timeout,malformed,slow", help="kinds for run 3")
    ap.add_argument("--json-out", default=None, help="also write all results to this JSON file")
    args = ap.parse_args(argv)
    if args.prefix_share:
        res = prefix_share(args.model, args.completions, args.criteria, args.repeats)
        res["loadavg"] = os.getloadavg()
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(res, f, indent=2)
        return 0
    json_mode = not args.free
    reqs = make_requests(args.n)
    results: dict = {"n": args.n, "json_mode": json_mode, "model": args.model, "cpu_count": os.cpu_count(),
                     "loadavg_start": os.getloadavg()}
    print(f"# bench_judge: n={args.n} json_mode={json_mode} model={args.model} "
          f"loadavg={results['loadavg_start'][0]:.1f} on {os.cpu_count()} CPUs (shared machine)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with spawn_server("--backend", "model", "--model", args.model, timeout_s=900) as url:
            print(f"server up in {time.perf_counter() - t0:.1f}s at {url}", flush=True)
            warm = timed_run(url, make_requests(2)[:1], 1, json_mode, timeout_s=600, max_tokens=args.max_tokens)
            print(f"warm-up (system-prompt KV cache): {warm['wall_s']}s", flush=True)
            c1 = timed_run(url, reqs, 1, json_mode, timeout_s=600, max_tokens=args.max_tokens)
            print(f"c=1: {c1['throughput_rps']} req/s ({c1['wall_s']}s, abstained {len(c1['abstained'])})", flush=True)
            c8 = timed_run(url, reqs, 8, json_mode, timeout_s=600, max_tokens=args.max_tokens)
            print(f"c=8: {c8['throughput_rps']} req/s ({c8['wall_s']}s, abstained {len(c8['abstained'])})", flush=True)
            ratio = c8["throughput_rps"] / c1["throughput_rps"]
            print(f"ratio c8/c1 = {ratio:.2f}x", flush=True)
            cache = os.path.join(tmp, "judge.sqlite")
            fill = timed_run(url, reqs, 8, json_mode, cache_path=cache, timeout_s=600, max_tokens=args.max_tokens)
            rerun = timed_run(url, reqs, 8, json_mode, cache_path=cache, timeout_s=600, max_tokens=args.max_tokens)
            print(f"cache: first run {fill['stats']['calls']} calls, rerun {rerun['stats']['calls']} calls "
                  f"({rerun['stats']['cache_hits']} hits, {rerun['wall_s']}s)", flush=True)
            batch_sizes = httpx.get(url + "/stats", timeout=30).json()["batch_sizes"]
        agree = sum(a == b for a, b in zip(c1["verdicts"], c8["verdicts"], strict=True))
        print(f"verdicts identical at c=1 and c=8 (batched): {agree}/{len(reqs)}; batch sizes {batch_sizes}")
        results.update(c1=c1, c8=c8, ratio=round(ratio, 3), cache_fill=fill, cache_rerun=rerun,
                       server_batch_sizes=batch_sizes, c1_c8_agree=agree)
        # Client timeout: well above a normal answer at c=8, so only injected hangs time out.
        timeout = max(10.0, 2 * (c8["stats"]["latency_max_s"] or 1.0))
        with spawn_server("--backend", "model", "--model", args.model, "--fault-rate", str(args.fault_rate),
                          "--fault-kinds", args.fault_kinds, "--seed", "0", "--slow", "2", timeout_s=900) as url:
            freqs = make_requests(args.fault_n or 2 * args.n)
            for label, budget in (("no retries", dict(max_retries=0, max_reasks=0)),
                                  ("default retries", dict(max_retries=3, max_reasks=2))):
                faulty = timed_run(url, freqs, 8, json_mode, timeout_s=timeout, max_tokens=args.max_tokens,
                                   backoff_s=0.2, **budget)
                st = faulty["stats"]
                assert len(faulty["verdicts"]) == faulty["n"] and st["abstentions"] == len(faulty["abstained"])
                print(f"faults {args.fault_rate:.0%} ({label}: {budget}; client timeout {timeout:.0f}s): "
                      f"completed {faulty['n']}/{faulty['n']} requests in {faulty['wall_s']}s: "
                      f"{faulty['n'] - len(faulty['abstained'])} verdicts, {st['abstentions']} abstentions "
                      f"{st['failures']}; calls {st['calls']}, retries {st['retries']}, reasks {st['reasks']}",
                      flush=True)
                for i, reason in faulty["abstained"]:
                    print(f"  abstained: request {i}: {reason}")
                results[f"fault_run_{label.replace(' ', '_')}"] = faulty
            server = httpx.get(url + "/stats", timeout=30).json()
            print(f"fault server: {server['requests']} requests, faults drawn {server['faults']}", flush=True)
        results.update(fault_server=server, fault_client_timeout_s=timeout)
    results["loadavg_end"] = os.getloadavg()
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
