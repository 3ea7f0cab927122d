"""GPU smoke check: RVPOTrainer steps and the advantage core on CUDA, with no weights to download or carry.

The model is the embedded default's architecture (SmolLM2-135M: Llama, 30 layers, hidden 576, 9
heads / 3 KV heads, MLP 1536, vocabulary 49152, tied embeddings), randomly initialised from its
config; the tokenizer is a word-level one built here from a generated vocabulary (with a ChatML
template like SmolLM2's), so nothing travels but this file and the rvpo package. Then:

1. ``--steps`` (3) ``RVPOTrainer`` optimizer steps (rvpo, k linear 0.5 -> 2.0, LoRA r=16) with two rule
   rewards on CUDA; prints seconds per step, generated tokens/s and peak GPU memory;
2. the advantage core at N = ``--core-n`` (1M) completions x M = 17 channels (G = 8, 5% NaN) on
   CUDA: median seconds per call for gdpo and rvpo, and peak memory.

A random model writes noise, so the rewards only test that the plumbing runs (every step must give
finite loss, finite advantages and an rvpo/k); no learning is expected.

Run on a GPU machine:   python benchmarks/gpu_smoke.py                    (about 1-2 minutes)
Tiny mode on a CPU:     python benchmarks/gpu_smoke.py --tiny --device cpu  (a 2-layer model; tested
                        in tests/test_gpu_smoke.py)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads crawl on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu")
"""The embedded default's architecture (its config.json), so the GPU check needs no weights."""
TINY = dict(SMOLLM2_135M, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=600)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ("the a an of to in and is was for on with as by at from it this that be are or not have has had "
         "sun moon river city music water light stone garden winter summer story friend".split())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (only with --tiny)")
    p.add_argument("--tiny", action="store_true", help="a 2-layer model, 1 step, N=4096 for the core (CPU test)")
    p.add_argument("--steps", type=int, default=None, help="RVPOTrainer optimizer steps (default 3; tiny 1)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (tiny: 2)")
    p.add_argument("--group-size", type=int, default=8, help="G (tiny: 2)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per completion (tiny: 8)")
    p.add_argument("--core-n", type=int, default=None, help="completions for the core timing (default 2**20; tiny 4096)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def make_tokenizer(vocab_size: int):
    """A word-level fast tokenizer over a generated vocabulary, ChatML special tokens and template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    words = list(dict.fromkeys(WORDS + ["user", "assistant", "system", "\n"]))
    words += [f"w{i}" for i in range(max(0, vocab_size - len(special) - len(words)))]
    vocab = {tok: i for i, tok in enumerate(special + words[: vocab_size - len(special)])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<unk>")
    tok.chat_template = CHATML
    tok.add_special_tokens({"additional_special_tokens": special[1:3]})
    return tok


def make_model(arch: dict, tok, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**arch, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(device)


def r_words(prompts, completions, **kw):
    """Rule reward: more words, up to 20."""
    return [min(len(c[0]["content"].split()) / 20.0, 1.0) for c in completions]


def r_nature(prompts, completions, **kw):
    """Rule reward: share of words from a small set."""
    keep = {"sun", "moon", "river", "water", "light", "stone", "garden"}
    out = []
    for c in completions:
        ws = c[0]["content"].split()
        out.append(sum(w in keep for w in ws) / max(len(ws), 1))
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def trainer_steps(args, arch: dict) -> dict:
    """``args.steps`` RVPOTrainer steps on a random model; per-step seconds and tokens/s."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback

    from rvpo.integrations.trl import RVPOConfig, RVPOTrainer

    tok = make_tokenizer(arch["vocab_size"])
    model = make_model(arch, tok, args.device)
    rows = [{"prompt": [{"role": "user", "content": f"tell me about the {w} and the {v}"}]}
            for w, v in zip(WORDS[20:], reversed(WORDS[20:]), strict=True)]
    ds = Dataset.from_list(rows * 4)
    times: list[float] = []
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            _sync(args.device)
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            _sync(args.device)
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = RVPOConfig(output_dir=tmp, rvpo_estimator="rvpo", rvpo_k_schedule="linear:0.5:2.0",
                         num_generations=args.group_size, per_device_train_batch_size=args.prompts * args.group_size,
                         max_completion_length=args.max_new_tokens, max_steps=args.steps, learning_rate=1e-4,
                         logging_steps=1, save_strategy="no", report_to="none", use_cpu=args.device == "cpu",
                         bf16=args.device == "cuda" and torch.cuda.is_bf16_supported(), temperature=1.0,
                         disable_tqdm=True, seed=0)
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])
        trainer = RVPOTrainer(model=model, reward_funcs=[r_words, r_nature], args=cfg, train_dataset=ds,
                              processing_class=tok, peft_config=lora, callbacks=[Clock()])
        orig = trainer._generate_single_turn

        def counted(*a, **kw):
            out = orig(*a, **kw)
            tokens.append(sum(len(c) for c in out[0]))
            return out

        trainer._generate_single_turn = counted
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        out = trainer.last_rvpo_output
        logs = [h for h in trainer.state.log_history if "loss" in h]
    ok = (out is not None and bool(torch.isfinite(out.advantages).all())
          and all(math.isfinite(h["loss"]) and "rvpo/k" in h for h in logs) and len(logs) == args.steps)
    return {"steps": len(times), "step_s": times, "median_step_s": statistics.median(times),
            "gen_tokens_per_s": sum(tokens) / max(sum(times), 1e-9), "peak_gib": _peak_gib(args.device),
            "finite": ok, "rvpo_k": [h.get("rvpo/k") for h in logs]}


def core_timing(args) -> dict:
    """Median seconds of gdpo and rvpo advantages at N x 17 on the device."""
    from rvpo import compute_advantages

    n, m, g = args.core_n, 17, 8
    gen = torch.Generator(device="cpu").manual_seed(0)
    rewards = torch.rand(n, m, generator=gen)
    rewards[torch.rand(n, m, generator=gen) < 0.05] = float("nan")
    rewards = rewards.to(args.device)
    res = {"n": n, "m": m, "group_size": g}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for est, kw in (("gdpo", {}), ("rvpo", {"k": 2.0})):
        compute_advantages(rewards, group_size=g, estimator=est, **kw)  # warm-up
        ts = []
        for _ in range(5):
            _sync(args.device)
            t0 = time.perf_counter()
            out = compute_advantages(rewards, group_size=g, estimator=est, **kw)
            _sync(args.device)
            ts.append(time.perf_counter() - t0)
        res[f"{est}_s"] = statistics.median(ts)
        res[f"{est}_finite"] = bool(torch.isfinite(out.advantages).all())
    res["peak_gib"] = _peak_gib(args.device)
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device here (use --tiny --device cpu for the CPU mode)", file=sys.stderr)
        return 2
    if args.device != "cuda" and not args.tiny:
        print("gpu_smoke: the full-size check is for CUDA; on a CPU pass --tiny", file=sys.stderr)
        return 2
    if args.tiny:
        args.prompts, args.group_size, args.max_new_tokens = min(args.prompts, 2), min(args.group_size, 2), 8
    args.steps = args.steps or (1 if args.tiny else 3)
    args.core_n = args.core_n or (4096 if args.tiny else 2**20)
    arch = TINY if args.tiny else SMOLLM2_135M
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    t0 = time.perf_counter()
    res = {"device": device_name, "arch": arch, "torch": torch.__version__,
           "trainer": trainer_steps(args, arch), "core": core_timing(args)}
    res["wall_s"] = time.perf_counter() - t0
    tr, core = res["trainer"], res["core"]
    print(f"device {device_name}; model {'tiny' if args.tiny else 'SmolLM2-135M architecture'} (random init)")
    print(f"RVPOTrainer: {tr['steps']} steps x {args.prompts} prompts x G={args.group_size} x {args.max_new_tokens} "
          f"tokens: step s {', '.join(f'{t:.2f}' for t in tr['step_s'])}; generation {tr['gen_tokens_per_s']:.0f} "
          f"tokens/s; peak memory {tr['peak_gib'] if tr['peak_gib'] is None else round(tr['peak_gib'], 2)} GiB; "
          f"finite {tr['finite']}")
    print(f"advantage core N={core['n']} x M=17: gdpo {core['gdpo_s'] * 1e3:.1f} ms, rvpo {core['rvpo_s'] * 1e3:.1f} ms; "
          f"peak memory {core['peak_gib'] if core['peak_gib'] is None else round(core['peak_gib'], 2)} GiB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    return 0 if tr["finite"] and core["gdpo_finite"] and core["rvpo_finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
