"""Run-directory helpers (atomic, crash-tolerant, secrets redacted) and the small statistics."""

import json
import math

import pytest

from rvpo.runs import (
    RunDirError,
    append_jsonl,
    atomic_write_text,
    check_run_root,
    make_run_dir,
    new_run_dir,
    read_jsonl,
    redact,
    redact_url,
    to_json,
    write_json,
    write_jsonl,
    write_yaml,
)
from rvpo.stats import bootstrap_se, mean_std, welch_t, wilson_ci


def test_redact_matches_whole_secret_names_only():
    cfg = {"api_key": "sk-1", "judge": {"openai_api_key": "sk-2", "api_key_env": "RVPO_JUDGE_API_KEY"},
           "max_new_tokens": 64, "hf_token": "hf_x", "runs": [{"password": "p"}], "empty_api_key": None}
    out = redact(cfg)
    assert out["api_key"] == "***" and out["judge"]["openai_api_key"] == "***" and out["hf_token"] == "***"
    assert out["runs"][0]["password"] == "***"
    assert out["max_new_tokens"] == 64 and out["judge"]["api_key_env"] == "RVPO_JUDGE_API_KEY"
    assert out["empty_api_key"] is None  # nothing to hide


def test_written_files_never_hold_the_secret(tmp_path):
    write_json(tmp_path / "c.json", {"api_key": "sk-test-SECRET123"})
    write_yaml(tmp_path / "c.yaml", {"api_key": "sk-test-SECRET123"})
    append_jsonl(tmp_path / "m.jsonl", {"token": "sk-test-SECRET123", "step": 1})
    for f in tmp_path.iterdir():
        assert "SECRET123" not in f.read_text()


def test_url_userinfo_is_redacted_everywhere_a_url_is_written(tmp_path):
    url = "http://user:sk-URL-SECRET@host:8000/v1"
    assert redact_url(url) == "http://***@host:8000/v1"
    assert redact_url(f"failed: POST {url}/chat (see https://a:b@c/d)") == \
        "failed: POST http://***@host:8000/v1/chat (see https://***@c/d)"
    assert redact_url("mail me@example.com at http://host/v1") == "mail me@example.com at http://host/v1"
    assert redact_url("got 'user:sk-URL-SECRET@host:8000/v1'") == "got '***@host:8000/v1'"  # no scheme
    assert redact_url("http://***@host") == "http://***@host"  # idempotent
    record = {"judge": {"base_url": url}, "urls": [url], "note": f"endpoint {url}"}
    write_json(tmp_path / "c.json", record)
    write_yaml(tmp_path / "c.yaml", record)
    write_jsonl(tmp_path / "r.jsonl", [record])
    append_jsonl(tmp_path / "m.jsonl", record)
    for f in tmp_path.iterdir():
        assert "sk-URL-SECRET" not in f.read_text() and "***@host" in f.read_text()


def test_json_writers_are_strict(tmp_path):
    import numpy as np
    import torch

    obj = {"nan": math.nan, "inf": -math.inf, "ok": 1.5, "np": np.float32("nan"), "t": torch.tensor(float("inf")),
           "nested": [math.nan, {"x": math.inf}], "tup": (1, math.nan)}
    expect = {"nan": None, "inf": None, "ok": 1.5, "np": None, "t": None, "nested": [None, {"x": None}],
              "tup": [1, None]}

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))

    write_json(tmp_path / "a.json", obj)
    write_jsonl(tmp_path / "b.jsonl", [obj])
    append_jsonl(tmp_path / "c.jsonl", obj)
    assert strict((tmp_path / "a.json").read_text()) == expect
    assert strict((tmp_path / "b.jsonl").read_text()) == expect == strict((tmp_path / "c.jsonl").read_text())
    assert strict(to_json(obj)) == expect


def test_new_run_dir_removes_an_unstarted_run_only(tmp_path):
    with pytest.raises(ValueError):
        with new_run_dir(tmp_path, "x") as d:
            write_json(d / "config.json", {"a": 1})  # setup files only: the run never started
            raise ValueError("model missing")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):
        with new_run_dir(tmp_path, "y") as d:
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with new_run_dir(tmp_path, "z") as kept:
            write_json(kept / "config.json", {})
            append_jsonl(kept / "metrics.jsonl", {"step": 1})  # the run had started: keep its record
            raise RuntimeError("crash at step 2")
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "metrics.jsonl"]
    with new_run_dir(tmp_path, "ok") as fine:
        pass
    assert fine.is_dir()  # success never removes anything


def test_run_dir_errors_name_the_path(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for root in (afile, afile / "sub"):
        with pytest.raises(RunDirError, match="afile"):
            check_run_root(root)
        with pytest.raises(RunDirError, match="afile"):
            make_run_dir(root, "r")
    assert check_run_root(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # the check creates nothing


def test_make_run_dir_is_unique(tmp_path):
    a, b = make_run_dir(tmp_path, "x"), make_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir() and a.name.startswith("x-")


def test_atomic_write_leaves_old_content_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_read_jsonl_tolerates_a_torn_last_line_only(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"step": 1})
    append_jsonl(p, {"step": 2})
    with open(p, "a") as f:
        f.write('{"step": 3, "lo')  # crash mid-write
    assert [r["step"] for r in read_jsonl(p)] == [1, 2]
    p.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2"):
        read_jsonl(p)


def test_mean_std_and_welch():
    ms = mean_std([1.0, 2.0, 3.0, float("nan")])
    assert (ms.mean, ms.std, ms.n) == (2.0, 1.0, 3)
    assert mean_std([5.0]).std == 0.0
    t, p = welch_t([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    assert t == pytest.approx(-1.2572, abs=1e-3) and p == pytest.approx(0.2803, abs=1e-3)
    assert welch_t([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)
    assert welch_t([1.0, 1.0], [2.0, 2.0])[1] == 0.0
    assert math.isnan(welch_t([1.0], [2.0, 3.0])[0])


def test_bootstrap_se_and_wilson():
    vals = [0.0, 1.0] * 50
    se = bootstrap_se(vals, n_boot=2000, seed=0)
    assert se == pytest.approx(0.05, rel=0.15)  # sqrt(0.25 / 100)
    assert bootstrap_se([0.3] * 10) == pytest.approx(0.0, abs=1e-12)
    assert bootstrap_se([2.0, 3.0], clip=(0.0, 1.0)) == 0.0  # every resample clips to 1
    lo, hi = wilson_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(10, 10)[1] == 1.0
    assert json.dumps(wilson_ci(3, 7))  # plain floats
