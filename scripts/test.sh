#!/usr/bin/env bash
# Set up, lint (ruff: pyproject's [tool.ruff]), and run every test: the main suite in .venv (tests/), then the verl integration suite in
# its own .venv-verl (tests_verl/; verl pins an older transformers, so it never shares .venv).
#   scripts/test.sh                 # both suites (what CI runs)
#   RVPO_SKIP_VERL=1 scripts/test.sh   # main suite only
# Extra arguments go to the main suite's pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # spinning OpenMP threads starve a shared CPU
# the suite starts several Python processes: byte-compile once at install (uv skips it by default)
export UV_COMPILE_BYTECODE="${UV_COMPILE_BYTECODE:-1}"
scripts/setup.sh trl,judge,dev
.venv/bin/ruff check .  # pyflakes, bugbear (zip(strict=) too), import order, pyupgrade: a lint error fails CI
.venv/bin/python -m pytest -q "$@"
if [ "${RVPO_SKIP_VERL:-0}" != "1" ]; then
  scripts/test_verl.sh
fi
