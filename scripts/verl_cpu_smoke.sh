#!/usr/bin/env bash
# verl end-to-end smoke test for the rvpo plug-in (issue 24): a few GRPO-style steps of verl 0.9.1's V1
# trainer through `python -m rvpo.integrations.verl_runner`, with adv_estimator=rvpo and then the gdpo
# baseline, on a few hundred ToolRL rows with two reward components (format_reward, accuracy_reward).
# It prints, per step, the reward components, the rvpo diagnostics (rvpo/k, rvpo/binding/*, ...) and the
# wall time, and exits non-zero when a run fails, a component is missing, or a component is constant.
#
# STATUS (2026-12-05): DEVICE=cpu cannot train. verl 0.9.1 has no CPU platform and its V1 trainer
# has no HF rollout (docs/verl.md, "Can verl train on a CPU?"). On a CPU the script shows where verl
# stops: with FAKE_GPU=1 at the NCCL process group (utils/distributed.py:89; seen, after 56 s); without
# it, by reading, at verl's Ray GPU count check (single_controller/ray/base.py:240; not run).
# DEVICE=cuda is the GPU check. It has NOT been run on a GPU.
#
#   scripts/verl_cpu_smoke.sh                              # CPU: shows where verl stops
#   DEVICE=cuda scripts/verl_cpu_smoke.sh                  # GPU check: vLLM rollout, FSDP actor, 1 GPU
#   DEVICE=cuda RANDOM_INIT=1 scripts/verl_cpu_smoke.sh    # random weights from MODEL's config.json
#   scripts/verl_cpu_smoke.sh trainer.total_epochs=1       # extra arguments: Hydra overrides for every run
#
# Environment (defaults in brackets):
#   DEVICE       cpu | cuda [cpu]
#   PY           the python that has rvpo[verl] and verl 0.9.1 [.venv-verl/bin/python]
#   MODEL        a local Hugging Face model folder [~/.cache/rvpo/models/smollm2-135m-instruct].
#                The script converts and downloads nothing.
#   RANDOM_INIT  1: build a randomly initialised model from MODEL's config and tokenizer into OUT
#                (weights are not copied, only the config and tokenizer files) [0]
#   DATA_DIR     the ToolRL files rlla_sft.json and rlla_4k_test.parquet [/work/shared/data/toolrl]
#   ROWS         training rows (rlla_sft.json first, then rlla_4k_test.parquet) [300]
#   STEPS        training steps per estimator [2]
#   BATCH        prompts per step (x N responses each) [4]
#   N            responses per prompt, rollout.n (group size G) [4]
#   ESTIMATORS   [rvpo gdpo]. "gdpo" runs adv_estimator=rvpo with k = 0 (rvpo_k=0), which equals verl's
#                gdpo (tests_verl/test_estimator.py). verl's own adv_estimator=gdpo fails on the V1
#                trainer with KeyError: 'prompts' (docs/verl.md), so it is not used.
#   ROLLOUT      actor_rollout_ref.rollout.name [vllm on cuda, hf on cpu]. verl 0.9.1 accepts only
#                vllm, sglang and trtllm here.
#   GPUS         trainer.n_gpus_per_node [1]
#   FAKE_GPU     CPU only: 1 advertises one logical Ray GPU so that the run passes verl's GPU count
#                check and stops at the next CUDA assumption [0]
#   ATTN         attention implementation for the actor: sdpa | eager | flash_attention_2 [sdpa]
#                (verl's default is flash_attention_2, workers/config/model.py:185)
#   RMPAD        actor_rollout_ref.model.use_remove_padding [false]; true (packed sequences) wants
#                ATTN=flash_attention_2 and flash-attn installed
#   OUT          work folder for the data, the logs and the checkpoints [a new /tmp/verl_smoke.*]
#   TIMEOUT      seconds allowed for each run [1800]
#   RAY_CPUS     CPU only: logical CPUs Ray may schedule (not cores) [8]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

DEVICE="${DEVICE:-cpu}"
PY="${PY:-$root/.venv-verl/bin/python}"
MODEL="${MODEL:-$HOME/.cache/rvpo/models/smollm2-135m-instruct}"
RANDOM_INIT="${RANDOM_INIT:-0}"
DATA_DIR="${DATA_DIR:-/work/shared/data/toolrl}"
ROWS="${ROWS:-300}"
STEPS="${STEPS:-2}"
BATCH="${BATCH:-4}"
N="${N:-4}"
ESTIMATORS="${ESTIMATORS:-rvpo gdpo}"
GPUS="${GPUS:-1}"
FAKE_GPU="${FAKE_GPU:-0}"
ATTN="${ATTN:-sdpa}"
TIMEOUT="${TIMEOUT:-1800}"
OUT="${OUT:-$(mktemp -d /tmp/verl_smoke.XXXXXX)}"
case "$DEVICE" in
  cuda) ROLLOUT="${ROLLOUT:-vllm}" ;;
  cpu) ROLLOUT="${ROLLOUT:-hf}" ;;
  *) echo "verl_cpu_smoke: DEVICE must be cpu or cuda, got '$DEVICE'" >&2; exit 2 ;;
esac
[ -x "$PY" ] || { echo "verl_cpu_smoke: no python at $PY (run scripts/test_verl.sh once, or set PY)" >&2; exit 2; }
[ -f "$MODEL/config.json" ] || { echo "verl_cpu_smoke: MODEL=$MODEL has no config.json (a local HF folder is needed)" >&2; exit 2; }
mkdir -p "$OUT"
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
echo "verl_cpu_smoke: DEVICE=$DEVICE ROLLOUT=$ROLLOUT MODEL=$MODEL RANDOM_INIT=$RANDOM_INIT ROWS=$ROWS STEPS=$STEPS OUT=$OUT"

# 1. data: ToolRL rows in verl's RL parquet format (what verl's RLHFDataset and compute_score read)
"$PY" - "$DATA_DIR" "$ROWS" "$OUT" <<'EOF'
import sys
from pathlib import Path
import pandas as pd
from rvpo.tasks.toolcall.loaders import load_toolrl_parquet, load_toolrl_sft

data, rows, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
sft, test = data / "rlla_sft.json", data / "rlla_4k_test.parquet"
for f in (sft, test):
    if not f.exists():
        sys.exit(f"verl_cpu_smoke: {f} is missing (set DATA_DIR)")
examples = load_toolrl_sft(sft) + load_toolrl_parquet(test)
if len(examples) < rows:
    sys.exit(f"verl_cpu_smoke: ROWS={rows} but only {len(examples)} ToolRL rows in {data}")

def frame(exs, split):
    return pd.DataFrame([{
        "data_source": "toolrl",
        "prompt": ex["prompt"],
        "ability": "tool_call",
        "reward_model": {"style": "rule", "ground_truth": ex["ground_truth"]},
        "extra_info": {"index": i, "split": split, "id": ex["id"]},
    } for i, ex in enumerate(exs)])

frame(examples[:rows], "train").to_parquet(out / "train.parquet")
frame(examples[-16:], "val").to_parquet(out / "val.parquet")
print(f"verl_cpu_smoke: wrote {rows} train rows and 16 val rows to {out}")
EOF

# 2. model: the given folder, or random weights built from its config (no weights travel)
model="$MODEL"
if [ "$RANDOM_INIT" = 1 ]; then
  model="$OUT/model_random"
  "$PY" - "$MODEL" "$model" <<'EOF'
import sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

src, dst = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
cfg = AutoConfig.from_pretrained(src)
AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(dst)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
print(f"verl_cpu_smoke: random-initialised {cfg.model_type} ({cfg.num_hidden_layers} layers) at {dst}")
EOF
fi

# 3. the runs
common=(
  --config-path "$root/examples/verl" --config-name rvpo_rlla
  actor_rollout_ref.model.path="$model"
  data.train_files="$OUT/train.parquet" data.val_files="$OUT/val.parquet"
  data.train_batch_size="$BATCH" data.max_prompt_length=2048 data.max_response_length=128
  actor_rollout_ref.rollout.name="$ROLLOUT" actor_rollout_ref.rollout.n="$N"
  actor_rollout_ref.rollout.gpu_memory_utilization=0.4
  actor_rollout_ref.actor.ppo_mini_batch_size="$BATCH"
  actor_rollout_ref.model.enable_gradient_checkpointing=false
  actor_rollout_ref.model.use_remove_padding="${RMPAD:-false}"
  +actor_rollout_ref.model.override_config.attn_implementation="$ATTN"
  trainer.device="$DEVICE" trainer.nnodes=1 trainer.n_gpus_per_node="$GPUS"
  trainer.total_epochs=1 trainer.total_training_steps="$STEPS"
  trainer.save_freq=-1 trainer.test_freq=-1 trainer.val_before_train=false
  "trainer.logger=[console,file]" trainer.project_name=rvpo-smoke
  algorithm.rvpo_reward_keys="[format_reward,accuracy_reward]"
)
if [ "$DEVICE" = cpu ]; then
  # Ray: verl's TransferQueue asks for 1 logical CPU per
  # storage unit (8 by default) plus its controller; with Ray's CPU count = the cores of a small
  # machine the storage actors never start and tq.init waits for ever, so use 1 unit and more logical CPUs
  common+=(ray_kwargs.ray_init.num_cpus="${RAY_CPUS:-8}"
           transfer_queue.backend.SimpleStorage.num_data_storage_units=1)
  [ "$FAKE_GPU" = 1 ] && common+=(+ray_kwargs.ray_init.num_gpus=1)
fi

status=0
for est in $ESTIMATORS; do
  case "$est" in
    rvpo) extra=(algorithm.adv_estimator=rvpo) ;;
    gdpo) extra=(algorithm.adv_estimator=rvpo algorithm.rvpo_k_schedule=null algorithm.rvpo_k=0) ;;
    *) echo "verl_cpu_smoke: unknown estimator '$est' (rvpo, gdpo)" >&2; exit 2 ;;
  esac
  log="$OUT/$est.log"
  metrics="$OUT/$est.metrics.jsonl"
  echo "=== $est: $log"
  start=$(date +%s)
  set +e
  VERL_FILE_LOGGER_PATH="$metrics" timeout "$TIMEOUT" "$PY" -m rvpo.integrations.verl_runner \
    "${common[@]}" "${extra[@]}" trainer.experiment_name="smoke-$est" "$@" >"$log" 2>&1
  rc=$?
  set -e
  wall=$(( $(date +%s) - start ))
  echo "=== $est: exit $rc after ${wall}s"
  if [ "$rc" != 0 ]; then
    echo "--- last lines of $log (the first error is usually the cause):"
    grep -n -E "Error|error:|Traceback|raise |File \"" "$log" | tail -n 25 || true
    tail -n 15 "$log"
    status=1
    continue
  fi
  # per-step summary and checks: every step must carry both components, with spread
  "$PY" - "$metrics" "$log" "$STEPS" <<'EOF' || status=1
import json, math, re, sys
from pathlib import Path

metrics_path, log_path, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
keys = ["format_reward", "accuracy_reward"]
records = {}
if metrics_path.exists():
    for line in metrics_path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            records.setdefault(int(r["step"]), {}).update(r["data"])
else:  # fall back to verl's console lines "step:N - key:value - ..."
    for line in log_path.read_text(errors="replace").splitlines():
        m = re.search(r"step:(\d+) - (.*)", line)
        if m:
            d = records.setdefault(int(m.group(1)), {})
            for part in m.group(2).split(" - "):
                k, _, v = part.rpartition(":")
                try:
                    d[k] = float(v)
                except ValueError:
                    pass
problems = []
if len(records) < steps:
    problems.append(f"{len(records)} logged steps, expected {steps}")
shown = ["rvpo/k"] + [f"rvpo/{p}/{k}" for k in keys for p in ("reward", "binding", "zero_spread_frac", "abstain")]
for step in sorted(records):
    d = records[step]
    cells = []
    for name in shown:
        name_m = name + "/mean" if name.startswith("rvpo/reward/") else name
        v = d.get(name_m)
        cells.append(f"{name_m.removeprefix('rvpo/')}={'MISSING' if v is None else f'{v:.4g}'}")
    t = d.get("timing_s/step")
    print(f"step {step}: " + " ".join(cells) + (f" step_s={t:.1f}" if t is not None else ""))
    for k in keys:
        if f"rvpo/reward/{k}/mean" not in d:
            problems.append(f"step {step}: component {k} missing from the metrics")
        elif d.get(f"rvpo/reward/{k}/present_frac", 0.0) == 0.0:
            problems.append(f"step {step}: component {k} absent for every response")
for k in keys:  # constant: no group had any spread in this component at any step
    zs = [records[s].get(f"rvpo/zero_spread_frac/{k}") for s in records]
    if zs and all(v is not None and v >= 1.0 for v in zs):
        problems.append(f"component {k} is constant within every group at every step (no learning signal)")
for p in problems:
    print(f"FAIL: {p}")
sys.exit(1 if problems else 0)
EOF
done
echo "verl_cpu_smoke: outputs in $OUT"
exit "$status"
