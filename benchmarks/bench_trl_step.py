"""Step-time overhead of RVPO over GDPO inside TRL's GRPOTrainer (goal: ratio rvpo/gdpo <= 1.005).

One RVPOTrainer (SmolLM2-135M-Instruct with LoRA by default) trains for ``--steps`` optimizer steps
after ``--warmup`` untimed ones, alternating the estimator every step (gdpo, rvpo, gdpo, rvpo, ...)
so that slow drifts of the shared machine and of completion lengths hit both alike. Completions are
forced to ``--max-completion-length`` tokens (``min_new_tokens``) so every step does the same work.

Reported:
* median step time per estimator and their ratio rvpo/gdpo (wall clock; noisy on a shared CPU);
* advantage-only time: the ``rvpo.compute_advantages`` call per step, per estimator;
* the same call repeated ``--micro-reps`` times on the last batch's rewards (a quiet estimate);
* the whole adapter's time (our override minus TRL's own method: the advantage call, metrics and the
  completions-table fix-up) as a fraction of the step. This is what the overhead is about; the
  step-time ratio adds the machine's noise to it.

Run:  .venv/bin/python benchmarks/bench_trl_step.py            (about 3-5 minutes on 2 CPU cores)
      .venv/bin/python benchmarks/bench_trl_step.py --steps 40 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads crawl on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder, 'smollm2-135m-instruct' (default) or a hub id")
    p.add_argument("--steps", type=int, default=12, help="timed optimizer steps (even: half gdpo, half rvpo)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--num-generations", type=int, default=4, help="G, completions per prompt")
    p.add_argument("--prompts-per-step", type=int, default=1, help="prompts per optimizer step")
    p.add_argument("--max-completion-length", type=int, default=16, help="tokens per completion (forced)")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (r=16)")
    p.add_argument("--k", default="linear:0.5:2.0", help="rvpo k schedule")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--micro-reps", type=int, default=200, help="repetitions of the advantage call alone")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


# three rule rewards with different failure modes (one abstains on some prompts)
def r_length(prompts, completions, **kw):
    return [min(len(c[0]["content"]) / 60.0, 1.0) for c in completions]


def r_keyword(prompts, completions, **kw):
    return [float("the" in c[0]["content"].lower()) + 0.1 * c[0]["content"].count(".") for c in completions]


def r_concise(prompts, completions, **kw):
    return [None if "list" in p[-1]["content"] else -len(c[0]["content"].split()) / 20.0
            for p, c in zip(prompts, completions, strict=True)]


PROMPTS = [
    "Give one tip for staying healthy.", "List three fruits.", "What is photosynthesis?",
    "Why is the sky blue?", "List two planets.", "Explain dehydration briefly.",
    "What does a doctor do?", "Name a safe way to lift a box.",
]


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.steps < 2 or a.steps % 2:
        raise SystemExit("--steps: an even number >= 2")
    if a.threads:
        torch.set_num_threads(a.threads)
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    import rvpo.integrations.trl as rvpo_trl
    from rvpo.integrations.trl import RVPOConfig, RVPOTrainer
    from rvpo.model.loading import load_model_and_tokenizer

    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(a.model)
    load_s = time.perf_counter() - t0
    peft_config = None
    if not a.full:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"])

    g, b = a.num_generations, a.prompts_per_step
    total = a.warmup + a.steps
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
                            for i in range(total * b)])
    out_dir = tempfile.mkdtemp(prefix="rvpo_bench_")
    args = RVPOConfig(
        output_dir=out_dir, use_cpu=not torch.cuda.is_available(), bf16=False, fp16=False, report_to="none",
        per_device_train_batch_size=g * b, num_generations=g, max_completion_length=a.max_completion_length,
        generation_kwargs={"min_new_tokens": a.max_completion_length}, temperature=1.0, beta=0.0,
        loss_type="dapo", learning_rate=1e-4 if peft_config else 1e-5, max_steps=total, logging_steps=1,
        save_strategy="no", gradient_checkpointing=False, seed=0, disable_tqdm=True,
        rvpo_estimator="gdpo", rvpo_k_schedule=a.k,
    )

    # timers: the advantage call, TRL's own scoring method, and ours around it
    adv_s: dict[int, float] = {}
    base_s: dict[int, float] = {}
    ours_s: dict[int, float] = {}
    real_compute = rvpo_trl.compute_advantages
    real_base = GRPOTrainer._generate_and_score_completions

    class Timed(RVPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            ours_s[self.state.global_step] = time.perf_counter() - t
            return out

    def timed_base(self, inputs):
        t = time.perf_counter()
        out = real_base(self, inputs)
        base_s[self.state.global_step] = time.perf_counter() - t
        return out

    last_call: dict[str, object] = {}

    def timed_compute(*args_, **kw):
        t = time.perf_counter()
        out = real_compute(*args_, **kw)
        adv_s[trainer.state.global_step] = time.perf_counter() - t
        last_call.update(args=args_, kw=kw)
        return out

    step_s: dict[int, float] = {}
    estimator_at: dict[int, str] = {}

    class Alternate(TrainerCallback):
        def on_step_begin(self, targs, state, control, **kw):
            est = "gdpo" if state.global_step % 2 == 0 else "rvpo"
            trainer.args.rvpo_estimator = est
            estimator_at[state.global_step] = est
            self.t = time.perf_counter()

        def on_step_end(self, targs, state, control, **kw):
            step_s[state.global_step - 1] = time.perf_counter() - self.t

    rvpo_trl.compute_advantages = timed_compute
    GRPOTrainer._generate_and_score_completions = timed_base
    try:
        trainer = Timed(model=model, reward_funcs=[r_length, r_keyword, r_concise], args=args, train_dataset=ds,
                        processing_class=tok, peft_config=peft_config, callbacks=[Alternate()])
        trainer.remove_callback(PrinterCallback)  # keep the output to the summary
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    finally:
        rvpo_trl.compute_advantages = real_compute
        GRPOTrainer._generate_and_score_completions = real_base
        shutil.rmtree(out_dir, ignore_errors=True)

    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in range(a.warmup, total):
        e = estimator_at[s]
        by[e]["step"].append(step_s[s])
        by[e]["adv"].append(adv_s[s])
        by[e]["adapter"].append(ours_s[s] - base_s[s])
    med = {e: {k: statistics.median(v) for k, v in d.items()} for e, d in by.items()}
    # paired ratios: each rvpo step over the gdpo step just before it (drift cancels within a pair)
    pairs = [step_s[s + 1] / step_s[s] for s in range(a.warmup, total - 1) if estimator_at[s] == "gdpo"]
    # the advantage call alone, repeated on the last batch's rewards (quiet, unlike whole steps)
    rewards, group = last_call["args"][0], last_call["args"][1]
    kw = dict(last_call["kw"])
    micro: dict[str, list[float]] = defaultdict(list)
    for _ in range(a.micro_reps):
        for est in ("gdpo", "rvpo"):
            kw["estimator"] = est
            t = time.perf_counter()
            real_compute(rewards, group, **kw)
            micro[est].append(time.perf_counter() - t)
    micro_med = {e: statistics.median(v) for e, v in micro.items()}
    res = {
        "model": a.model or "smollm2-135m-instruct", "lora": not a.full, "device": str(trainer.accelerator.device),
        "threads": torch.get_num_threads(), "steps_timed": a.steps, "warmup": a.warmup,
        "completions_per_step": g * b, "max_completion_length": a.max_completion_length,
        "load_s": load_s, "train_s": train_s, "median": med,
        "step_ratio_rvpo_over_gdpo": med["rvpo"]["step"] / med["gdpo"]["step"],
        "adv_overhead_rvpo_minus_gdpo_frac_of_step": (med["rvpo"]["adv"] - med["gdpo"]["adv"]) / med["gdpo"]["step"],
        "adapter_frac_of_step": {e: med[e]["adapter"] / med[e]["step"] for e in med},
        "paired_step_ratio_median": statistics.median(pairs),
        "micro_adv_call_s": micro_med,
        "micro_adv_overhead_frac_of_step": (micro_med["rvpo"] - micro_med["gdpo"]) / med["gdpo"]["step"],
        "raw": {e: {k: list(v) for k, v in d.items()} for e, d in by.items()},
    }
    print(f"model {res['model']} ({'LoRA' if res['lora'] else 'full'}), {res['device']}, {res['threads']} threads, "
          f"{g * b} completions x {a.max_completion_length} tokens per step, {a.steps} timed steps")
    for e in ("gdpo", "rvpo"):
        m = med[e]
        print(f"  {e}: median step {m['step']:.3f} s | advantage call {m['adv'] * 1e3:.3f} ms | "
              f"whole adapter {m['adapter'] * 1e3:.3f} ms ({m['adapter'] / m['step']:.2e} of the step)")
    print(f"step-time ratio rvpo/gdpo: {res['step_ratio_rvpo_over_gdpo']:.4f} (wall clock, noisy; goal <= 1.005)")
    print(f"paired step-time ratio (median of rvpo step / preceding gdpo step): {res['paired_step_ratio_median']:.4f}")
    print(f"advantage-only overhead of rvpo over gdpo: {res['adv_overhead_rvpo_minus_gdpo_frac_of_step']:+.2e} "
          f"of a step (in training); repeated {a.micro_reps}x on the last batch: gdpo "
          f"{micro_med['gdpo'] * 1e3:.3f} ms, rvpo {micro_med['rvpo'] * 1e3:.3f} ms per call, "
          f"{res['micro_adv_overhead_frac_of_step']:+.2e} of a step")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
