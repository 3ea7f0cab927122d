"""``benchmarks/ifeval_agreement.py`` skips cleanly without the reference checker, and its synthetic responses are seeded."""

import random
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_synthetic_language_responses_are_in_the_asked_language():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ifeval_agreement import synth_response
    from rvpo.tasks.constraints import check

    row = {"prompt": "Answer in German.", "instruction_id_list": ["language:response_language"],
           "kwargs": [{"language": "de"}]}
    many = [synth_response(random.Random(s), row) for s in range(20)]
    verdicts = {check("language", m, {"language": "de"}) for m in many}
    assert verdicts == {True, False}  # edited half the time: German passes, the English base text fails


def test_language_types_follow_the_reference_rule():
    """The reference rule (google-research instructions.py): ``langdetect.detect(text) == lang``, and a text
    langdetect cannot read counts as followed; ``english_*`` also need the case test. Seeded, so stable."""
    import langdetect

    from rvpo.tasks.constraints import check

    langdetect.DetectorFactory.seed = 0

    def ref(text, lang):
        try:
            return langdetect.detect(text) == lang
        except langdetect.LangDetectException:
            return True

    texts = ["Das ist ein kurzer deutscher Satz über das Wetter.", "This is a short English sentence.",
             "THIS IS ALL IN CAPITAL LETTERS, IN ENGLISH.", "ESTO ESTÁ TODO EN MAYÚSCULAS Y EN ESPAÑOL.",
             "this is all lowercase and in english.", "ceci est tout en minuscules et en français.", "12 34 !!", "***"]
    for t in texts:
        for lang in ("de", "en", "es", "fr"):
            assert check("language", t, {"language": lang}) is ref(t, lang), (t, lang)
        assert check("uppercase", t) is (t.isupper() and ref(t, "en")), t
        assert check("lowercase", t) is (t.islower() and ref(t, "en")), t


def test_language_types_fail_loudly_without_langdetect(monkeypatch):
    import builtins

    import rvpo.tasks.constraints.instructions as ins

    real_import = builtins.__import__

    def no_langdetect(name, *a, **k):
        if name == "langdetect":
            raise ImportError("No module named 'langdetect'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(ins, "_LANGDETECT", None)
    monkeypatch.setattr(builtins, "__import__", no_langdetect)
    with pytest.raises(ins.MissingDependencyError, match="pip install langdetect"):
        ins.check("language", "Hallo Welt, wie geht es dir?", {"language": "de"})
    with pytest.raises(ImportError, match="langdetect"):
        ins.check("uppercase", "ALL CAPS")
