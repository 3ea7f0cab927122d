#!/usr/bin/env bash
# RVPO on ToolRL's RLLA-4k with verl 0.9.1 (Ray; FSDP actor, vLLM rollouts): the paper's tool-calling
# recipe (Qwen2.5-1.5B-Instruct, G = 4, k linear 0.5 -> 2.0 over 100 steps, lr 1e-6, clip 0.2).
# NOT run by the rvpo authors on GPUs: only its config composition and the plug-in were tested on CPU
# (tests_verl/, docs/verl.md "What was verified").
#
# Needs, on every node of the Ray cluster: rvpo[verl] + verl's GPU extras (e.g. pip install
# 'verl[vllm]==0.9.1' 'rvpo[verl]'), the model, and RLLA-4k in verl's parquet format
# (qiancheng0/ToolRL dataset/rlla_4k: train.parquet, test.parquet).
# Multi-node: start Ray first (`ray start --head` / `ray start --address=...`), then run this on the head.
#   MODEL=/models/Qwen2.5-1.5B-Instruct DATA_DIR=/data/rlla_4k NNODES=1 GPUS=8 \
#     bash examples/verl/run_qwen2_5_1_5b_rlla_rvpo.sh [extra hydra overrides]
# GDPO baseline on the same route: add  algorithm.rvpo_k_schedule=null algorithm.rvpo_k=0
#   (k = 0 with token whitening equals verl's gdpo; tests_verl/test_estimator.py). verl's own
#   adv_estimator=gdpo does not run on the V1 trainer in 0.9.1 (docs/verl.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${MODEL:?set MODEL to a local Qwen2.5-1.5B-Instruct directory}"
: "${DATA_DIR:?set DATA_DIR to the rlla_4k parquet directory (train.parquet, test.parquet)}"
NNODES="${NNODES:-1}"
GPUS="${GPUS:-8}"
CKPT_DIR="${CKPT_DIR:-./checkpoints/rvpo_rlla}"

python3 -u -m rvpo.integrations.verl_runner \
    --config-path "$here" --config-name rvpo_rlla \
    actor_rollout_ref.model.path="$MODEL" \
    data.train_files="$DATA_DIR/train.parquet" \
    data.val_files="$DATA_DIR/test.parquet" \
    trainer.nnodes="$NNODES" \
    trainer.n_gpus_per_node="$GPUS" \
    trainer.default_local_dir="$CKPT_DIR" \
    "$@"
