# Sourced by setup.sh and test_verl.sh with the target venv active. Sets INSTALL, the command that
# installs packages, and TORCH_BY_PIP (1: install torch with pip first, as INSTALL may not find the
# build this machine should get).
# uv (from PyPI, installed into the venv) downloads in parallel and does not byte-compile (Python
# compiles each module on first import): on a 2-core machine it installed rvpo's dependencies in
# 5 s, where pip took 53 s. uv reads none of pip's settings, so torch stays with pip unless pip's
# find-links hold the torch wheel asked for (this kind of machine keeps its CPU build there):
# then uv gets those folders and installs torch as well. RVPO_INSTALLER=pip uses pip throughout, as
# does a machine where uv cannot be installed.
INSTALL=(python -m pip install -q)
TORCH_BY_PIP=1
if [ "${RVPO_INSTALLER:-uv}" = uv ]; then
  if python -m pip install -q uv; then
    INSTALL=(python -m uv pip install -q)
    want="torch-*.whl"  # the wheel torch_spec (set by the caller) asks for, where it pins a version
    case "${torch_spec:-}" in torch==*) want="torch-${torch_spec#torch==}[+-]*.whl" ;; esac
    for link in $(python -m pip config list 2>/dev/null | sed -n "s/^.*\.find-links='\(.*\)'$/\1/p" | tr ' ' '\n' | sort -u); do
      if compgen -G "${link#file://}/$want" > /dev/null; then
        INSTALL+=(--find-links "${link#file://}")
        TORCH_BY_PIP=0
      fi
    done
  else
    echo "setup: uv could not be installed; installing with pip (slower)" >&2
  fi
fi
