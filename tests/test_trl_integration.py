"""RVPOTrainer against TRL 1.16's real code paths, on a tiny random Llama over SmolLM2's vocabulary."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from rvpo import compute_advantages
from rvpo.core import make_schedule
from rvpo.integrations.trl import RVPOConfig, RVPOTrainer, _check_trl_version, expand_multichannel

N = None
# 3 prompts x G=4 completions, 3 reward functions; rewards fixed by position so that two scoring
# calls on different samples see the same matrix. Covers: a channel abstaining for a whole group
# (r2, group 0), a zero-spread group (r1, group 1), a group-channel with one present value (r3,
# group 1), scattered None, and an all-None row (row 8).
R1 = [1.0, 0.0, 0.5, 0.25, 2.0, 2.0, 2.0, 2.0, N, 3.0, 1.0, N]
R2 = [N, N, N, N, 0.0, 1.0, N, 1.0, N, 0.0, 5.0, 2.0]
R3 = [0.3, 0.9, N, 0.1, N, 0.5, N, N, N, 4.0, 4.0, 1.0]
WEIGHTS = [1.0, 0.5, 2.0]


def _positional(values, name):
    def fn(prompts, completions, **kwargs):
        assert len(completions) <= len(values)
        return list(values[: len(completions)])

    fn.__name__ = name
    return fn


def _matrix() -> torch.Tensor:
    return torch.tensor([[math.nan if v is None else v for v in col] for col in (R1, R2, R3)]).T  # (12, 3)


def _args(tmp_path, **kw) -> RVPOConfig:
    base = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, fp16=False, report_to="none",
        per_device_train_batch_size=4, num_generations=4, max_completion_length=8, temperature=1.0,
        beta=0.0, loss_type="dapo", learning_rate=1e-2, logging_steps=1, save_strategy="no",
        gradient_checkpointing=False, seed=0, disable_tqdm=True,
    )
    base.update(kw)
    return RVPOConfig(**base)


def _dataset(n: int) -> Dataset:
    return Dataset.from_list([{"prompt": [{"role": "user", "content": f"Count to {i}."}]} for i in range(n)])


def test_gdpo_matches_trl_normalize_then_sum(tmp_path, tiny_llama, smollm2_tokenizer):
    funcs = [_positional(R1, "r1"), _positional(R2, "r2"), _positional(R3, "r3")]
    args = _args(tmp_path, rvpo_estimator="gdpo", multi_objective_aggregation="normalize_then_sum",
                 reward_weights=WEIGHTS, per_device_train_batch_size=12, num_generations_eval=2)
    trainer = RVPOTrainer(model=tiny_llama, reward_funcs=funcs, args=args, train_dataset=_dataset(3),
                          processing_class=smollm2_tokenizer)
    trainer.model.train()
    inputs = [{"prompt": [{"role": "user", "content": f"Count to {i}."}]} for i in range(3) for _ in range(4)]

    trl_out = GRPOTrainer._generate_and_score_completions(trainer, [dict(x) for x in inputs])  # TRL's own path
    ours = trainer._generate_and_score_completions([dict(x) for x in inputs])
    trl_adv, our_adv = trl_out["advantages"], ours["advantages"]
    assert our_adv.shape == trl_adv.shape == (12,) and our_adv.dtype == trl_adv.dtype
    assert torch.isfinite(trl_adv).all()
    assert our_adv[8] == 0.0 and trl_adv[8] == 0.0  # the all-None row
    assert torch.allclose(our_adv, trl_adv, atol=1e-5, rtol=0), (our_adv - trl_adv).abs().max()
    print(f"\nmax |gdpo - TRL normalize_then_sum| = {(our_adv - trl_adv).abs().max():.2e}")
    assert list(trainer._logs["advantages"])[-12:] == pytest.approx(our_adv.tolist())

    # eval mode groups by num_generations_eval (2 here: 6 groups of 2), in TRL and in ours
    trainer.model.eval()
    trl_eval = GRPOTrainer._generate_and_score_completions(trainer, [dict(x) for x in inputs[:8]])["advantages"]
    ours_eval = trainer._generate_and_score_completions([dict(x) for x in inputs[:8]])["advantages"]
    assert torch.allclose(ours_eval, trl_eval, atol=1e-5, rtol=0), (ours_eval - trl_eval).abs().max()
    assert "rvpo/binding/r1" in trainer._metrics["eval"]
    trainer.model.train()

    # the override really replaces TRL's values: rvpo at k=2 differs and equals the core's output
    trainer.advantage = dataclasses.replace(trainer.advantage, estimator="rvpo", k="2.0")  # the spec the trainer holds
    ours_rvpo = trainer._generate_and_score_completions([dict(x) for x in inputs])["advantages"]
    expected = compute_advantages(_matrix(), 4, "rvpo", k=2.0, eps=1e-4, weights=WEIGHTS).advantages
    assert torch.allclose(ours_rvpo, expected, atol=1e-6)
    assert (ours_rvpo - trl_adv).abs().max() > 1e-2
    assert list(trainer._logs["advantages"])[-12:] == pytest.approx(ours_rvpo.tolist())
    assert trainer._metrics["train"]["rvpo/k"][-1] == 2.0
    assert trainer._metrics["train"]["rvpo/abstain/r2"][-1] == 6.0  # six None in R2


def _varied(prompts, completions, **kwargs):
    return [float(sum(map(ord, c[0]["content"])) % 7) for c in completions]


def _length(prompts, completions, **kwargs):
    return [None if i % 3 == 0 else float(len(c[0]["content"]) % 5) for i, c in enumerate(completions)]


def test_training_logs_schedule_and_resumes(tmp_path, tiny_llama, smollm2_tokenizer, smollm2_dir):
    # gradient accumulation 2 x 2 completions: one generation of 4 (1 prompt x G=4) per optimizer step
    args = _args(tmp_path, max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                 save_strategy="steps", save_steps=2, rvpo_k_schedule="linear:0.5:2.0")
    before = {n: p.detach().clone() for n, p in tiny_llama.named_parameters()}
    trainer = RVPOTrainer(model=tiny_llama, reward_funcs=[_varied, _length], args=args,
                          train_dataset=_dataset(8), processing_class=smollm2_tokenizer)
    trainer.train()
    changed = sum(not torch.equal(before[n], p) for n, p in tiny_llama.named_parameters())
    assert changed > 0
    logs = [h for h in trainer.state.log_history if "rvpo/k" in h]
    sched = make_schedule("linear:0.5:2.0")
    assert [h["rvpo/k"] for h in logs] == pytest.approx([sched(s, 3) for s in range(3)]) == [0.5, 1.25, 2.0]
    for h in logs:
        assert h["rvpo/binding/_varied"] + h["rvpo/binding/_length"] == pytest.approx(1.0)
        assert 0.0 <= h["rvpo/min_frac/_length"] <= 1.0
        assert {"rewards/_varied/mean", "rewards/_varied/std", "rvpo/abstain/_length", "rvpo/m_eff_mean"} <= set(h)

    # resume from the step-2 checkpoint in a fresh trainer: step 3 uses k = schedule(2, 3) = 2.0
    from transformers import AutoModelForCausalLM

    ckpt = tmp_path / "out" / "checkpoint-2"
    assert ckpt.is_dir()
    model2 = AutoModelForCausalLM.from_pretrained(ckpt)
    trainer2 = RVPOTrainer(model=model2, reward_funcs=[_varied, _length], args=args,
                           train_dataset=_dataset(8), processing_class=smollm2_tokenizer)
    trainer2.train(resume_from_checkpoint=str(ckpt))
    resumed = [h for h in trainer2.state.log_history if "rvpo/k" in h]
    assert resumed[-1]["step"] == 3 and resumed[-1]["rvpo/k"] == 2.0
    assert trainer2.state.global_step == 3


def test_config_validates_early(tmp_path):
    with pytest.raises(ValueError, match="rvpo_estimator"):
        _args(tmp_path, rvpo_estimator="softmin")
    with pytest.raises(ValueError, match="rvpo_k_schedule"):
        _args(tmp_path, rvpo_k_schedule="linear:0.5")
    with pytest.raises(ValueError, match="weights"):
        _args(tmp_path, rvpo_estimator="rvpo", reward_weights=[1.0, -1.0])
    cfg = _args(tmp_path, rvpo_k_schedule=1.5)
    assert cfg.rvpo_k_schedule == "constant:1.5"
    assert RVPOConfig.__dataclass_fields__["rvpo_eps"].default == 1e-4
    with pytest.raises(ValueError, match="rvpo_eps: must be >= 0"):
        _args(tmp_path, rvpo_eps=-1.0)


def test_config_fields_are_the_advantage_spec(tmp_path):
    """One declaration: every rvpo_* field has AdvantageSpec's default and help; args.advantage is the spec."""
    from rvpo.core import AdvantageSpec
    from rvpo.integrations.trl import SPEC_FIELDS

    fields = RVPOConfig.__dataclass_fields__
    defaults, helps = AdvantageSpec.defaults(), AdvantageSpec.help()
    for name, attr in SPEC_FIELDS.items():
        if attr != "reward_weights":  # TRL's own field
            assert fields[attr].default == defaults[name] and fields[attr].metadata["help"] == helps[name], attr
    assert set(SPEC_FIELDS) == set(defaults)
    spec = AdvantageSpec(estimator="rvpo_explicit", k="cosine:1:3", beta=0.2, eps=1e-6, weights=(1.0, 2.0),
                         drop_zero_spread=True, noise_floor=(0.1,))
    args = RVPOConfig.from_spec(spec, output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.advantage == spec and args.reward_weights == [1.0, 2.0]
    assert _args(tmp_path).advantage == AdvantageSpec()  # the defaults agree
    args.rvpo_beta = 0.7  # a changed field is seen
    assert args.advantage.beta == 0.7
    with pytest.raises(TypeError, match="come from the spec"):
        RVPOConfig.from_spec(spec, output_dir=str(tmp_path), rvpo_beta=0.1)


def test_trl_version_pin():
    _check_trl_version("1.16.0")
    _check_trl_version("1.16.7.dev0")
    for bad in ("1.15.2", "1.17.0", "2.0.0"):
        with pytest.raises(ImportError, match=r"pip install 'trl>=1.16,<1.17'"):
            _check_trl_version(bad)


class _Rubric:
    """Fake multi-channel reward: channel j scores len(text) + j; the 2nd prompt has only 2 channels."""

    channel_names = ["accuracy", "safety", "tone"]

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        rows = []
        for p, c in zip(prompts, completions, strict=True):
            n = len(c)
            rows.append([n, n + 1, None] if p == "short" else [n, n + 1, n + 2])
        rows[-1] = rows[-1][:2]  # a short row: padded with None
        return rows


def test_expand_multichannel_shares_one_evaluation():
    rubric = _Rubric()
    fns = expand_multichannel(rubric)
    assert [f.__name__ for f in fns] == ["accuracy", "safety", "tone"]
    prompts, completions = ["long", "short", "long"], ["a", "bb", "ccc"]
    cols = [f(prompts=prompts, completions=completions, trainer_state=None) for f in fns]
    assert rubric.calls == 1
    assert cols == [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, None, None]]
    # a new batch (new list objects, even with equal content) is evaluated again, once
    prompts2, completions2 = list(prompts), list(completions)
    cols2 = [f(prompts=prompts2, completions=completions2) for f in fns]
    assert rubric.calls == 2 and cols2 == cols
    assert fns[0].shared.calls == 2


def test_expand_multichannel_async_and_errors():
    class AsyncRubric:
        channel_names = ["a", "b"]
        calls = 0

        async def __call__(self, prompts, completions, **kwargs):
            AsyncRubric.calls += 1
            await asyncio.sleep(0)
            return [[1.0, None] for _ in completions]

    fns = expand_multichannel(AsyncRubric())
    from trl.trainer.utils import is_async_callable

    assert all(is_async_callable(f) for f in fns)

    async def run(p, c):
        return await asyncio.gather(*(f(prompts=p, completions=c) for f in fns))

    p, c = ["x", "y"], ["1", "2"]
    assert asyncio.run(run(p, c)) == [[1.0, 1.0], [None, None]]
    assert AsyncRubric.calls == 1

    class TooLong:
        channel_names = ["a"]

        def __call__(self, prompts, completions, **kwargs):
            return [[1.0, 2.0] for _ in completions]

    with pytest.raises(ValueError, match="row 0 has 2 values"):
        expand_multichannel(TooLong())[0](prompts=["p"], completions=["c"])
    with pytest.raises(TypeError):
        expand_multichannel(lambda p, c: [])


class _ChatRubric:
    """Fake rubric over chat completions: 3 channels, the last one only for even rows."""

    channel_names = ["clarity", "accuracy", "harm"]

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        texts = [c[0]["content"] for c in completions]
        return [[len(t) % 3, t.count("e") % 4] + ([len(t) % 2] if i % 2 == 0 else []) for i, t in enumerate(texts)]


def test_lora_step_trains_only_the_adapter(tmp_path, tiny_llama, smollm2_tokenizer, monkeypatch):
    from peft import LoraConfig

    from rvpo.core import AdvantageSpec

    rubric = _ChatRubric()
    args = _args(tmp_path, max_steps=1)
    spec = AdvantageSpec(k="1.0")  # the trainer holds it: written into args, never rebuilt
    with pytest.raises(ValueError, match="advantage.weights: given by channel name"):
        RVPOTrainer(model=tiny_llama, reward_funcs=[_varied], args=args, advantage=AdvantageSpec(weights={"x": 2.0}))
    trainer = RVPOTrainer(model=tiny_llama, reward_funcs=expand_multichannel(rubric) + [_varied], args=args,
                          advantage=spec, train_dataset=_dataset(4),
                          processing_class=smollm2_tokenizer,
                          peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert trainer.advantage is spec and args.rvpo_k_schedule == "constant:1.0"

    built = []
    real_post_init = AdvantageSpec.__post_init__
    monkeypatch.setattr(AdvantageSpec, "__post_init__", lambda self: built.append(1) or real_post_init(self))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert built == []  # no spec built (and no k parsed) during training
    after = dict(trainer.model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all("lora_" in n for n in moved)
    log = trainer.state.log_history[0]
    assert log["rvpo/k"] == 1.0
    assert rubric.calls == 1  # TRL passed the same batch lists to all three channel functions
    assert log["rvpo/abstain/harm"] == 2.0 and "rewards/accuracy/std" in log  # odd rows of 4 abstain on "harm"


def test_all_binary_met_counts_only_binary_channels_and_scored_rows():
    from rvpo.integrations.trl import all_binary_met

    nan = float("nan")
    r = torch.tensor([[1, 0.5, nan], [1, 0.2, 1], [0, 0.3, 1], [nan, 0.1, nan]])  # col 1 is continuous
    assert all_binary_met(r) == pytest.approx(2 / 3)  # row 3 has no binary score; row 2 misses one
    assert all_binary_met(torch.tensor([[0.5], [0.2]])) is None
