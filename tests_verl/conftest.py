"""verl integration tests: run only in the verl venv (scripts/test_verl.sh)."""

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))  # vhelpers
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
warnings.filterwarnings("ignore", message=".*engine is not available.*")
