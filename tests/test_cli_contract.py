"""What `import rvpo` and the `rvpo` command do to the process: the library import is inert, the command
sets its thread-wait default before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, sys
os.environ.pop("OMP_WAIT_POLICY", None)
import rvpo, rvpo.cli
print("torch" in sys.modules, os.environ.get("OMP_WAIT_POLICY"))
print(rvpo.soft_min.__module__, "torch" in sys.modules)
"""


def _run(code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


def test_import_rvpo_loads_no_torch_and_changes_no_environment():
    first, second = _run(PROBE)[:2]
    assert first == "False None"                    # nothing heavy, no environment change at import
    assert second == "rvpo.core.aggregate True"         # the public names still resolve, on first use


SEEN_AT_TORCH_IMPORT = """
import os, sys
seen = []

class Spy:  # records the environment at the moment torch is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None

sys.meta_path.insert(0, Spy())
import rvpo.cli
try:
    rvpo.cli.main(["--version"])
except SystemExit:
    pass
print(seen[:1], os.environ.get("OMP_WAIT_POLICY"))
"""


def test_the_command_sets_passive_waiting_before_torch_loads():
    assert _run(SEEN_AT_TORCH_IMPORT)[1] == "['PASSIVE'] PASSIVE"  # line 0: the version
