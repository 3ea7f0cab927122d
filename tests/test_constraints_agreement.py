"""``benchmarks/ifeval_agreement.py`` skips cleanly without the reference checker, and its synthetic responses are seeded."""

import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ifeval_agreement.py"


def test_skips_with_a_message_when_the_reference_is_absent(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--reference", str(tmp_path / "nowhere"),
                          "--nltk-data", str(tmp_path / "nltk")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("SKIPPED:")
    assert "nowhere" in out.stdout or "nltk" in out.stdout


def test_synthetic_responses_are_seeded_and_touch_the_instructions():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ifeval_agreement import synth_response

    row = {"prompt": "Write.", "instruction_id_list": ["startend:end_checker", "detectable_format:title"],
           "kwargs": [{"end_phrase": "The end."}, {}]}
    a = [synth_response(random.Random(5), row) for _ in range(3)]
    assert a == [synth_response(random.Random(5), row) for _ in range(3)]
    many = [synth_response(random.Random(s), row) for s in range(40)]
    assert any(m.endswith("The end.") for m in many) and any(m.startswith("<<") for m in many)
    assert not all(m.endswith("The end.") for m in many)  # each edit is applied only half the time
