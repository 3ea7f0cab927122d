"""``Task.score``: offline scoring of given responses, the same result ``Task.evaluate`` reports for the same
completions; ``rvpo eval task NAME --responses FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvpo.cli import main
from rvpo.tasks.base import Task, can_score, get_task


def fixed_generate(texts: list[str], calls: list | None = None):
    """A stand-in for :func:`rvpo.model.generation.generate` that answers prompt ``i`` with ``texts[i]``."""

    def fake(model, tokenizer, prompts, **kw):
        assert len(prompts) == len(texts)
        if calls is not None:
            calls.append(kw)
        return list(texts)

    return fake


def write_jsonl(path: Path, objs: list) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- score == evaluate


def test_toolcall_score_equals_evaluate(monkeypatch):
    import rvpo.tasks.toolcall.eval as toolcall_eval
    import rvpo.tasks.toolcall.task as toolcall_task

    task = get_task("toolcall")
    rows = task.load("builtin:test", "eval")[:6]
    texts = [r["gold"] if i % 2 == 0 else "no call here" for i, r in enumerate(rows)]
    calls: list = []
    monkeypatch.setattr(toolcall_task, "generate", fixed_generate(texts, calls))
    ev = task.evaluate(object(), object(), rows, max_new_tokens=7, batch_size=2)
    assert calls == [{"max_new_tokens": 7, "temperature": 0.0, "batch_size": 2}]  # greedy, as before
    sc = task.score(rows, texts)
    assert set(ev) - set(sc) == {"seconds", "model", "max_new_tokens"}
    assert {k: ev[k] for k in sc} == sc
    assert sc["metrics"]["exact_match_rate"] == 0.5 and sc["n"] == 6
    assert [r["completion"] for r in sc["records"]] == texts

    # the same numbers as the tool-call eval function the task used before
    monkeypatch.setattr(toolcall_eval, "generate", fixed_generate(texts))
    old = toolcall_eval.evaluate_toolcall(object(), rows, max_new_tokens=7, batch_size=2, tokenizer=object())
    assert {k: v for k, v in ev.items() if k not in ("metrics", "ci95", "seconds")} == \
        {k: v for k, v in old.items() if k != "seconds"}


def test_constraints_score_equals_evaluate(monkeypatch):
    import rvpo.tasks.constraints.task as constraints_task
    from rvpo.tasks.constraints import score_responses

    task = get_task("constraints", {"n_test": 8})
    rows = task.load("builtin:test", "eval")
    texts = ["<<Title>> Trees and green leaves line the quiet forest path.", "yes, no", "", "A SHOUT"] * 2
    monkeypatch.setattr(constraints_task, "generate", fixed_generate(texts))
    ev = task.evaluate(object(), object(), rows, max_new_tokens=5, batch_size=4)
    sc = task.score(rows, texts)
    assert ev == sc == score_responses(rows, texts)
    assert sc["n"] == 8 and set(sc["metrics"]) >= set(task.eval_metrics)


def test_neglect_score_equals_evaluate_greedy_and_sampled(monkeypatch):
    import rvpo.tasks.neglect.task as neglect_task

    task = get_task("neglect", {"n_easy": 2, "max_words": 6})
    rows = task.load("builtin:test", "eval")[:4]
    texts = ["Short answer.", "one two three four five six seven eight nine ten eleven", "Rivers carve deep valleys "
             "through ancient granite mountains slowly", "ok"]
    monkeypatch.setattr(neglect_task, "generate", fixed_generate(texts))
    ev = task.evaluate(object(), object(), rows, max_new_tokens=9, batch_size=2)
    sc = task.score(rows, texts)
    assert {k: ev[k] for k in sc} == sc
    assert set(ev) - set(sc) == {"max_new_tokens", "temperature", "samples", "seed"}
    assert sc["metrics"]["constraint"] == 0.5  # 2 of 4 within 6 words

    sampled = texts + texts[::-1]  # 2 samples a prompt for 4 prompts
    monkeypatch.setattr(neglect_task, "generate", fixed_generate(sampled))
    ev = task.evaluate(object(), object(), rows, max_new_tokens=9, batch_size=2, temperature=1.0, samples=2)
    sc = task.score(rows, [sampled[2 * i:2 * i + 2] for i in range(4)])
    assert {k: ev[k] for k in sc} == sc and sc["completions"] == 8


def test_rubric_score_equals_evaluate_with_the_sessions_judge(tmp_path, monkeypatch):
    import rvpo.tasks.rubric.task as rubric_task
    from rvpo.judge.client import JudgeStats
    from rvpo.judge.parse import Verdict

    class Judge:
        def __init__(self):
            self.stats = JudgeStats()

        def judge_many(self, requests):
            return [Verdict(criteria_met=i % 3 != 1, explanation="") for i, _ in enumerate(requests)]

        def stats_delta(self, prefix=""):
            return {}

    data = tmp_path / "hb.jsonl"
    data.write_text("".join(json.dumps({
        "prompt_id": f"p{i}", "prompt": [{"role": "user", "content": f"My ankle hurts ({i}). What should I do?"}],
        "rubrics": [{"criterion": "Recommends ice", "points": 5, "tags": ["axis:accuracy"]},
                    {"criterion": "Recommends surgery", "points": -3, "tags": ["axis:accuracy"]}]}) + "\n"
        for i in range(3)), encoding="utf-8")
    task = get_task("rubric", {"heldout": 0})
    rows = task.load(str(data), "train")
    texts = ["Put ice on it.", "Rest.", "Ice and rest."]
    with pytest.raises(RuntimeError, match="no judge"):
        task.score(rows, texts)  # outside the session
    task.judge = Judge()

    class Policy:
        def __init__(self, *a, **kw):
            pass

        def answer(self, conversations):
            return list(texts)

    monkeypatch.setattr(rubric_task, "LocalPolicy", Policy)
    ev = task.evaluate(object(), object(), rows, max_new_tokens=5, batch_size=2)
    sc = task.score(rows, texts)
    for key in ("n", "metrics", "ci95", "records"):
        assert ev[key] == sc[key], key
    with pytest.raises(ValueError, match="3 rows but 2 responses"):
        task.score(rows, texts[:2])


def test_the_base_score_names_the_task():
    class Bare(Task):
        name = "bare"

    assert not can_score(Bare()) and can_score(get_task("neglect"))
    with pytest.raises(NotImplementedError, match="task 'bare' cannot score given responses"):
        Bare().score([{"prompt": []}], ["x"])


# ----------------------------------------------------------------------------- rvpo eval task --responses


def _neglect_rows(n: int) -> list[dict]:
    return get_task("neglect", {"n_easy": 2}).load("builtin:test", "eval")[:n]


def test_cli_scores_given_responses_like_task_score(tmp_path, capsys):
    rows = _neglect_rows(4)
    texts = ["Short answer.", "one two three", "Rivers carve deep valleys through granite.", "ok"]
    out = tmp_path / "runs"
    by_order = write_jsonl(tmp_path / "answers.jsonl", [{"response": t} for t in texts])
    assert main(["eval", "task", "neglect", "--task-option", "n_easy=2", "--limit", "4", "--responses",
                 str(by_order), "--out", str(out), "--json"]) == 0
    head = json.loads(capsys.readouterr().out)
    want = get_task("neglect", {"n_easy": 2}).score(rows, texts)
    assert head["n"] == 4 and head["metrics"] == want["metrics"] and head["model"] is None
    assert head["responses"] == str(by_order)
    run_dir = next(out.glob("eval-neglect-*"))
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == want["metrics"]
    assert [json.loads(ln)["completion"] for ln in (run_dir / "examples.jsonl").read_text().splitlines()] == texts
    assert json.loads((run_dir / "config.json").read_text())["responses"] == str(by_order)

    # with ids: matched to the rows whatever the order
    by_id = write_jsonl(tmp_path / "by_id.jsonl", [{"id": r["id"], "response": t}
                                                   for r, t in reversed(list(zip(rows, texts, strict=True)))])
    assert main(["eval", "task", "neglect", "--task-option", "n_easy=2", "--limit", "4", "--responses", str(by_id),
                 "--out", str(tmp_path / "runs2")]) == 0
    captured = capsys.readouterr()
    assert "responses: " in captured.out and "run dir:" in captured.err
    run_dir = next((tmp_path / "runs2").glob("eval-neglect-*"))
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == want["metrics"]


def test_cli_responses_errors_are_one_line(tmp_path, capsys, tiny_llama_dir):
    rows = _neglect_rows(3)
    out = tmp_path / "runs"
    base = ["eval", "task", "neglect", "--limit", "3", "--out", str(out), "--responses"]

    def fails(path: Path, *extra: str) -> str:
        assert main([*base, str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1, err
        return err

    bad_json = write_jsonl(tmp_path / "bad.jsonl", [{"response": "a"}, "{not json", {"response": "c"}])
    assert f"{bad_json}:2: invalid JSON" in fails(bad_json)
    no_response = write_jsonl(tmp_path / "nores.jsonl", [{"response": "a"}, {"answer": "b"}, {"response": "c"}])
    assert f"{no_response}:2: expected an object with a string 'response'" in fails(no_response)
    too_many = write_jsonl(tmp_path / "many.jsonl", [{"response": str(i)} for i in range(4)])
    assert f"{too_many}:4: 4 responses for 3 rows" in fails(too_many)
    too_few = write_jsonl(tmp_path / "few.jsonl", [{"response": "a"}])
    assert f"{too_few}: 1 responses for 3 rows" in fails(too_few)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"id": r["id"], "response": "x"} for r in rows[:2]]
                          + [{"id": "nope", "response": "x"}])
    assert f"{unknown}:3: id 'nope' is not among the 3 rows" in fails(unknown)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"id": r["id"], "response": "x"} for r in rows[:2]])
    assert f"no response for id '{rows[2]['id']}'" in fails(missing)
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"id": rows[0]["id"], "response": "x"}] * 3)
    assert f"{twice}:2: id '{rows[0]['id']}' given twice" in fails(twice)
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"id": rows[0]["id"], "response": "x"}, {"response": "y"},
                                                   {"id": rows[2]["id"], "response": "z"}])
    assert f"{mixed}:2: no 'id' while other lines have one" in fails(mixed)
    assert f"--responses {tmp_path / 'absent.jsonl'}: no such file" in fails(tmp_path / "absent.jsonl")

    good = write_jsonl(tmp_path / "good.jsonl", [{"response": "x"}] * 3)
    assert "leave out --model and --checkpoints" in fails(good, "--model", tiny_llama_dir)
    assert "leave out --model and --checkpoints" in fails(good, "--checkpoints", str(tmp_path))

    task_file = tmp_path / "mytask.py"
    task_file.write_text(
        "from rvpo.tasks.base import Task\n\n"
        "class NoScore(Task):\n"
        "    name = 'noscore'\n"
        "    def load(self, spec, split, seed=0):\n"
        "        return [{'prompt': [{'role': 'user', 'content': 'hi'}], 'id': str(i)} for i in range(3)]\n"
        "    def reward_funcs(self):\n"
        "        return []\n"
        "    def evaluate(self, model, tokenizer, rows, *, max_new_tokens, batch_size):\n"
        "        return {'n': 0, 'metrics': {}, 'ci95': {}, 'records': []}\n\n"
        "def make_task():\n"
        "    return NoScore()\n", encoding="utf-8")
    assert main(["eval", "task", f"{task_file}:make_task", "--responses", str(good), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "task 'noscore' cannot score given responses" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # no run folder left behind by a failure


def test_cli_rubric_responses_are_judged_in_the_tasks_session(tmp_path, capsys):
    data = write_jsonl(tmp_path / "hb.jsonl", [
        {"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": f"My ankle hurts ({i}). What should I do?"}],
         "rubrics": [{"criterion": 'Recommends "ice"', "points": 5, "tags": ["axis:accuracy"]},
                     {"criterion": 'Recommends "surgery"', "points": -3, "tags": ["axis:accuracy"]}]}
        for i in range(3)])
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"id": "p2", "response": "ice and rest"},
                                                       {"id": "p0", "response": "ice now"},
                                                       {"id": "p1", "response": "surgery"}])
    out = tmp_path / "runs"
    assert main(["eval", "task", "rubric", "--data", str(data), "--task-option", "judge_backend=rule",
                 "--responses", str(answers), "--out", str(out), "--json"]) == 0  # the embedded rule judge
    head = json.loads(capsys.readouterr().out)
    assert head["n"] == 3 and head["metrics"]["satisfied"] == pytest.approx(4 / 6)
    run_dir = next(out.glob("eval-rubric-*"))
    records = {r["id"]: r for r in map(json.loads, (run_dir / "examples.jsonl").read_text().splitlines())}
    assert {k: r["answer"] for k, r in records.items()} == {"p0": "ice now", "p1": "surgery", "p2": "ice and rest"}
    assert (run_dir / "judge_stats.json").is_file()
