"""The RL step of ``rvpo train`` on this CPU, profiled: two ways of running it, side by side in one run.

Arms (``--arms``):

* ``shared-prefix`` (default): ``before`` = TRL's own generation and logprob forward (every prompt
  computed G times, every position through the LM head, ``generate``'s decode loop), ``after`` =
  rvpo's (``rvpo_shared_prefix``: each prompt once per group, in sampling and in the loss forward,
  :mod:`rvpo.integrations.shared_prefix`; ``rvpo_fast_decode``: the lean decode loop,
  :mod:`rvpo.model.decoding`); both at the machine's ``auto`` precision.
* ``decode``: the shared prefix on in both; ``generate`` against the lean decode loop.
* ``pack``: the lean loop in both; plain weights against packed ones (``rvpo_packed_decode``,
  :mod:`rvpo.model.packed`).
* ``precision``: fp32 against bf16 (rvpo's path in both).

Configs (``--configs``): ``default`` (the README's main job: toolcall, 3 prompts x G=4 x 64 tokens)
and ``neglect`` (the neglect preset's step shape: 4 prompts x G=8 x 48 tokens on the neglect task).

For each round, config and arm, one ``RVPOTrainer`` (same config, seed and prompts) trains
``--steps`` optimizer steps after ``--warmup`` untimed ones; rounds alternate the arms, so the shared
machine's drifts hit both alike. The trainer is the one ``rvpo train`` builds
(:func:`rvpo.train.run.build_trainer`), with TRL's methods wrapped to time:

* ``generation``: ``_generate_single_turn`` (tokens/s over the sampled completion tokens);
* ``rewards``: the task's reward functions (``_calculate_rewards``);
* ``old/ref logps``: logprob passes TRL makes while scoring (0 when it reuses the training forward);
* ``advantages``: the advantage computation inside our override;
* ``scoring, other``: the rest of ``_generate_and_score_completions`` (TRL's bookkeeping and its
  own, discarded, advantage computation);
* ``loss forward``: ``compute_loss``; ``backward``: ``training_step`` minus inputs and loss;
* ``optimizer``: between the optimizer callbacks; ``step``: the whole optimizer step.

Forward+backward tokens/s counts the padded prompt+completion tokens of the batch (the work TRL's
forward would do), so a faster arm that skips repeated prompts shows a higher effective rate. The
FLOP rate counts 2 x params FLOPs per such token for the forward and as much again for the
backward; MFU is that rate over the best 2048 x 2048 matmul rate (fp32, or bf16 where the CPU has bf16
units) measured in the same run, so above-peak "MFU" means work was skipped, not done faster.

Run:  .venv/bin/python benchmarks/bench_cpu_step.py                    (about 10 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_cpu_step.py --configs neglect --rounds 1 --steps 2
      .venv/bin/python benchmarks/bench_cpu_step.py --arms precision     (on a CPU with bf16 units)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads crawl on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ARMS = {
    "shared-prefix": {"before": ("auto", False, False, False), "after": ("auto", True, True, True)},
    "decode": {"generate": ("auto", True, False, False), "lean loop": ("auto", True, True, True)},
    "pack": {"unpacked": ("auto", True, True, False), "packed": ("auto", True, True, True)},
    "precision": {"fp32": ("fp32", True, True, True), "bf16": ("bf16", True, True, True)},
}
"""arm set -> {arm name: (precision, rvpo_shared_prefix, rvpo_fast_decode, rvpo_packed_decode)}"""
CONFIGS = {
    "default": {},
    "neglect": {"task": "neglect", "prompts_per_step": "4", "group_size": "8", "max_completion_length": "48"},
}
"""config name -> rvpo train overrides (on top of the defaults and --set)"""

PARTS = ("generation", "rewards", "old/ref logps", "advantages", "scoring, other", "loss forward", "backward",
         "optimizer", "step")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of (before, after) per config")
    p.add_argument("--arms", choices=sorted(ARMS), default="shared-prefix", help="what to compare")
    p.add_argument("--configs", default="default,neglect", help="comma-separated: " + ", ".join(CONFIGS))
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="rvpo train config override")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Profile:
    """Per-step seconds of each part, plus token counts, collected by wrapping trainer methods."""

    def __init__(self):
        self.steps: list[dict[str, float]] = []
        self.cur: dict[str, float] = defaultdict(float)
        self.in_scoring = False

    def add(self, part: str, dt: float) -> None:
        self.cur[part] += dt


def instrument(trainer, prof: Profile) -> None:
    from transformers import TrainerCallback

    def wrap(name, part=None, before=None, after=None):
        orig = getattr(trainer, name)

        def inner(*a, **kw):
            if before:
                before()
            t0 = time.perf_counter()
            out = orig(*a, **kw)
            dt = time.perf_counter() - t0
            if part:
                prof.add(part(out) if callable(part) else part, dt)
            if after:
                after(out, dt)
            return out

        setattr(trainer, name, inner)

    def gen_done(out, dt):
        prof.add("gen_tokens", sum(len(c) for c in out[0]))

    wrap("_generate_single_turn", "generation", after=gen_done)
    wrap("_calculate_rewards", "rewards")

    def logps_part(_out):
        return "old/ref logps" if prof.in_scoring else "_loss_logps"

    wrap("_get_per_token_logps_and_entropies", logps_part)

    def score_begin():
        prof.in_scoring = True

    def score_end(out, dt):
        prof.in_scoring = False
        prof.add("_scoring_total", dt)
        ids = out["completion_ids"]
        prof.add("fb_tokens", float(out["prompt_ids"].numel() + ids.numel()))

    wrap("_generate_and_score_completions", before=score_begin, after=score_end)
    wrap("_prepare_inputs", "_inputs")
    wrap("compute_loss", "loss forward")
    wrap("training_step", "_training_step")
    from rvpo.core.spec import AdvantageSpec

    orig_adv = AdvantageSpec.compute

    def adv(self, *a, **kw):
        t0 = time.perf_counter()
        out = orig_adv(self, *a, **kw)
        prof.add("advantages", time.perf_counter() - t0)
        return out

    AdvantageSpec.compute = adv
    prof.restore = lambda: setattr(AdvantageSpec, "compute", orig_adv)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            prof.cur = defaultdict(float)
            prof.t_step = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            prof.t_opt = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            prof.add("optimizer", time.perf_counter() - prof.t_opt)

        def on_step_end(self, args, state, control, **kw):
            c = prof.cur
            c["step"] = time.perf_counter() - prof.t_step
            c["scoring, other"] = (c["_scoring_total"] - c["generation"] - c["rewards"] - c["old/ref logps"]
                                   - c["advantages"])
            c["backward"] = c["_training_step"] - c["_inputs"] - c["loss forward"]
            prof.steps.append(dict(c))

    trainer.add_callback(Clock())


def one_run(cfg, precision_name: str, shared_prefix: bool, fast_decode: bool, packed: bool, model_path: str,
            tmp: Path) -> list[dict[str, float]]:
    from dataclasses import replace

    import rvpo.train.run as run
    from rvpo.model.loading import load_model_and_tokenizer
    from rvpo.model.precision import resolve

    cfg = replace(cfg, precision=precision_name)
    precision = resolve(precision_name, "cpu")
    task = run.load_task(cfg)
    rows, _ = run.load_data(replace(cfg, eval=replace(cfg.eval, enabled=False)), task)
    model, tok = load_model_and_tokenizer(model_path, dtype=run.model_dtype(cfg, precision))
    trainer = run.build_trainer(cfg, task, model, tok, rows, tmp / f"{precision_name}-{time.time_ns()}", [], precision)
    trainer.args.rvpo_shared_prefix = shared_prefix
    trainer.args.rvpo_fast_decode = fast_decode
    trainer.args.rvpo_packed_decode = packed
    prof = Profile()
    instrument(trainer, prof)
    torch.manual_seed(cfg.seed)
    try:
        trainer.train()
    finally:
        prof.restore()
    return prof.steps


def report(label: str, cfg, results: dict, peak: float, n_params: int) -> dict:
    """Print the part table and the summary rows of one config; returns the summary rows."""
    names = list(results)
    a, b = names
    med = {name: {part: statistics.median(s.get(part, 0.0) for s in steps) for part in
                  (*PARTS, "gen_tokens", "fb_tokens")} for name, steps in results.items()}
    print(f"\n### {label}: task {cfg.task}, {cfg.prompts_per_step} prompts x G={cfg.group_size}, "
          f"{cfg.max_completion_length} tokens, LoRA {cfg.lora.enabled}; {len(results[a])} timed steps per arm")
    print(f"\n| part (median s per step) | {a} | {b} | {b} / {a} |\n| --- | --- | --- | --- |")
    for part in PARTS:
        x, y = med[a][part], med[b][part]
        print(f"| {part} | {x:.2f} | {y:.2f} | {y / x:.2f} |" if x > 1e-3 else f"| {part} | {x:.3f} | {y:.3f} | - |")
    rows = {}
    for name in names:
        m = med[name]
        fb_s = max(m["loss forward"] + m["backward"], 1e-9)
        fb_rate = 4 * n_params * m["fb_tokens"] / fb_s / 1e9
        rows[name] = {"step_s": m["step"], "gen_tokens_per_s": m["gen_tokens"] / max(m["generation"], 1e-9),
                      "fb_tokens_per_s": m["fb_tokens"] / fb_s, "fb_gflops": fb_rate, "mfu_vs_peak": fb_rate / peak}
    print(f"\n| measure | {a} | {b} | {b} / {a} |\n| --- | --- | --- | --- |")
    for key, lab in (("step_s", "RL step, s"), ("gen_tokens_per_s", "generation, tokens/s"),
                     ("fb_tokens_per_s", "forward+backward, tokens/s"), ("fb_gflops", "forward+backward, GFLOP/s"),
                     ("mfu_vs_peak", "forward+backward MFU vs the matmul peak")):
        x, y = rows[a][key], rows[b][key]
        print(f"| {lab} | {x:.3g} | {y:.3g} | {y / x:.2f} |")
    return {"median": med, "rows": rows}


def main(argv=None) -> int:
    args = parse_args(argv)
    import warnings

    from rvpo.model.loading import load_model_and_tokenizer, resolve_model
    from rvpo.model.precision import cpu_bf16_units
    from rvpo.train.config import build_config, parse_set

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; known: {', '.join(CONFIGS)}")
    arms = ARMS[args.arms]
    cfgs = {}
    for name in configs:
        over = dict(CONFIGS[name])
        over.update(parse_set(args.set))
        over.update({"steps": str(args.warmup + args.steps), "save_steps": "1000", "eval.enabled": "false",
                     "warmstart.enabled": "false"})
        cfgs[name] = build_config(string_overrides=over)
    model_path = resolve_model(cfgs[configs[0]].model)
    bf16_units = cpu_bf16_units()[0]  # without them a bf16 matmul takes minutes (torch's reference kernel)
    results = {c: {arm: [] for arm in arms} for c in configs}
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for c in configs:
                for arm, (prec, shared, fast, packed) in arms.items():
                    peaks.append(max(matmul_gflops(torch.float32),
                                     matmul_gflops(torch.bfloat16) if bf16_units else 0.0))
                    steps = one_run(cfgs[c], prec, shared, fast, packed, model_path, Path(tmp))
                    results[c][arm] += steps[args.warmup:]
                    print(f"round {r + 1} {c} {arm}: step s " + ", ".join(f"{s['step']:.1f}" for s in steps),
                          file=sys.stderr, flush=True)
    model, _ = load_model_and_tokenizer(model_path)
    n_params = sum(p.numel() for p in model.parameters())
    peak = statistics.median(peaks)
    print(f"CPU bf16 units: {cpu_bf16_units()[1]}; torch threads {torch.get_num_threads()}; best matmul rate "
          f"{peak:.0f} GFLOP/s (median over the runs); arms {args.arms}")
    out = {c: report(c, cfgs[c], results[c], peak, n_params) for c in configs}
    if args.json:
        Path(args.json).write_text(json.dumps({"configs": out, "peak_gflops": peak, "steps": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
