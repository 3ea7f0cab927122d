#!/usr/bin/env bash
# Set up .venv with the test extras (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh trl,judge,dev
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
.venv/bin/python -m pytest -q "$@"
