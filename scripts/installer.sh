# Sourced by setup.sh and test_verl.sh, with the target venv active: sets INSTALL to the command
# that installs everything but torch.
# pip installs torch itself (the caller does that): a CPU machine may hold the CPU build of torch
# on disk where only pip looks. uv (from PyPI, installed into the venv) installs the rest. It
# downloads in parallel and does not byte-compile: Python compiles each module on first import.
# On a 2-core machine that took 5 s here, where pip took 53 s. RVPO_INSTALLER=pip uses pip
# throughout, as does a machine where uv cannot be installed.
INSTALL=(python -m pip install -q)
if [ "${RVPO_INSTALLER:-uv}" = uv ]; then
  if python -m pip install -q uv; then
    INSTALL=(python -m uv pip install -q)
  else
    echo "setup: uv could not be installed; installing with pip (slower)" >&2
  fi
fi
