"""HealthBench eval: scripted policy/judge on real rows, and the CLI end to end over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvpo.cli import main
from rvpo.judge import Verdict
from rvpo.tasks.rubric import aggregate_scores, example_score, load_rubric_file
from rvpo.tasks.rubric.healthbench import format_report, run_healthbench

HB = Path(__file__).resolve().parents[2] / "shared" / "data" / "healthbench"
HARD = HB / "healthbench_hard_sample50.jsonl"


class EchoPolicy:
    def answer(self, convs):
        return [f"answer {i}: " + c[-1]["content"][:40] for i, c in enumerate(convs)]

    def describe(self):
        return {"kind": "echo"}


class ParityJudge:
    """Fake judge: item k of a batch is met iff k is even; every 7th item abstains."""

    def __init__(self):
        self.calls = 0

    def judge_many(self, requests):
        self.calls += 1
        return [None if k % 7 == 6 else Verdict(criteria_met=k % 2 == 0, explanation=f"item {k}")
                for k in range(len(requests))]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.needs_shared("healthbench")
def test_run_healthbench_scores_match_scoring_and_run_dir(tmp_path):
    ds = load_rubric_file(HARD, limit=4)
    judge = ParityJudge()
    res = run_healthbench(ds.examples, EchoPolicy(), judge, out_dir=tmp_path, config={"data": str(HARD)}, n_boot=100)
    assert judge.calls == 1  # every item of every example in one batch
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "results.json", "examples.jsonl"}
    recs = _read_jsonl(tmp_path / "examples.jsonl")
    assert [r["id"] for r in recs] == [ex.id for ex in ds]
    assert recs[0]["answer"].startswith("answer 0: ")
    # recompute every score from the stored verdicts with the pure scoring functions
    k = 0
    graded = []
    for ex, rec in zip(ds, recs, strict=True):
        met = [it["criteria_met"] for it in rec["items"]]
        assert met == [None if (k + j) % 7 == 6 else (k + j) % 2 == 0 for j in range(len(ex.items))]
        k += len(ex.items)
        assert rec["score"] == pytest.approx(example_score(ex.items, met))
        assert rec["n_abstained"] == sum(m is None for m in met)
        graded.append((ex.items, met, ex.example_tags))
    expect = aggregate_scores(graded, n_boot=100)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["overall"] == pytest.approx(expect.overall.as_dict())
    assert saved["n_abstained"] == expect.n_abstained == sum(j % 7 == 6 for j in range(k)) > 0
    assert saved["n_items"] == k and saved["n_examples"] == 4
    assert saved["by_axis"] == {a: pytest.approx(v.as_dict()) for a, v in expect.by_axis.items()}
    assert saved["by_theme"] == {t: pytest.approx(v.as_dict()) for t, v in expect.by_theme.items()}
    assert set(saved["by_theme"]) == {t[6:] for ex in ds for t in ex.example_tags if t.startswith("theme:")}
    assert len(saved["by_axis"]) >= 3
    assert "overall" in format_report(res) and "axis" in format_report(res)


def test_cli_user_errors(tmp_path, capsys, monkeypatch):
    for var in ("RVPO_JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "rubric": []}\n', encoding="utf-8")
    cases = [
        (["--data", str(bad), "--judge-url", "http://127.0.0.1:9/v1"], f"{bad}:1:"),
        (["--data", str(HARD)], "--judge-url"),
        (["--data", str(HARD), "--model", "x", "--policy-base-url", "http://h/v1", "--judge-url",
          "http://127.0.0.1:9/v1"], "not both"),
        (["--data", str(HARD), "--policy-base-url", "http://h/v1", "--judge-url", "http://h/v1"], "--policy-model"),
        (["--data", str(HARD), "--limit", "0"], "--limit"),
    ]
    for argv, msg in cases:
        rc = main(["eval", "healthbench", *argv, "--out", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err, (argv, err)


def _all_text(run_dir: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(run_dir.rglob("*")) if p.is_file())


def _check_run_dir(run_dir: Path, data: Path, n: int) -> dict:
    """The run dir holds the three files and its scores follow from its own verdicts."""
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "results.json", "examples.jsonl"}
    ds = load_rubric_file(data, limit=n)
    recs = _read_jsonl(run_dir / "examples.jsonl")
    assert [r["id"] for r in recs] == [ex.id for ex in ds]
    graded = []
    for ex, rec in zip(ds, recs, strict=True):
        met = [it["criteria_met"] for it in rec["items"]]
        assert [it["criterion"] for it in rec["items"]] == [it.criterion for it in ex.items]
        assert rec["score"] == pytest.approx(example_score(ex.items, met))
        graded.append((ex.items, met, ex.example_tags))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["overall"] == pytest.approx(aggregate_scores(graded).overall.as_dict())
    assert results["n_examples"] == n
    return results


@pytest.mark.needs_shared("healthbench")
def test_cli_tiny_local_policy_and_rule_judge_over_http(tmp_path, capsys, monkeypatch):
    from judge_server_fixture import FAKE_KEY, judge_server
    from test_eval_gpqa import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny")
    monkeypatch.setenv("RVPO_JUDGE_API_KEY", FAKE_KEY)
    with judge_server("rule", api_key=FAKE_KEY) as srv:
        rc = main(["eval", "healthbench", "--data", str(HARD), "--limit", "3", "--model", str(model),
                   "--max-new-tokens", "6", "--judge-url", srv.url, "--judge-model", "rvpo-rule",
                   "--judge-cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "runs"), "--json"])
        served = srv.stats()
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    n_items = sum(len(ex.items) for ex in load_rubric_file(HARD, limit=3))
    assert summary["n_items"] == n_items and summary["n_abstained"] == 0
    assert summary["judge_stats"]["requests"] == n_items
    assert served["completions"] == n_items  # one HTTP call per rubric item (fresh cache), key accepted
    results = _check_run_dir(Path(summary["run_dir"]), HARD, 3)
    assert 0.0 <= results["overall"]["mean"] <= 1.0 and results["by_axis"]
    config = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert config["policy"]["kind"] == "local" and config["judge"]["base_url"] == srv.url
    assert FAKE_KEY not in _all_text(Path(summary["run_dir"])) + out.out + out.err


@pytest.mark.needs_shared("healthbench")
def test_cli_endpoint_policy_with_echo_server(tmp_path, capsys):
    from judge_server_fixture import judge_server
    from rvpo.evals.policy import OpenAIPolicy

    with judge_server("echo", model_name="echo") as pol_srv, judge_server("rule") as judge_srv:
        policy = OpenAIPolicy(pol_srv.url, "echo", max_new_tokens=16, concurrency=2)
        convs = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
        assert policy.answer(convs) == ["question 0", "question 1", "question 2"]
        rc = main(["eval", "healthbench", "--data", str(HARD), "--limit", "2", "--policy-base-url", pol_srv.url,
                   "--policy-model", "echo", "--judge-url", judge_srv.url, "--judge-model", "rvpo-rule",
                   "--judge-cache", "none", "--out", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "overall" in out.out and "axis" in out.out
    (run_dir,) = (tmp_path / "runs").iterdir()
    _check_run_dir(run_dir, HARD, 2)
    recs = _read_jsonl(run_dir / "examples.jsonl")
    ds = load_rubric_file(HARD, limit=2)
    assert [r["answer"] for r in recs] == [ex.conversation[-1]["content"] for ex in ds]  # the echo policy
    with pytest.raises(RuntimeError, match="request 0 failed"):
        OpenAIPolicy("http://127.0.0.1:9/v1", "x", max_retries=0, timeout_s=2).answer([[{"role": "user", "content": "q"}]])


def test_cli_bad_model_fails_before_a_run_dir(tmp_path, capsys):
    rc = main(["eval", "healthbench", "--data", str(HARD), "--model", str(tmp_path / "no_such_model"),
               "--judge-url", "http://127.0.0.1:9/v1", "--judge-cache", "none", "--out", str(tmp_path / "runs")])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.needs_shared("healthbench")
def test_every_verdict_abstained_is_a_failed_eval_with_strict_json(tmp_path, capsys):
    """An unreachable judge: exit 1 with a one-line reason; results.json is valid JSON with null scores."""
    from judge_server_fixture import judge_server

    with judge_server("echo", model_name="echo") as pol_srv:
        rc = main(["eval", "healthbench", "--data", str(HARD), "--limit", "2", "--policy-base-url", pol_srv.url,
                   "--policy-model", "echo", "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m",
                   "--judge-cache", "none", "--judge-concurrency", "64", "--out", str(tmp_path / "runs"), "--json"])
    out = capsys.readouterr()
    assert rc == 1, out.err
    error = [line for line in out.err.splitlines() if line.startswith("rvpo eval: error:")]
    assert len(error) == 1 and "abstained on every rubric item" in error[0] and "connection" in error[0]
    summary = json.loads(out.out)
    (run_dir,) = (tmp_path / "runs").iterdir()
    text = (run_dir / "results.json").read_text()
    results = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert results["status"] == summary["status"] == "failed" and results["failure"] == summary["failure"]
    assert results["overall"]["mean"] is None and results["n_abstained"] == results["n_items"] > 0
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.needs_shared("healthbench")
def test_url_userinfo_never_stored_or_printed(tmp_path, capsys):
    """``http://user:KEY@host/v1`` for the judge and the policy: the key appears in no output or file."""
    from judge_server_fixture import judge_server

    key = "sk-in-url-SECRET-4242"
    with judge_server("echo", model_name="echo") as pol_srv, judge_server("rule") as judge_srv:
        pol_url = pol_srv.url.replace("http://", f"http://user:{key}@")
        judge_url = judge_srv.url.replace("http://", f"http://user:{key}@")
        rc = main(["eval", "healthbench", "--data", str(HARD), "--limit", "1", "--policy-base-url", pol_url,
                   "--policy-model", "echo", "--judge-url", judge_url, "--judge-model", "rvpo-rule",
                   "--judge-cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "runs"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["judge"]["base_url"].startswith("http://***@") and config["policy"]["base_url"].startswith("http://***@")
    stored = _all_text(run_dir) + (tmp_path / "cache.sqlite").read_bytes().decode("latin-1")
    assert key not in stored + out.out + out.err
