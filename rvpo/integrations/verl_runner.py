"""The supported route for RVPO on verl 0.9.x: V1 trainer hook + task runner + entry point.

verl 0.9.1's default V1 trainer (``trainer.use_v1=true``) fetches only
``uid, response_mask, rm_scores, ...`` from the TransferQueue before computing advantages, so no
estimator but the scalar one can see the reward components (``gdpo`` included: without
``non_tensor_batch`` it silently falls back to the scalar reward). This module adds:

* :class:`RVPOAdvantageMixin`: overrides ``PPOTrainer._compute_advantage``. For an rvpo estimator
  it also fetches ``extra_fields`` (where the V1 agent loop stores each response's
  ``reward_extra_info``, the dict returned by ``compute_score``; verl's own DAPO filter reads it the
  same way), takes the ``algorithm.rvpo_reward_keys`` columns, and runs verl's unchanged
  ``_compute_advantage`` inside :func:`rvpo.integrations.verl.batch_context`, which also carries
  ``global_steps`` / ``total_training_steps`` (k schedule) and the metrics dict (``rvpo/*``
  logging). Other estimators pass straight through.
* trainers ``rvpo_sync``, ``rvpo_colocate_async``, ``rvpo_separate_async`` (``register_trainer``):
  verl's three V1 trainers with the mixin; select with ``trainer.v1.trainer_mode=rvpo_sync``.
* :data:`RVPOTaskRunner`: verl's ``TaskRunnerV1`` (a Ray actor) that imports this plug-in inside
  the actor process, where the trainer and ``compute_advantage`` run.
* ``python -m rvpo.integrations.verl_runner <hydra overrides>``: verl's ``main_ppo`` with that
  runner (same config tree, ``verl/trainer/config/ppo_trainer.yaml``).

The legacy trainer (``trainer.use_v1=false``) is not supported: it is deprecated in 0.9.1 and its
module-level ``compute_advantage`` passes the components only to ``gdpo``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import ray
import verl.trainer
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_colocate_async import PPOTrainerColocateAsync
from verl.trainer.ppo.v1.trainer_separate_async import PPOTrainerSeparateAsync
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from rvpo.integrations import verl as rvpo_verl
from rvpo.integrations.verl import RVPOSettings, batch_context, is_rvpo_estimator

logger = logging.getLogger(__name__)

TRAINER_MODES = {"rvpo_sync": "sync", "rvpo_colocate_async": "colocate_async", "rvpo_separate_async": "separate_async"}
VERL_CONFIG_DIR = os.path.join(os.path.dirname(verl.trainer.__file__), "config")


def _to_list(column: Any) -> list:
    """A TensorDict non-tensor column (``NonTensorStack`` / list) as a list of python objects."""
    items = column.tolist() if hasattr(column, "tolist") else list(column)
    return [getattr(v, "data", v) for v in items]


def components_from_extra_fields(extra_fields: Sequence[Any], keys: Sequence[str]) -> dict[str, list]:
    """``{key: (N,) list}`` from each row's ``extra_fields["reward_extra_info"]``.

    A key absent from every row is left out (the estimator then names the available keys); a key
    absent from some rows gives ``None`` there (that component abstains for that response).
    """
    infos = []
    for row in extra_fields:
        row = getattr(row, "data", row)
        info = row.get("reward_extra_info", {}) if isinstance(row, dict) else {}
        infos.append(info if isinstance(info, dict) else {})
    out: dict[str, list] = {}
    for key in keys:
        col = [info.get(key) for info in infos]
        n_missing = sum(key not in info for info in infos)
        if n_missing == len(infos):
            continue
        if n_missing:
            logger.warning("rvpo: reward key %r missing for %d of %d responses (treated as abstaining)",
                           key, n_missing, len(infos))
        out[key] = col
    if len(out) < len(keys):  # expose what is there, for the estimator's error message
        for info in infos[:1]:
            for k in info:
                out.setdefault(k, [i.get(k) for i in infos])
    return out


class RVPOAdvantageMixin:
    """Passes the reward components (and the step) to rvpo estimators in verl's V1 trainers."""

    def _compute_advantage(self, batch, metrics: dict):
        algo = self.config.algorithm
        if not is_rvpo_estimator(algo.adv_estimator):
            return super()._compute_advantage(batch, metrics)
        keys = RVPOSettings.from_config(algo).reward_keys
        non_tensor_batch, uids = None, None
        if keys:
            data = trainer_base.tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["uid", "extra_fields"]
            )
            uids = _to_list(data["uid"])
            non_tensor_batch = components_from_extra_fields(_to_list(data["extra_fields"]), keys)
        with batch_context(
            non_tensor_batch=non_tensor_batch,
            uids=uids,
            global_steps=getattr(self, "global_steps", None),
            total_training_steps=getattr(self, "total_training_steps", None),
            metrics=metrics,
        ):
            return super()._compute_advantage(batch, metrics)


class RVPOTrainerSync(RVPOAdvantageMixin, PPOTrainerSync):
    """verl's ``sync`` V1 trainer with reward components for rvpo estimators."""


class RVPOTrainerColocateAsync(RVPOAdvantageMixin, PPOTrainerColocateAsync):
    """verl's ``colocate_async`` V1 trainer with reward components for rvpo estimators."""


class RVPOTrainerSeparateAsync(RVPOAdvantageMixin, PPOTrainerSeparateAsync):
    """verl's ``separate_async`` V1 trainer with reward components for rvpo estimators."""


_TRAINERS = {
    "rvpo_sync": RVPOTrainerSync,
    "rvpo_colocate_async": RVPOTrainerColocateAsync,
    "rvpo_separate_async": RVPOTrainerSeparateAsync,
}
for _cls in _TRAINERS.values():
    _cls._rvpo_trainer = True


def register() -> None:
    """Register the estimators and the ``rvpo_*`` V1 trainers with verl (idempotent)."""
    rvpo_verl.register()
    for name, cls in _TRAINERS.items():
        rvpo_verl.register_idempotent(trainer_base.TRAINER_REGISTRY, name, cls, "_rvpo_trainer",
                                      trainer_base.register_trainer, "trainer")


register()


class _RVPOTaskRunnerImpl(TaskRunnerV1.__ray_metadata__.modified_class.__ray_actor_class__):
    """verl's V1 task runner; importing this module (inside the actor) registers the plug-in."""

    def run(self, config):
        register()  # this actor process imported rvpo.integrations.verl_runner to unpickle the class
        return super().run(config)

    def plugin_status(self) -> dict:
        """What this actor process sees in verl's registries (used by tests and for debugging)."""
        from verl.trainer.ppo import core_algos  # deferred: optional dependency verl

        return {
            "pid": os.getpid(),
            "estimators": sorted(n for n in rvpo_verl.ESTIMATORS if n in core_algos.ADV_ESTIMATOR_REGISTRY),
            "trainers": sorted(n for n in _TRAINERS if n in trainer_base.TRAINER_REGISTRY),
        }


RVPOTaskRunner = ray.remote(_RVPOTaskRunnerImpl)


def check_config(config: Any) -> None:
    """Reject configs on which the components cannot reach an rvpo estimator (before Ray starts)."""
    algo = config.algorithm
    if not is_rvpo_estimator(algo.adv_estimator):
        return
    if not config.trainer.get("use_v1", True):
        raise ValueError(
            "rvpo on verl supports the V1 trainer only (trainer.use_v1=true): the legacy trainer is "
            "deprecated in verl 0.9.1 and passes reward components only to 'gdpo'"
        )
    mode = config.trainer.v1.trainer_mode
    if mode not in _TRAINERS:
        raise ValueError(
            f"trainer.v1.trainer_mode={mode!r}: use one of {sorted(_TRAINERS)} (verl's {TRAINER_MODES.get(mode, mode)!r} "
            "trainer plus the hook that passes the reward components to the rvpo estimator)"
        )
    s = RVPOSettings.from_config(algo)  # validates the rvpo_* keys
    if not s.reward_keys and not s.allow_scalar:
        raise ValueError("set algorithm.rvpo_reward_keys to the compute_score keys of the reward components")
    if int(config.actor_rollout_ref.rollout.n) < 2:
        raise ValueError("rvpo needs actor_rollout_ref.rollout.n >= 2 (group z-scores)")


def run(config: Any) -> None:
    """verl's ``main_ppo.main`` body with :data:`RVPOTaskRunner`."""
    from verl.trainer.main_ppo import run_ppo  # deferred: looked up per call (tests replace main_ppo.run_ppo)
    from verl.trainer.ppo.utils import need_critic, need_reference_policy  # deferred: optional dependency verl
    from verl.utils.config import validate_config  # deferred: optional dependency verl
    from verl.utils.device import auto_set_device  # deferred: optional dependency verl

    check_config(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=RVPOTaskRunner)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rvpo.integrations.verl_runner [--config-path P --config-name N] key=value ...``."""
    import hydra  # deferred: optional dependency (verl's Hydra), for the command line only

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]

    @hydra.main(config_path=VERL_CONFIG_DIR, config_name="ppo_trainer", version_base=None)
    def _main(config):
        run(config)

    _main()


if __name__ == "__main__":
    # re-import under the package name so the Ray actor class is pickled by reference
    from rvpo.integrations.verl_runner import main as _entry

    _entry()
