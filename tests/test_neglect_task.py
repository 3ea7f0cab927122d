"""The built-in ``neglect`` task: its channels on hand-written answers, its data, options, eval and one run."""

from __future__ import annotations

import json

import pytest
import torch

from rvpo.tasks.base import StepData, get_task
from rvpo.tasks.neglect import content_words, count_words, score_responses
from rvpo.tasks.neglect.data import TOPICS


def _scores(task, text):
    c = [[{"role": "assistant", "content": text}]]
    return {fn.__name__: fn(prompts=[[{"role": "user", "content": "q"}]], completions=c)[0] for fn in task.reward_funcs()}


def test_channels_on_hand_written_answers():
    task = get_task("neglect", {"max_words": 10, "thresholds": [3, 5]})
    assert task.channel_names() == ["constraint", "rich_3", "rich_5", "words"]
    assert task.monitor_channels == ("words",) and task.constraint_channels == ("constraint",)
    assert task.easy_channels == ("rich_3", "rich_5") and task.target_metric == "constraint"
    # 5 words; content words: bees, make, honey (the, and are stop words; "bees" twice counts once)
    assert _scores(task, "The bees make honey, bees!") == {"constraint": 1.0, "rich_3": 1.0, "rich_5": 0.0, "words": 5.0}
    long = "Volcanoes erupt molten rock and ash, building islands, enriching soil, shaping weather, threatening towns."
    assert count_words(long) == 14 and len(content_words(long)) == 13  # all but 'and'
    assert _scores(task, long) == {"constraint": 0.0, "rich_3": 1.0, "rich_5": 1.0, "words": 14.0}
    assert _scores(task, "") == {"constraint": 1.0, "rich_3": 0.0, "rich_5": 0.0, "words": 0.0}
    assert count_words("a - b -- c 3") == 4  # pieces without a letter or digit are not words
    assert content_words("It's the Moon's light") == {"moon", "light"}


def test_data_is_deterministic_with_disjoint_splits():
    task = get_task("neglect", {"n_test": 40, "data_seed": 3, "word_limit_in_prompt": 25})
    train, test = task.load("builtin", "train"), task.load("builtin", "eval")
    assert len(test) == 40 and len(train) == len(TOPICS) - 40
    assert {r["topic"] for r in train}.isdisjoint({r["topic"] for r in test})
    assert len({r["id"] for r in train + test}) == len(train) + len(test)
    assert all(r["prompt"][0]["content"].endswith("Answer in at most 25 words.") for r in train + test)
    assert task.load("builtin", "train", seed=7) == get_task("neglect", {"n_test": 40, "data_seed": 3,
                                                                          "word_limit_in_prompt": 25}).load("builtin", "train")
    assert task.load("builtin:test", "train") == test
    other = get_task("neglect", {"n_test": 40, "data_seed": 4}).load("builtin:test", "eval")
    assert [r["topic"] for r in other] != [r["topic"] for r in test]
    # more training prompts than topics: the same training topics under other templates
    many = get_task("neglect", {"n_train": 400}).load("builtin", "train")
    assert len(many) == 400 and len({(r["topic"], r["template"]) for r in many}) == 400
    assert {r["topic"] for r in many} == {r["topic"] for r in get_task("neglect").load("builtin", "train")}
    assert {r["topic"] for r in many}.isdisjoint({r["topic"] for r in get_task("neglect").load("builtin:test", "eval")})


@pytest.mark.parametrize("options, match", [
    ({"max_words": 0}, "max_words: expected an int >= 1"),
    ({"thresholds": []}, "thresholds: expected a non-empty list"),
    ({"thresholds": [8, 8]}, "thresholds: duplicate"),
    ({"thresholds": [8], "n_easy": 2}, "thresholds, n_easy: give one of them"),
    ({"n_easy": 0}, "n_easy: expected an int >= 1"),
    ({"n_test": 200}, r"n_test: expected an int in \[1, 199\]"),
    ({"n_train": 10_000}, "n_train: at most 672 prompts"),
    ({"data_seed": -1}, "data_seed: expected an int >= 0"),
    ({"word_limit_in_prompt": "x"}, "word_limit_in_prompt: expected an int"),
    ({"max_word": 3}, r"unknown option 'max_word' \(did you mean 'max_words'\?\)"),
    ({"bogus": 3}, r"unknown option 'bogus'; known options: max_words, thresholds, n_easy"),
])
def test_option_errors(options, match):
    with pytest.raises(ValueError, match=r"task_options for task 'neglect': (.*: )?" + match):
        get_task("neglect", options)


def test_n_easy_and_bad_data_spec():
    task = get_task("neglect", {"n_easy": 3})
    assert task.easy_channels == ("rich_8", "rich_10", "rich_12")
    with pytest.raises(ValueError, match="reads 'builtin'"):
        task.load("data.jsonl", "train")


def test_score_responses_single_and_sampled():
    rows = [{"id": "a", "topic": "t"}, {"id": "b", "topic": "u"}]
    short, long = "Bees make honey.", " ".join(f"word{i} idea{i}" for i in range(20))
    res = score_responses(rows, [short, long], max_words=10, thresholds=(2,))
    m = res["metrics"]
    assert res["n"] == 2 and res["completions"] == 2
    assert m["constraint"] == 0.5 and m["rich_2"] == 1.0 and m["easy_mean"] == 1.0 and m["words"] == 21.5
    assert 0 < res["ci95"]["constraint"][0] < 0.5 < res["ci95"]["constraint"][1] < 1  # Wilson
    res = score_responses(rows, [[short, long], [short, short]], max_words=10, thresholds=(2,))
    assert res["completions"] == 4 and res["metrics"]["constraint"] == 0.75
    lo, hi = res["ci95"]["constraint"]
    assert 0.0 <= lo < 0.75 < hi <= 1.0  # over per-prompt means (0.5, 1.0), clipped to [0, 1]
    assert [r["id"] for r in res["records"]] == ["a", "a", "b", "b"]
    json.dumps(res, allow_nan=False)
    one = score_responses(rows[:1], [short], max_words=10, thresholds=(2,))
    assert one["ci95"]["words"] == [None, None]  # no interval from one value
    json.dumps(one, allow_nan=False)


def test_step_metrics_from_the_completions():
    task = get_task("neglect", {"max_words": 3})
    data = StepData(completions=("One two.", "one two three four five", "Done!", "cut off mid"),
                    rewards=torch.zeros(4, 6), channel_names=tuple(task.channel_names()))
    m = task.step_metrics(None, data=data)
    assert m == {"neglect/words_mean": pytest.approx(11 / 4), "neglect/over_limit_frac": 0.25,
                 "neglect/truncated_frac": 0.5}
    assert task.step_metrics(None) == {} and task.step_metrics(None, data=StepData()) == {}


def test_one_training_step_logs_monitor_and_step_data(tmp_path, tiny_llama_dir):
    """A real ``rvpo train`` step (tiny random model): the monitor channel is logged but has binding 0,
    the task's step metrics see the completions, the eval samples."""
    from rvpo.runs import read_jsonl
    from rvpo.train.config import build_config
    from rvpo.train.run import train

    cfg = build_config(string_overrides={
        "model": tiny_llama_dir, "task": "neglect", "task_options": "{n_train: 4, n_test: 2, thresholds: [2, 3]}",
        "out": str(tmp_path / "runs"), "steps": "1", "group_size": "2", "prompts_per_step": "2",
        "max_completion_length": "6", "lora.r": "2", "lora.alpha": "4", "eval.examples": "2",
        "eval.max_new_tokens": "4", "eval.batch_size": "4", "eval.temperature": "0.8", "eval.samples": "2",
        "weights": "{constraint: 2}", "estimator": "rvpo", "k": "1.0", "save_steps": "1"})
    res = train(cfg, progress=False, log=lambda m: None)
    rec = read_jsonl(res.run_dir / "metrics.jsonl")[0]
    assert "rewards/words/mean" in rec and rec["rvpo/binding/words"] == 0.0
    assert rec["neglect/words_mean"] == pytest.approx(rec["rewards/words/mean"])
    assert 0.0 <= rec["neglect/truncated_frac"] <= 1.0
    before = json.loads((res.run_dir / "eval_before.json").read_text())
    assert before["samples"] == 2 and before["completions"] == 4 and before["temperature"] == 0.8
    assert set(cfg.advantage.weights) == {"constraint"}
