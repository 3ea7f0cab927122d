#!/usr/bin/env bash
# Set up .venv with the test extras (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh trl,judge,dev
.venv/bin/python -m pytest -q "$@"
