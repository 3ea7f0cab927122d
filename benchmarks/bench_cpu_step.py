"""fp32 against bf16 on this CPU: the RL step of ``rvpo train``'s config, profiled, side by side in one run.

For each round, one ``RVPOTrainer`` per precision (same config, same seed, same prompts) trains
``--steps`` optimizer steps after ``--warmup`` untimed ones; rounds alternate fp32, bf16, fp32,
bf16, ... so the shared machine's drifts hit both alike. The trainer is the one ``rvpo train``
builds (:func:`rvpo.train.run.build_trainer`), with TRL's methods wrapped to time:

* ``generation``: ``_generate_single_turn`` (tokens/s over the sampled completion tokens);
* ``rewards``: the task's reward functions (``_calculate_rewards``);
* ``old/ref logps``: logprob passes TRL makes while scoring (0 when it reuses the training forward);
* ``advantages``: :func:`rvpo.compute_advantages` inside our override;
* ``scoring, other``: the rest of ``_generate_and_score_completions`` (TRL's bookkeeping and its
  own, discarded, advantage computation);
* ``loss forward``: ``compute_loss``; ``backward``: ``training_step`` minus inputs and loss;
* ``optimizer``: between the optimizer callbacks; ``step``: the whole optimizer step.

The forward+backward FLOP rate counts 2 x params FLOPs per token for the forward and as much again
for the backward (LoRA: activation gradients; the adapters' own weight gradients are ~4% extra and
not counted), over the padded prompt+completion tokens; MFU is that rate over the bf16 matmul peak
(2048 x 2048) measured in the same run.

Run:  .venv/bin/python benchmarks/bench_cpu_step.py                   (about 5 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_cpu_step.py --rounds 1 --steps 2 --set task=constraints
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

PARTS = ("generation", "rewards", "old/ref logps", "advantages", "scoring, other", "loss forward", "backward",
         "optimizer", "step")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="rounds of (fp32 run, bf16 run)")
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
    import rvpo.integrations.trl as adapter
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
    orig_adv = adapter.compute_advantages

    def adv(*a, **kw):
        t0 = time.perf_counter()
        out = orig_adv(*a, **kw)
        prof.add("advantages", time.perf_counter() - t0)
        return out

    adapter.compute_advantages = adv

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


def one_run(cfg, precision_name: str, model_path: str, tmp: Path) -> list[dict[str, float]]:
    from dataclasses import replace

    from rvpo.models import load_model_and_tokenizer
    from rvpo.precision import resolve
    from rvpo.train.run import build_trainer, load_data, load_task, model_dtype

    cfg = replace(cfg, precision=precision_name)
    precision = resolve(precision_name, "cpu")
    task = load_task(cfg)
    rows, _ = load_data(replace(cfg, eval=replace(cfg.eval, enabled=False)), task)
    model, tok = load_model_and_tokenizer(model_path, dtype=model_dtype(cfg, precision))
    trainer = build_trainer(cfg, task, model, tok, rows, tmp / f"{precision_name}-{time.time_ns()}", [], precision)
    prof = Profile()
    instrument(trainer, prof)
    torch.manual_seed(cfg.seed)
    trainer.train()
    import rvpo.integrations.trl as adapter
    from rvpo.core import compute_advantages

    adapter.compute_advantages = compute_advantages
    return prof.steps


def main(argv=None) -> int:
    args = parse_args(argv)
    from rvpo.models import resolve_model
    from rvpo.precision import cpu_bf16_units
    from rvpo.train.config import build_config, parse_set

    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    over = parse_set(args.set)
    over.update({"steps": str(args.warmup + args.steps), "save_steps": "1000", "eval.enabled": "false",
                 "warmstart.enabled": "false"})
    cfg = build_config(string_overrides=over)
    model_path = resolve_model(cfg.model)
    n_params = None
    results: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("fp32", "bf16"):
                peaks[name].append(matmul_gflops(torch.float32 if name == "fp32" else torch.bfloat16))
                steps = one_run(cfg, name, model_path, Path(tmp))
                results[name] += steps[args.warmup:]
                print(f"round {r + 1} {name}: step s " + ", ".join(f"{s['step']:.1f}" for s in steps), file=sys.stderr)
    from rvpo.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(model_path)
    n_params = sum(p.numel() for p in model.parameters())
    med = {name: {part: statistics.median(s.get(part, 0.0) for s in steps) for part in
                  (*PARTS, "gen_tokens", "fb_tokens")} for name, steps in results.items()}
    peak = {name: statistics.median(v) for name, v in peaks.items()}
    print(f"\nconfig: task {cfg.task}, {cfg.prompts_per_step} prompts x G={cfg.group_size}, "
          f"{cfg.max_completion_length} tokens, LoRA {cfg.lora.enabled}; CPU bf16 units: {cpu_bf16_units()[1]}; "
          f"torch threads {torch.get_num_threads()}; {len(results['fp32'])} timed steps per precision")
    print("\n| part (median s per step) | fp32 | bf16 | bf16 / fp32 |\n| --- | --- | --- | --- |")
    for part in PARTS:
        a, b = med["fp32"][part], med["bf16"][part]
        print(f"| {part} | {a:.2f} | {b:.2f} | {b / a:.2f} |" if a > 1e-3 else f"| {part} | {a:.3f} | {b:.3f} | - |")
    rows = {}
    for name in ("fp32", "bf16"):
        m = med[name]
        gen_tps = m["gen_tokens"] / max(m["generation"], 1e-9)
        fb_flops = 4 * n_params * m["fb_tokens"]
        fb_rate = fb_flops / max(m["loss forward"] + m["backward"], 1e-9) / 1e9
        rows[name] = {"step_s": m["step"], "gen_tokens_per_s": gen_tps,
                      "fb_tokens_per_s": m["fb_tokens"] / max(m["loss forward"] + m["backward"], 1e-9),
                      "fb_gflops": fb_rate, "matmul_peak_gflops": peak[name],
                      "mfu_vs_bf16_peak": fb_rate / peak["bf16"]}
    print("\n| measure | fp32 | bf16 | ratio bf16/fp32 |\n| --- | --- | --- | --- |")
    for key, label in (("step_s", "RL step, s"), ("gen_tokens_per_s", "generation, tokens/s"),
                       ("fb_tokens_per_s", "forward+backward, tokens/s"), ("fb_gflops", "forward+backward, GFLOP/s"),
                       ("matmul_peak_gflops", "2048 matmul peak, GFLOP/s"),
                       ("mfu_vs_bf16_peak", "forward+backward MFU vs bf16 peak")):
        a, b = rows["fp32"][key], rows["bf16"][key]
        print(f"| {label} | {a:.3g} | {b:.3g} | {b / a:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"median": med, "rows": rows, "peak": peak, "steps": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
