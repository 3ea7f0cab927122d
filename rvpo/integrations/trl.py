"""RVPO for TRL's ``GRPOTrainer`` (pinned to TRL 1.16.x): ``RVPOConfig``, ``RVPOTrainer``, ``expand_multichannel``.

TRL computes advantages inline in ``GRPOTrainer._generate_and_score_completions`` (no smaller hook in
1.16; the maintainers' advice in trl#4525 is to subclass and override that method). We override two
methods and hold no math here (it lives in :mod:`rvpo.core`):

* ``_calculate_rewards``: call TRL's, stash the returned GLOBAL ``(N, M)`` rewards (already
  gathered across processes; NaN where a reward function returned ``None``), return them unchanged.
* ``_generate_and_score_completions``: call TRL's (generation, reward scoring, TRL's own aggregation
  and logging), then recompute advantages from the stashed rewards with
  :func:`rvpo.compute_advantages` (group size ``num_generations``, or ``num_generations_eval`` in
  eval), keep this process's slice, replace ``output["advantages"]``, replace the values TRL just
  appended to the completions table, and add RVPO metrics.

The risk coefficient is the spec's ``k_at(state.global_step, state.max_steps)`` (the adapter hands the
spec its step; the schedule is the spec's business). TRL generates once per
generation batch (``steps_per_generation * num_iterations`` micro-steps, see
``GRPOTrainer._prepare_inputs``), so k is evaluated at the optimizer step at which that batch is
generated and stays fixed for the optimizer steps that reuse it. k is a pure function of the global
step, so checkpoint/resume needs no extra state.

Notation (the core's): ``N`` completions in a generation batch over all processes (prompts times
``G`` generations), ``N_local`` of them on this process, ``M`` reward functions (channels), ``k`` the
soft-min's risk coefficient.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch

try:
    import trl
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("rvpo.integrations.trl needs TRL 1.16.x: pip install 'trl>=1.16,<1.17'") from e

from packaging.version import InvalidVersion, Version

TRL_SUPPORTED = (">=1.16", "<1.17")


def _check_trl_version(version: str) -> None:
    """Raise ``ImportError`` unless ``version`` is a 1.16.x release (we override TRL internals)."""
    try:
        v = Version(version)
    except InvalidVersion:
        raise ImportError(f"rvpo.integrations.trl: cannot read the TRL version {version!r}; "
                          "install a supported one: pip install 'trl>=1.16,<1.17'") from None
    if not (Version("1.16") <= Version(v.base_version) < Version("1.17")):
        raise ImportError(
            f"rvpo.integrations.trl overrides GRPOTrainer internals tested with TRL 1.16.x only, "
            f"found trl {version}; install a supported one: pip install 'trl>=1.16,<1.17'"
        )


_check_trl_version(trl.__version__)

from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from rvpo.core import AdvantageSpec  # noqa: E402
from rvpo.integrations.shared_prefix import (  # noqa: E402
    shared_prefix_generation,
    shared_prefix_logps,
    supports_shared_prefix,
)
from rvpo.model.decoding import fast_generation  # noqa: E402
from rvpo.model.policy import is_peft, merged_lora  # noqa: E402  (merged_lora: re-exported)
from rvpo.rewards import completion_text, expand_multichannel  # noqa: E402  (expand_multichannel: re-exported)
from rvpo.tasks.base import StepData  # noqa: E402

__all__ = ["RVPOConfig", "RVPOTrainer", "expand_multichannel", "merged_lora", "TRL_SUPPORTED"]


SPEC_FIELDS = {"estimator": "rvpo_estimator", "k": "rvpo_k_schedule", "beta": "rvpo_beta", "eps": "rvpo_eps",
               "unbiased": "rvpo_unbiased", "whiten": "rvpo_whiten", "drop_zero_spread": "rvpo_drop_zero_spread",
               "noise_floor": "rvpo_noise_floor", "scale": "rvpo_scale", "weights": "reward_weights"}
"""``AdvantageSpec`` field -> ``RVPOConfig`` field. TRL's own ``reward_weights`` is the spec's ``weights``."""

_SPEC_DEFAULTS = AdvantageSpec.defaults()
_SPEC_HELP = AdvantageSpec.help()


def _spec_field(name: str) -> Any:
    """A dataclass field whose default and help text are :class:`~rvpo.core.AdvantageSpec`'s."""
    return field(default=_SPEC_DEFAULTS[name], metadata={"help": _SPEC_HELP[name]})


@dataclass
class RVPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the RVPO advantage settings (which replace TRL's aggregation).

    The ``rvpo_*`` fields are :class:`rvpo.core.AdvantageSpec`'s fields under TRL-style flat names
    (so ``TrlParser`` and ``--rvpo_k_schedule`` work), with the spec's defaults and help text; the
    spec's ``weights`` is TRL's own ``reward_weights`` (one per reward function, default all 1). The
    checked spec is :attr:`advantage`; :meth:`from_spec` builds a config from one.
    ``multi_objective_aggregation`` and ``scale_rewards`` then only affect TRL's own advantage
    computation, which runs and is discarded (its ``frac_reward_zero_std`` metric still reflects it).
    """

    rvpo_estimator: str = _spec_field("estimator")
    rvpo_k_schedule: str = _spec_field("k")
    rvpo_beta: float = _spec_field("beta")
    rvpo_eps: float = _spec_field("eps")
    rvpo_unbiased: bool = _spec_field("unbiased")
    rvpo_whiten: bool = _spec_field("whiten")
    rvpo_drop_zero_spread: bool = _spec_field("drop_zero_spread")
    rvpo_noise_floor: list[float] | None = _spec_field("noise_floor")
    rvpo_scale: str = _spec_field("scale")

    rvpo_merge_lora_for_generation: bool = field(
        default=True,
        metadata={"help": "Sample rollouts from LoRA-merged weights (a temporary copy; the base weights are "
                          "restored bit for bit), not through unmerged adapters: the same policy up to rounding, "
                          "several times faster to decode on CPU. Losses always use the unmerged model."},
    )

    rvpo_shared_prefix: bool = field(
        default=True,
        metadata={"help": "Run each prompt once for its G completions, in sampling (pre-filled key/value cache) "
                          "and in the logprob/loss forward (gradients flow through the shared cache), and put only "
                          "completion positions through the LM head: the same logprobs up to float rounding, "
                          "2-3x fewer forward FLOPs at G=8 when prompts are as long as completions. Text-only "
                          "decoder models; others use TRL's path."},
    )

    rvpo_fast_decode: bool = field(
        default=True,
        metadata={"help": "Decode rollouts with rvpo's lean loop (rvpo.model.decoding): the key/value cache grows "
                          "in place and tokens are drawn by inverse CDF (one random number a row, not one per "
                          "vocabulary entry); the same forward and the same sampling distribution as generate, other "
                          "random draws. Settings it does not implement (beams, stop strings, ...) use generate."},
    )

    rvpo_packed_decode: bool = field(
        default=True,
        metadata={"help": "With rvpo_fast_decode on an fp32 CPU model: decode steps multiply by weights packed once "
                          "for oneDNN (rvpo.model.packed), LoRA merged in; a decode step about 1.4x faster at 12 "
                          "rows, the same products up to float rounding."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self._spec: tuple[tuple, AdvantageSpec] | None = None
        values = self.advantage.to_dict()  # the fields in the spec's normalised form ("1.5" -> "constant:1.5")
        for name, attr in SPEC_FIELDS.items():
            setattr(self, attr, values[name])
        # check the parameters once, on a dummy batch, so a bad value fails here and not at step 1
        m = len(self.reward_weights) if self.reward_weights else 1
        try:
            self.advantage.compute(torch.zeros(2, m), 2)
        except ValueError as e:
            raise ValueError(f"RVPOConfig (rvpo_* fields / reward_weights): {e}") from None

    @property
    def advantage(self) -> AdvantageSpec:
        """The ``rvpo_*`` fields and ``reward_weights`` as one checked :class:`~rvpo.core.AdvantageSpec`.

        Built once and kept while the fields keep their values (a changed field builds a new one); a
        ``ValueError`` names the ``RVPOConfig`` field."""
        values = {name: getattr(self, attr) for name, attr in SPEC_FIELDS.items()}
        key = tuple((n, tuple(v) if isinstance(v, list) else v) for n, v in values.items())
        cached = getattr(self, "_spec", None)
        if cached is None or cached[0] != key:
            cached = self._spec = (key, AdvantageSpec.from_dict(values, names=SPEC_FIELDS))
        return cached[1]

    @classmethod
    def from_spec(cls, spec: AdvantageSpec, **kwargs: Any) -> RVPOConfig:
        """``RVPOConfig(**kwargs)`` with every advantage setting taken from ``spec``."""
        clash = sorted(set(kwargs) & set(SPEC_FIELDS.values()))
        if clash:
            raise TypeError(f"RVPOConfig.from_spec: {clash} come from the spec; set them there")
        values = spec.to_dict()
        return cls(**kwargs, **{attr: values[name] for name, attr in SPEC_FIELDS.items()})


class RVPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose advantages come from an rvpo estimator (see the module docstring).

    Takes ``GRPOTrainer``'s arguments; ``args`` must be an :class:`RVPOConfig` (or None for the
    defaults). ``advantage`` (an :class:`~rvpo.core.AdvantageSpec`), when given, is the advantage
    setting and is written into ``args``' ``rvpo_*`` fields and ``reward_weights``; else it is read
    from them, once. The trainer holds it as :attr:`advantage` for the whole run. Extra attribute:
    ``last_rvpo_output``, the :class:`rvpo.AdvantageOutput` of the latest generation batch (global,
    all processes).

    Logged per generation batch (averaged over logging steps by TRL): ``rvpo/k``, ``rvpo/m_eff_mean``,
    ``rvpo/unscored_frac``, and per reward function ``rvpo/binding/<name>`` (mean soft-min weight),
    ``rvpo/min_frac/<name>`` (fraction of completions whose lowest z-score is that channel),
    ``rvpo/abstain/<name>`` (``None`` rewards in the batch), ``rvpo/nonfinite/<name>``,
    ``rvpo/zero_spread_frac/<name>`` (groups with no spread); TRL itself logs
    ``rewards/<name>/mean`` and ``/std``.
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: RVPOConfig | None = None, *,
                 advantage: AdvantageSpec | None = None, **kwargs: Any):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = RVPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-RVPO")
        if not isinstance(args, RVPOConfig):
            raise TypeError(f"args: RVPOTrainer needs an RVPOConfig, got {type(args).__name__}")
        if advantage is not None:
            if not isinstance(advantage, AdvantageSpec):
                raise TypeError(f"advantage: expected an AdvantageSpec, got {type(advantage).__name__}")
            if advantage.named_weights:
                raise ValueError(f"advantage.weights: given by channel name ({advantage.weights}); resolve them "
                                 "against the reward functions first (AdvantageSpec.resolve_weights)")
            values = advantage.to_dict()
            for name, attr in SPEC_FIELDS.items():
                setattr(args, attr, values[name])
        self.advantage: AdvantageSpec = advantage or args.advantage  # the run's spec: k is not parsed again
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self._rvpo_rewards: torch.Tensor | None = None
        self.last_rvpo_output = None

    def rvpo_k(self) -> Any:
        """k for the generation batch made now: the spec's :meth:`~rvpo.core.AdvantageSpec.k_at` at this
        step (a float, or an adaptive rule that the core resolves on the batch)."""
        return self.advantage.k_at(self.state.global_step, self.state.max_steps)

    def _generate_single_turn(self, *args, **kwargs):
        # Local generation (no vLLM) decodes token by token, where every unmerged LoRA module adds a
        # handful of tiny ops per layer (3x the base model's op count): sample from merged weights
        # instead (see merged_lora). A full fine-tune with bf16=True keeps fp32 master weights: its
        # generation runs under the same bf16 autocast as the Trainer's training forward.
        if self.use_vllm:
            return super()._generate_single_turn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            if self.args.rvpo_merge_lora_for_generation:
                stack.enter_context(merged_lora(self.model))
            if self.args.rvpo_fast_decode:  # entered first: the shared prefix wraps it and hands it the cache
                stack.enter_context(fast_generation(self.accelerator.unwrap_model(self.model),
                                                    pack=self.args.rvpo_packed_decode))
            if self._rvpo_shared_prefix_ok():
                stack.enter_context(shared_prefix_generation(self.accelerator.unwrap_model(self.model)))
            if self.args.bf16 and not is_peft(self.model):
                stack.enter_context(torch.autocast(device_type=self.accelerator.device.type, dtype=torch.bfloat16))
            return super()._generate_single_turn(*args, **kwargs)

    def _rvpo_shared_prefix_ok(self) -> bool:
        gen_cfg = getattr(self, "generation_config", None)
        return (self.args.rvpo_shared_prefix and getattr(gen_cfg, "cache_implementation", None) is None
                and supports_shared_prefix(self.accelerator.unwrap_model(self.model)))

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        # the logprob pass of the loss (and of old/ref logps when TRL needs them): prompts run once per group
        if compute_aux_loss or any(v is not None for v in multimodal.values()) or not self._rvpo_shared_prefix_ok():
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              batch_size, compute_entropy, compute_aux_loss, **multimodal)
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            with self.accelerator.autocast():
                lp, ent = shared_prefix_logps(model, input_ids[start:end], attention_mask[start:end], logits_to_keep,
                                              temperature=self.temperature, compute_entropy=compute_entropy,
                                              lm_head_fp32=bool(getattr(self.args, "cast_lm_head_to_fp32", False)))
            logps.append(lp)
            entropies.append(ent)
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rvpo_rewards = rewards_per_func  # (N, M), NaN = abstain
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._rvpo_rewards = None
        output = super()._generate_and_score_completions(inputs)
        rewards = self._rvpo_rewards
        if rewards is None:
            raise RuntimeError("RVPOTrainer: GRPOTrainer did not call _calculate_rewards (TRL internals changed?)")
        self._rvpo_rewards = None
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else getattr(self, "num_generations_eval", None)
        group = group or self.num_generations

        spec = self.advantage
        raw = rewards.detach().float().cpu()  # (N, M), NaN = abstain
        weights = self.reward_weights.detach().float().cpu()  # (M,), 0 = monitor-only channel
        out = spec.compute(raw, group, self.state.global_step, self.state.max_steps, weights=weights)
        self.last_rvpo_output = out
        all_adv = out.advantages  # (N,)
        n_local = output["advantages"].shape[0]  # this process's N_local, as TRL sliced it
        start = self.accelerator.process_index * n_local
        old = output["advantages"]
        output["advantages"] = all_adv[start : start + n_local].to(device=old.device, dtype=old.dtype)

        # TRL appended its own advantages of the whole batch to the completions table: replace them
        logged = self._logs["advantages"]
        for _ in range(min(all_adv.numel(), len(logged))):
            logged.pop()
        logged.extend(all_adv.tolist())

        met = all_binary_met(raw, weights)
        if met is not None:
            self._metrics[mode]["rvpo/all_binary_met"].append(met)
        for name, value in out.metrics(self.reward_func_names, prefix="rvpo/").items():
            if math.isfinite(value):  # hardmin's k is inf: not a loggable number
                self._metrics[mode][name].append(value)

        # what a task's step_metrics may see (rvpo.tasks.base.StepData): TRL just appended this batch's
        # gathered prompts and completions (N of each, all processes) to its completions table
        n = raw.shape[0]
        texts = list(self._logs["completion"])[-n:] if len(self._logs["completion"]) >= n else None
        prompts = list(self._logs["prompt"])[-n:] if len(self._logs["prompt"]) >= n else None
        self.last_step_data = StepData(
            advantages=out, rewards=raw, channel_names=tuple(self.reward_func_names),
            completions=None if texts is None else tuple(completion_text(c) for c in texts),
            prompts=None if prompts is None else tuple(prompts), weights=tuple(weights.tolist()),
            group_size=group, step=self.state.global_step, mode=mode)
        return output


def all_binary_met(rewards: torch.Tensor, weights: Any = None) -> float | None:
    """Share of completions that meet every binary (0/1) channel they are scored on, or None if none is binary.

    ``rewards``: ``(N, M)``, NaN = abstain. ``weights``: optional ``(M,)`` training weights; channels
    of weight 0 (monitor-only) are left out. A channel counts as binary when its finite values in the
    batch are all 0 or 1 (instruction checks, rubric items); continuous channels are left out. Rows
    scored on no binary channel are left out. For IFEval-style tasks this is the prompt-level
    "all instructions followed" rate of the training samples.
    """
    finite = torch.isfinite(rewards)
    is01 = ((rewards == 0) | (rewards == 1)) | ~finite
    binary = is01.all(dim=0) & finite.any(dim=0)  # (M,)
    if weights is not None:
        binary = binary & (torch.as_tensor(weights, dtype=torch.float64).flatten().cpu() != 0)
    if not bool(binary.any()):
        return None
    present = finite[:, binary]
    scored = present.any(dim=1)
    if not bool(scored.any()):
        return None
    ok = ((rewards[:, binary] == 1) | ~present).all(dim=1)
    return float(ok[scored].float().mean())
