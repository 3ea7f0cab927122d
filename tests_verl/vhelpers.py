"""Builders shared by the verl tests: a real verl DataProto batch and an in-memory TransferQueue."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import OmegaConf
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

KEYS = ["format_reward", "accuracy_reward"]
G = 4

# (B=3 prompts, G=4) x M=2 components; exact binary fractions so verl's float32 group means are exact
# prompt "c" has no spread on format_reward (all 1.0): Z = 0 there in both conventions
COMPONENTS = {
    "a": [(1.0, 3.0), (0.0, -3.0), (1.0, 0.5), (1.0, -1.0)],
    "b": [(0.0, 1.5), (1.0, 3.0), (0.0, -0.5), (1.0, 2.0)],
    "c": [(1.0, -3.0), (1.0, 3.0), (1.0, 0.0), (1.0, 1.0)],
}


def make_rows(order: str = "interleaved", equal_lengths: bool = False, seed: int = 0):
    """Rows ``(uid, session, [format, accuracy], response_length)`` in verl's batch order.

    ``interleaved``: a0 b0 c0 a1 ... (groups NOT contiguous); ``contiguous``: a0 a1 a2 a3 b0 ...
    """
    rng = np.random.default_rng(seed)
    rows = []
    for uid, comps in COMPONENTS.items():
        for s, c in enumerate(comps):
            length = 6 if equal_lengths else int(rng.integers(2, 9))
            rows.append((uid, s, list(c), length))
    if order == "interleaved":
        rows = sorted(rows, key=lambda r: (r[1], r[0]))
    return rows


def make_dataproto(rows, prompt_len: int = 3, resp_len: int = 8, components: bool = True) -> DataProto:
    """A verl ``DataProto`` as the trainer builds it: prompts/responses/attention_mask, response_mask,
    token_level_rewards (score = sum of components at the last response token), uid, components."""
    n = len(rows)
    mask = torch.zeros(n, resp_len, dtype=torch.float32)
    tlr = torch.zeros(n, resp_len, dtype=torch.float32)
    for i, (_, _, c, length) in enumerate(rows):
        mask[i, :length] = 1.0
        tlr[i, length - 1] = float(np.nansum(np.asarray(c, dtype=float)))
    attn = torch.cat([torch.ones(n, prompt_len, dtype=torch.int64), mask.to(torch.int64)], dim=1)
    tensors = {
        "prompts": torch.ones(n, prompt_len, dtype=torch.int64),
        "responses": torch.ones(n, resp_len, dtype=torch.int64),
        "attention_mask": attn,
        "response_mask": mask,
        "token_level_rewards": tlr,
    }
    non_tensors = {"uid": np.array([r[0] for r in rows], dtype=object)}
    if components:
        for j, key in enumerate(KEYS):
            non_tensors[key] = np.array([r[2][j] for r in rows], dtype=object)
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def algo_config(**overrides):
    base = {
        "adv_estimator": "rvpo", "gamma": 1.0, "lam": 1.0, "norm_adv_by_std_in_grpo": True,
        "use_kl_in_reward": False, "kl_penalty": "kl",
        "rvpo_reward_keys": list(KEYS), "rvpo_k": 1.0,
    }
    base.update(overrides)
    return OmegaConf.create(base)


class FakeTQ:
    """In-memory stand-in for ``transfer_queue``'s kv API, building TensorDicts with verl's own
    ``list_of_dict_to_tensordict`` (jagged tensors for variable-length fields, NonTensorStack else)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.gets: list[list[str]] = []

    def put_rows(self, rows, extra_key_drop: str | None = None):
        keys = []
        for uid, s, c, length in rows:
            key = f"{uid}_{s}_0"
            rm = torch.zeros(length, dtype=torch.float32)
            rm[-1] = float(np.nansum(np.asarray(c, dtype=float)))
            info = {"score": float(rm[-1]), **{k: v for k, v in zip(KEYS, c, strict=True)}}
            if extra_key_drop:
                info.pop(extra_key_drop)
            self.rows[key] = {
                "uid": uid,
                "response_mask": torch.ones(length, dtype=torch.int64),
                "rm_scores": rm,
                "extra_fields": {"reward_extra_info": info, "turn_scores": []},
            }
            keys.append(key)
        return KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        self.gets.append(list(select_fields or []))
        fields = [f for f in (select_fields or []) if any(f in self.rows[k] for k in keys)]
        for f in fields:
            if not all(f in self.rows[k] for k in keys):
                raise ValueError(f"field {f!r} missing for some keys")
        return list_of_dict_to_tensordict([{f: self.rows[k][f] for f in fields} for k in keys])

    def kv_batch_put(self, keys, partition_id, fields):
        for i, key in enumerate(keys):
            for name in fields.keys():
                self.rows[key][name] = fields[name][i]
        return KVBatchMeta(keys=list(keys), tags=[{} for _ in keys], partition_id=partition_id)
