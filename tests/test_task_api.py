"""The task plug-in API: monitor-only (weight 0) channels, weights by name, file-path tasks,
``step_metrics`` with the step's data, sampled eval options."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rvpo import compute_advantages
from rvpo.core import AdvantageSpec
from rvpo.core.schedules import make_schedule
from rvpo.tasks.base import TASKS, StepData, Task, call_step_metrics, get_task, resolve_channel_weights
from rvpo.train.config import ConfigError, build_config
from rvpo.train.run import advantage_spec, channel_weights, eval_options

ESTIMATORS = [("grpo", {}), ("gdpo", {}), ("rvpo", {"k": 1.0}), ("rvpo", {"k": 1e-7}), ("rvpo", {"k": 80.0}),
              ("rvpo", {"k": math.inf}), ("rvpo", {"k": make_schedule("adaptive")(0, 1)}),
              ("rvpo_explicit", {"beta": 0.5}), ("hardmin", {})]


@st.composite
def batch_with_extra(draw):
    g, b, m = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    val = st.one_of(st.integers(-8, 8).map(lambda x: x / 4), st.just(math.nan))
    base = torch.tensor(draw(st.lists(val, min_size=b * g * m, max_size=b * g * m)), dtype=torch.float64)
    extra = torch.tensor(draw(st.lists(val, min_size=b * g, max_size=b * g)), dtype=torch.float64)
    weights = draw(st.lists(st.sampled_from([0.5, 1.0, 3.0]), min_size=m, max_size=m))
    pos = draw(st.integers(0, m))
    return base.view(b * g, m), extra.view(b * g, 1), weights, pos, g


@settings(max_examples=80, deadline=None)
@given(batch_with_extra(), st.sampled_from(ESTIMATORS))
def test_a_zero_weight_channel_changes_no_advantage(data, est):
    """Advantages with an extra weight-0 channel (anywhere, any values, abstentions too) equal those without it:
    it is out of the soft-min's M, the hard-min, the mean-variance, and alone it scores nothing."""
    base, extra, weights, pos, g = data
    name, kw = est
    full = torch.cat([base[:, :pos], extra, base[:, pos:]], dim=1)
    without = compute_advantages(base, g, name, weights=weights, **kw).advantages
    with_it = compute_advantages(full, g, name, weights=weights[:pos] + [0.0] + weights[pos:], **kw).advantages
    torch.testing.assert_close(with_it, without, atol=1e-9, rtol=1e-7)


def test_a_completion_scored_only_by_a_monitor_channel_is_unscored():
    nan = math.nan
    r = torch.tensor([[1.0, 5.0], [0.0, 7.0], [nan, 9.0], [nan, 2.0]])  # second group: only the monitor channel
    out = compute_advantages(r, 2, "gdpo", weights=[1.0, 0.0])
    assert out.advantages[2:].tolist() == [0.0, 0.0]
    ref = compute_advantages(r[:, :1], 2, "gdpo")
    torch.testing.assert_close(out.advantages, ref.advantages)


def test_all_binary_met_leaves_out_monitor_channels():
    from rvpo.integrations.trl import all_binary_met

    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert all_binary_met(r) == pytest.approx(1 / 3)
    assert all_binary_met(r, torch.tensor([1.0, 0.0])) == pytest.approx(2 / 3)
    assert all_binary_met(r, [0.0, 0.0]) is None


class _Toy(Task):
    name = "toy"
    monitor_channels = ("len",)
    channel_weights = {"b": 2.0}


def test_resolve_channel_weights():
    names = ["a", "b", "len"]
    t = _Toy()
    assert resolve_channel_weights(t, names) == [1.0, 2.0, 0.0]
    assert resolve_channel_weights(t, names, {"a": 3}) == [3.0, 2.0, 0.0]
    assert resolve_channel_weights(t, names, [1, 1, 5]) == [1.0, 1.0, 0.0]  # a monitor channel weighs 0
    with pytest.raises(ValueError, match=r"advantage.weights: unknown channel\(s\) \['c'\].*a, b, len"):
        resolve_channel_weights(t, names, {"c": 1})
    with pytest.raises(ValueError, match="monitor-only"):
        resolve_channel_weights(t, names, {"len": 1})
    with pytest.raises(ValueError, match="expected 3 numbers"):
        resolve_channel_weights(t, names, [1, 2])
    t.monitor_channels = ("nope",)
    with pytest.raises(ValueError, match="monitor_channels"):
        resolve_channel_weights(t, names)


def test_weights_by_name_in_the_train_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: neglect\nadvantage:\n  weights: {constraint: 2}\n")
    cfg = build_config(path)
    assert cfg.advantage.weights == {"constraint": 2.0}
    task = get_task("neglect")
    assert channel_weights(cfg, task) == [2.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert advantage_spec(cfg, task).weights == (2.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    # the old positional form still works; the task's defaults apply without any weights
    cfg = build_config(string_overrides={"task": "neglect", "weights": "1,1,1,1,1,1"})
    assert advantage_spec(cfg, task).weights == (1.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    assert advantage_spec(build_config(string_overrides={"task": "neglect"}), task).weights[-1] == 0.0
    cfg = build_config(string_overrides={"task": "neglect", "weights": "{constrain: 2}"})
    with pytest.raises(ConfigError, match=r"'advantage.weights': unknown channel.*constrain.*constraint, rich_8"):
        channel_weights(cfg, task)
    with pytest.raises(ConfigError, match=r"'advantage.weights': expected 6 numbers"):
        channel_weights(build_config(string_overrides={"weights": "1,2"}), task)


def test_named_weights_must_be_resolved_before_computing():
    spec = AdvantageSpec(weights={"a": 2})
    assert spec.to_dict()["weights"] == {"a": 2.0}
    with pytest.raises(ValueError, match="by channel name"):
        spec.compute(torch.zeros(2, 2), 2)
    assert spec.resolve_weights(["b", "a"]).weights == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"weights.a: expected a finite number"):
        AdvantageSpec(weights={"a": "x"})


TASK_FILE = '''
from rvpo.tasks.base import Task

class FileTask(Task):
    name = "file"
    def __init__(self, n=1):
        self.n = n
    def load(self, spec, split, seed=0):
        return [{"prompt": [{"role": "user", "content": "hi"}], "id": str(i)} for i in range(self.n)]
    def reward_funcs(self):
        def one(prompts, completions, **kw):
            return [1.0] * len(completions)
        return [one]
    def evaluate(self, model, tokenizer, rows, *, max_new_tokens, batch_size):
        return {"n": 0, "metrics": {}, "ci95": {}, "records": []}

def make(**kw):
    return FileTask(**kw)
'''


def test_task_from_a_file_path(tmp_path):
    f = tmp_path / "my_task.py"
    f.write_text(TASK_FILE)
    task = get_task(f"{f}:make", {"n": 3})
    assert type(task).__name__ == "FileTask" and len(task.load("x", "train")) == 3
    with pytest.raises(ValueError, match=r"no such file"):
        get_task(f"{tmp_path / 'missing.py'}:make")
    with pytest.raises(ValueError, match=r"has no 'nope'; it defines .*make"):
        get_task(f"{f}:nope")
    with pytest.raises(ValueError, match=r"task_options for task .*unexpected keyword"):
        get_task(f"{f}:make", {"bad": 1})
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match=r"importing .*broken.py.* failed: RuntimeError: boom"):
        get_task(f"{bad}:make")


class _Old(Task):
    def step_metrics(self, advantages=None):
        return {"old/got": float(advantages)}


class _New(Task):
    def step_metrics(self, advantages=None, *, data=None):
        return {"new/adv": float(advantages), "new/n": float(len(data.completions)),
                "new/a_mean": sum(data.column("a")) / len(data.completions)}


def test_step_metrics_old_and_new_signatures_through_task_metrics():
    from rvpo.train.callbacks import TaskMetrics

    data = StepData(advantages=2.0, rewards=torch.tensor([[1.0], [0.0], [1.0]]), channel_names=("a",),
                    completions=("x", "y", "z"))
    assert call_step_metrics(_Old(), data) == {"old/got": 2.0}
    assert call_step_metrics(_New(), data) == {"new/adv": 2.0, "new/n": 3.0, "new/a_mean": pytest.approx(2 / 3)}
    cb = TaskMetrics(_New())
    cb.trainer = type("T", (), {"last_step_data": data, "last_rvpo_output": 2.0})()
    logs: dict = {"loss": 1.0}
    cb.on_log(None, None, None, logs=logs)
    assert logs["new/n"] == 3.0 and logs["loss"] == 1.0
    cb = TaskMetrics(_Old())  # a trainer without step data: the advantages alone, as before
    cb.trainer = type("T", (), {"last_rvpo_output": 5.0})()
    logs = {}
    cb.on_log(None, None, None, logs=logs)
    assert logs == {"old/got": 5.0}
    with pytest.raises(ValueError, match="unknown channel 'b'"):
        data.column("b")


def test_eval_options_pass_sampling_only_to_tasks_that_take_it(tmp_path):
    cfg = build_config(string_overrides={"eval.temperature": "0.7", "eval.samples": "3", "eval.seed": "5"})
    kw, note = eval_options(cfg, get_task("neglect"))
    assert kw == {"temperature": 0.7, "samples": 3, "seed": 5} and note == ""
    f = tmp_path / "t.py"
    f.write_text(TASK_FILE)
    kw, note = eval_options(cfg, get_task(f"{f}:make"))
    assert kw == {} and "evaluates greedily" in note and "temperature, samples" in note
    assert eval_options(build_config(), get_task(f"{f}:make")) == ({}, "")
    with pytest.raises(ConfigError, match="'eval.samples'.*temperature > 0"):
        build_config(string_overrides={"eval.samples": "2"})


def test_task_findings_reach_summary_md_even_without_evaluation(tmp_path):
    """A task's findings (e.g. a dead judge) are in summary.md whether or not the held-out eval ran."""
    from rvpo.tasks.base import Task
    from rvpo.train.config import TrainConfig
    from rvpo.train.run import TrainResult
    from rvpo.train.summary import write_summary

    class Warned(Task):
        name = "warned"

        def findings(self):
            return ["the judge cannot tell these completions apart: 9 of 10 groups"]

    (tmp_path / "metrics.jsonl").write_text("")
    res = TrainResult(run_dir=tmp_path, task=Warned(), timings={"train": 1.0})
    text = write_summary(tmp_path, TrainConfig(), res).read_text()
    assert "## Findings" in text and "cannot tell these completions apart: 9 of 10" in text
    res.task = Task()
    assert "## Findings" not in write_summary(tmp_path, TrainConfig(), res).read_text()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_builtin_task_declares_typed_options_with_help(name):
    import dataclasses

    from rvpo.tasks.base import describe_options, options_class

    cls = options_class(name)
    assert cls is not None and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    table = describe_options(name)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{name}: option {f.name} has no help text"
        assert f"`task_options.{f.name}`" in table
    if dataclasses.fields(cls):  # a misspelt option names the closest one
        first = dataclasses.fields(cls)[0].name
        with pytest.raises(ValueError, match=rf"unknown option '{first[:-1]}' \(did you mean '{first}'\?\)"):
            get_task(name, {first[:-1]: 1})
    else:
        assert "takes no options" in table
        with pytest.raises(ValueError, match="unknown option 'anything'; known options: \\(none\\)"):
            get_task(name, {"anything": 1})


def test_task_options_are_held_as_the_typed_object():
    from rvpo.tasks.neglect.task import NeglectOptions

    task = get_task("neglect", {"max_words": 24, "n_easy": 2})
    assert task.options == NeglectOptions(max_words=24, n_easy=2) and task.max_words == 24
    assert task.easy_channels == ("rich_8", "rich_10")
    with pytest.raises(ValueError, match="task_options for task 'rubric': scale: expected 'unit' or 'points'"):
        get_task("rubric", {"scale": "percent"})


def test_help_config_lists_the_tasks_options(capsys):
    from rvpo.cli import main

    assert main(["train", "--help-config", "--task", "neglect"]) == 0
    out = capsys.readouterr().out
    assert "| `advantage.k` |" in out and "| `task_options.max_words` | an int | `32` |" in out
    assert main(["train", "--help-config", "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_the_summary_lists_the_metrics_each_task_declares():
    from rvpo.tasks.base import metric_prefixes
    from rvpo.tasks.rubric.task import RubricTask
    from rvpo.train.summary import training_table

    assert metric_prefixes(get_task("neglect")) == ("neglect/",)  # the default: "<name>/"
    assert RubricTask.metric_prefixes == ("rubric/", "judge/") and RubricTask.progress_metrics == ("rubric/satisfied",)
    records = [{"step": s, "rewards/constraint/mean": 0.5, "neglect/words_mean": 30.0 + s, "other/x": 1.0}
               for s in (1, 2)]
    table = training_table(records, prefixes=("neglect/",))
    assert "`neglect/words_mean`: +31.000 / +31.500" in table and "other/x" not in table
    assert "neglect/words_mean" not in training_table(records)
