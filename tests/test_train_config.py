"""rvpo.train.config: defaults, YAML + overrides, errors that name the field, the TRL mapping."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from rvpo.core import AdvantageSpec
from rvpo.train.config import (
    ConfigError,
    TrainConfig,
    build_config,
    describe_fields,
    field_names,
    from_dict,
    iter_fields,
    parse_set,
    to_dict,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_sized_for_cpu():
    cfg = build_config()
    assert cfg == replace(TrainConfig(), temperature=0.7)  # the default task's train_defaults (test_task_train_defaults)
    assert cfg.advantage == AdvantageSpec() and cfg.advantage.k == "linear:0.5:2.0"
    assert cfg.lora.enabled and cfg.batch_size == cfg.prompts_per_step * cfg.group_size == 12  # 3 x G=4: 3x the old RL work


def test_every_field_has_a_docstring_and_appears_in_the_reference():
    table = describe_fields()
    for name, _tp, _default, doc in iter_fields():
        assert doc, f"field {name} has no docstring"
        assert f"`{name}`" in table
    assert {"lora.r", "eval.examples", "group_size", "advantage.k", "advantage.eps"} <= set(field_names())
    assert "k_schedule" not in field_names()  # an alias, resolved to advantage.k


def test_yaml_then_overrides_then_set(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("steps: 7\ngroup_size: 6\nlora:\n  r: 4\nk_schedule: {type: linear, start: 0.0, end: 3}\n"
                 "learning_rate: 1e-5\n")
    cfg = build_config(y, overrides={"steps": 9}, string_overrides={"lora.alpha": "8", "reward_weights": "1,0.5"})
    assert cfg.steps == 9  # override beats YAML
    assert cfg.group_size == 6 and cfg.lora.r == 4 and cfg.lora.alpha == 8
    from rvpo.core import Linear, make_schedule

    assert make_schedule(cfg.advantage.k) == Linear(0.0, 3.0)  # a mapping is stored as the short string form
    assert cfg.learning_rate == 1e-5  # YAML reads 1e-5 as a string; coerced
    assert cfg.advantage.weights == (1.0, 0.5)


def test_constant_k_as_a_bare_number(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("k_schedule: 1.5\n")
    assert build_config(y).advantage.k == "constant:1.5"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_size": "x"}, "config field 'group_size': expected an int >= 2, got 'x'"),
        ({"group_size": "1"}, "config field 'group_size': expected an int >= 2, got 1"),
        ({"steps": "0"}, "config field 'steps': expected an int >= 1, got 0"),
        ({"lora.dropout": "1.5"}, "config field 'lora.dropout': expected a number in [0, 1), got 1.5"),
        ({"lora.enabled": "maybe"}, "config field 'lora.enabled': expected true or false, got 'maybe'"),
        ({"scale": "std"}, "config field 'advantage.scale': expected 'group', 'batch' or 'none', got 'std'"),
        ({"learning_rate": "-1"}, "config field 'learning_rate': expected a finite number > 0, got -1.0"),
        ({"reward_weights": "1,nan"}, "config field 'advantage.weights': expected finite numbers"),
        ({"eps": "-1"}, "config field 'advantage.eps': must be >= 0, got -1.0"),
        ({"advantage.beta": "x"}, "config field 'advantage.beta': expected a number, got 'x'"),
        ({"advantage.kk": "1"}, "unknown field 'advantage.kk' (did you mean 'advantage.k'?)"),
        ({"estimatr": "gdpo"}, "unknown field 'estimatr' (did you mean 'estimator'?)"),
        ({"estimator": "nope"}, "config field 'advantage.estimator': unknown name 'nope'"),
        ({"k_schedule": "linear:1"}, "config field 'advantage.k': cannot parse 'linear:1'"),
        ({"k": "linear:1"}, "config field 'advantage.k': cannot parse 'linear:1'"),
        ({"lora": "8"}, "config field 'lora': is a section"),
        ({"lora.rank": "8"}, "unknown field 'lora.rank' (did you mean 'lora.r'?)"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as e:
        build_config(string_overrides=overrides)
    assert message in str(e.value)


def test_yaml_unknown_key_names_file_and_suggests(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("grup_size: 4\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown field 'grup_size' \(did you mean 'group_size'\?\)"):
        build_config(y)
    y.write_text("steps: ten\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: config field 'steps': expected an int >= 1, got 'ten'"):
        build_config(y)
    y.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        build_config(y)
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "missing.yaml")


def test_typed_yaml_values_are_not_parsed_from_strings(tmp_path):
    # in YAML, lora.enabled: "yes" (a quoted string) is not a bool; only the command line parses strings
    y = tmp_path / "run.yaml"
    y.write_text('lora:\n  enabled: "yes"\n')
    with pytest.raises(ConfigError, match="'lora.enabled': expected true or false"):
        build_config(y)


def test_parse_set():
    assert parse_set(["a=1", "lora.r = 8"]) == {"a": "1", "lora.r": "8"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["steps"])


def test_round_trip_through_dict():
    cfg = build_config(string_overrides={"lora.target_modules": "q_proj,v_proj", "k_schedule": "cosine:1:2"})
    assert from_dict(to_dict(cfg)) == cfg
    assert to_dict(cfg)["lora"]["target_modules"] == ["q_proj", "v_proj"]


def test_example_configs_load():
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert files, "configs/ has no example YAML"
    from rvpo.tasks.base import get_task

    for f in files:
        cfg = build_config(f)
        get_task(cfg.task, cfg.task_options)  # the task accepts every task option the file sets


def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys):
    from rvpo.cli import main

    y = tmp_path / "run.yaml"
    y.write_text("grup_size: 4\n")
    assert main(["train", "--config", str(y)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown field 'grup_size' (did you mean 'group_size'?)" in err
    assert main(["train", "--group-size", "x"]) == 2
    assert "config field 'group_size': expected an int >= 2, got 'x'" in capsys.readouterr().err
    assert main(["train", "--help-config"]) == 0
    assert "`lora.r`" in capsys.readouterr().out


def test_trainer_args_mapping(tmp_path):
    from rvpo.core import Constant, make_schedule
    from rvpo.model.precision import Precision
    from rvpo.train.run import trainer_args

    cfg = build_config(string_overrides={"group_size": "3", "prompts_per_step": "2", "estimator": "gdpo",
                                         "k_schedule": "2", "kl_beta": "0.01", "reward_weights": "1,2",
                                         "report_to": "none", "steps": "5", "save_steps": "2"})
    a = trainer_args(cfg, tmp_path, Precision("fp32", "asked for"))
    assert a.num_generations == 3 and a.per_device_train_batch_size == 6
    assert a.rvpo_estimator == "gdpo" and make_schedule(a.rvpo_k_schedule) == Constant(2.0)
    assert a.advantage == cfg.advantage  # the TRL config carries the run's spec, field for field
    assert a.beta == 0.01 and a.reward_weights == [1.0, 2.0] and a.rvpo_drop_zero_spread is False
    assert a.max_steps == 5 and a.save_steps == 2 and a.logging_steps == 1
    import torch

    assert a.use_cpu is (not torch.cuda.is_available()) and a.bf16 is False  # the CPU only without a GPU; fp32 asked for
    assert trainer_args(cfg, tmp_path, Precision("bf16", "asked for")).bf16 is True
    assert a.report_to == [] or a.report_to == "none" or a.report_to == ["none"]


def test_docs_field_table_is_current():
    text = (REPO / "docs" / "train.md").read_text()
    start = text.index("<!-- fields:start")
    body = text[text.index("\n", start) + 1 : text.index("<!-- fields:end -->")]
    assert body.strip() == describe_fields().strip(), "regenerate the table in docs/train.md from describe_fields()"


def test_reward_weights_must_match_the_tasks_channels():
    from rvpo.train.run import load_task, reward_funcs

    cfg = build_config(string_overrides={"reward_weights": "1,2,3"})
    with pytest.raises(ConfigError, match=r"advantage.weights': expected 2 numbers .*format, correctness.*got 3"):
        reward_funcs(cfg, load_task(cfg))
    ok = build_config(string_overrides={"reward_weights": "1,0.5"})
    assert [fn.__name__ for fn in reward_funcs(ok, load_task(ok))] == ["format", "correctness"]


def test_task_and_task_options_fields():
    cfg = build_config(string_overrides={"task": "constraints", "task_options.instructions": "3"})
    assert cfg.task == "constraints" and cfg.task_options == {"instructions": 3}
    with pytest.raises(ConfigError, match="config field 'task'"):
        from rvpo.train.run import load_task

        load_task(build_config(string_overrides={"task": "nope"}))


def test_advantage_section_and_the_older_flat_names_give_one_spec(tmp_path):
    nested, flat = tmp_path / "nested.yaml", tmp_path / "flat.yaml"
    nested.write_text("advantage:\n  estimator: rvpo_explicit\n  k: 2\n  beta: 0.3\n  weights: [1, 2]\n")
    flat.write_text("estimator: rvpo_explicit\nk_schedule: 2\nbeta: 0.3\nreward_weights: [1, 2]\n")  # a run dir of before
    want = AdvantageSpec(estimator="rvpo_explicit", k="2", beta=0.3, weights=(1.0, 2.0))
    assert build_config(nested).advantage == build_config(flat).advantage == want
    assert to_dict(build_config(nested))["advantage"]["k"] == "constant:2.0"  # saved under the section
    # advantage overrides are applied together: grpo accepts negative weights, whichever comes first
    cfg = build_config(string_overrides={"weights": "-1,1", "estimator": "grpo"})
    assert cfg.advantage.weights == (-1.0, 1.0) and cfg.advantage.estimator == "grpo"


def test_cli_flag_help_is_the_field_docstring():
    import argparse

    from rvpo.cli import train as cli_train

    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers())
    docs = {name: doc for name, _tp, _d, doc in iter_fields()}
    sub = parser._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help for a in sub._actions}
    for _flags, name in cli_train.flags():
        if name in docs:
            assert helps[name].startswith(docs[name]), name
    args = parser.parse_args(["train", "--k", "3", "--estimator", "gdpo", "--no-lora", "--set", "seed=4"])
    assert cli_train.overrides_from_args(args) == {"advantage.k": "3", "advantage.estimator": "gdpo",
                                                   "lora.enabled": "false", "seed": "4"}
    # every advantage field is a flag by its bare name (and by its older flat name), made from the config's names
    adv = {name: flags for flags, name in cli_train.advantage_flags()}
    assert set(adv) == {f"advantage.{f.name}" for f in fields(AdvantageSpec)}
    assert adv["advantage.k"] == ("--k", "--k-schedule") and adv["advantage.weights"] == ("--weights", "--reward-weights")
    args = parser.parse_args(["train", "--k-schedule", "linear:0:1", "--eps", "1e-6", "--noise-floor", "0.1"])
    assert cli_train.overrides_from_args(args) == {"advantage.k": "linear:0:1", "advantage.eps": "1e-6",
                                                   "advantage.noise_floor": "0.1"}
    cfg = build_config(string_overrides=cli_train.overrides_from_args(args))
    assert (cfg.advantage.k, cfg.advantage.eps, cfg.advantage.noise_floor) == ("linear:0.0:1.0", 1e-6, (0.1,))
