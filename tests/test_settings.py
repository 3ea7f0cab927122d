"""The one settings layer (rvpo.settings): did-you-mean, coercion, rules, help tables, borrowed fields,
and every settings class of the package refusing an unknown key through the shared helper."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

import rvpo
from rvpo.settings import (
    ConfigError,
    borrow,
    borrowed_values,
    check_rules,
    coerce,
    field_docs,
    format_help,
    integer,
    iter_fields,
    load_settings,
    number,
    optional,
    unknown_key_error,
)


@dataclass(frozen=True)
class Inner:
    """A section."""

    depth: int = 2
    """how deep"""


@dataclass(frozen=True)
class Demo:
    """Both doc conventions, a section and the plain types."""

    rate: float = 0.5
    """a rate | with a pipe"""
    mode: Literal["a", "b"] = "a"
    """the mode"""
    names: tuple[str, ...] = ("x",)
    """some names"""
    limit: int | None = field(default=None, metadata={"help": "a  limit   (help metadata)"})
    inner: Inner = field(default_factory=Inner)
    """a section"""


# ----------------------------------------------------------------------------- did you mean


def test_unknown_key_error_hints_the_closest_name_or_lists_the_known_ones():
    known = ["group_size", "steps", "seed"]
    assert str(unknown_key_error("field", "grup_size", known, where="run.yaml: ")) == (
        "run.yaml: unknown field 'grup_size' (did you mean 'group_size'?)")
    assert str(unknown_key_error("field", "zzz", known)) == "unknown field 'zzz'; known fields: group_size, steps, seed"
    assert str(unknown_key_error("option", "x", [])) == "unknown option 'x'; known options: (none)"
    # aliases are matched but not listed; a layer's own spelling is shown; the error class is the caller's
    assert "did you mean 'k_schedule'" in str(unknown_key_error("field", "k_shedule", ["steps"], also=["k_schedule"]))
    err = unknown_key_error("setting", "unbaised", ["unbiased"], spell={"unbiased": "algorithm.rvpo_unbiased"},
                            error=TypeError)
    assert isinstance(err, TypeError) and str(err) == "unknown setting 'unbaised' (did you mean 'algorithm.rvpo_unbiased'?)"
    from rvpo.core import AdvantageSpec

    with pytest.raises(ValueError, match=r"^unknown advantage setting 'algorithm\.kk' "
                       r"\(did you mean 'algorithm\.rvpo_k_schedule'\?\)$"):
        AdvantageSpec.from_dict({"kk": 1}, where="algorithm.", names={"k": "rvpo_k_schedule"})


def test_there_is_one_did_you_mean_in_the_package():
    """difflib's close matches are looked up in rvpo/settings.py only."""
    root = Path(rvpo.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "get_close_matches" in p.read_text())
    assert users == ["settings.py"]


# ----------------------------------------------------------------------------- coercion


@pytest.mark.parametrize("tp, value, from_string, out", [
    (int, "8", True, 8), (int, 3.0, False, 3), (float, "1e-4", False, 1e-4), (float, 2, False, 2.0),
    (bool, "off", True, False), (tuple[str, ...], "a, b,", True, ("a", "b")), (tuple[int, ...], [1, 2], False, (1, 2)),
    (int | None, "null", True, None), (dict, "{a: 1}", True, {"a": 1}), (Literal["x", "y"], "y", False, "y"),
    (Any, [1], False, [1]), (str | int, 5, False, 5),  # types outside the plain set pass unchanged
])
def test_coerce_converts_yaml_and_command_line_values(tp, value, from_string, out):
    assert coerce("f", tp, value, from_string) == out


@pytest.mark.parametrize("tp, value, from_string, message", [
    (int, "x", True, "config field 'lora.r': expected an int, got 'x'"),
    (int, True, False, "config field 'lora.r': expected an int, got True"),
    (int, 2.5, False, "config field 'lora.r': expected an int, got 2.5"),
    (int, "8", False, "config field 'lora.r': expected an int, got '8'"),  # a YAML string is not an int
    (bool, "maybe", True, "config field 'lora.r': expected true or false, got 'maybe'"),
    (Literal["a", "b"], "c", False, "config field 'lora.r': expected one of 'a', 'b', got 'c'"),
    (tuple[int, ...], [1, "z"], False, "config field 'lora.r': expected an int, got 'z'"),  # the item is named
    (float | None, "fast", True, "config field 'lora.r': expected a number or null, got 'fast'"),
    (dict, "[1", True, "config field 'lora.r': expected a mapping, got '[1'"),
])
def test_coerce_errors_name_the_field(tp, value, from_string, message):
    with pytest.raises(ConfigError) as e:
        coerce("lora.r", tp, value, from_string)
    assert str(e.value) == message
    with pytest.raises(ConfigError, match=r"^r: expected"):  # the caller's label
        coerce("r", tp, value, from_string, label=str)


def test_load_settings_coerces_refuses_unknown_keys_and_keeps_the_class_checks():
    d = load_settings(Demo, {"rate": "0.25", "names": ["p", "q"], "limit": 3.0})
    assert (d.rate, d.names, d.limit) == (0.25, ("p", "q"), 3) and type(d.limit) is int
    with pytest.raises(ConfigError, match=r"^demo: unknown option 'rat' \(did you mean 'rate'\?\)"):
        load_settings(Demo, {"rat": 1}, kind="option", where="demo: ")
    with pytest.raises(ConfigError, match=r"^Demo\.limit: expected an int or null, got 'x'"):
        load_settings(Demo, {"limit": "x"}, label=lambda n: f"Demo.{n}")


def test_rules_describe_and_check_ranges():
    assert [integer(1)[0], integer(0, 20)[0]] == ["an int >= 1", "an int in [0, 20]"]
    assert [number(0, above=True)[0], number(0)[0], number(0, 1, below=True)[0], optional(number(0, 2))[0]] == [
        "a finite number > 0", "a finite number >= 0", "a number in [0, 1)", "a number in [0, 2] or None"]
    assert not integer(1)[1](True) and not number(0)[1](float("inf")) and optional(integer(1))[1](None)
    check_rules(Demo(), {"rate": number(0, 1), "inner.depth": integer(1)})
    with pytest.raises(ConfigError, match=r"^config field 'inner\.depth': expected an int >= 3, got 2$"):
        check_rules(Demo(), {"inner.depth": integer(3)})
    with pytest.raises(ConfigError, match=r"^names: expected one name, got \['x'\]$"):  # tuples shown as lists
        check_rules(Demo(), {"names": ("one name", lambda v: False)}, label=str)


# ----------------------------------------------------------------------------- docs and help


def test_field_docs_read_both_conventions_and_help_is_one_table():
    assert field_docs(Demo) == {"rate": "a rate | with a pipe", "mode": "the mode", "names": "some names",
                                "limit": "a limit (help metadata)", "inner": "a section"}
    assert [n for n, *_ in iter_fields(Demo)] == ["rate", "mode", "names", "limit", "inner.depth"]
    assert format_help(Demo, "demo.").splitlines() == [
        "| field | type | default | meaning |",
        "| --- | --- | --- | --- |",
        "| `demo.rate` | a number | `0.5` | a rate \\| with a pipe |",
        "| `demo.mode` | one of 'a', 'b' | `a` | the mode |",
        "| `demo.names` | a list of a string | `['x']` | some names |",
        "| `demo.limit` | an int or null | `None` | a limit (help metadata) |",
        "| `demo.inner.depth` | an int | `2` | how deep |",
    ]
    assert format_help(dataclass(frozen=True)(type("Empty", (), {}))) == ""


def test_train_and_task_help_use_the_one_formatter():
    from rvpo.tasks.base import describe_options
    from rvpo.tasks.neglect.task import NeglectOptions
    from rvpo.train.config import TrainConfig, describe_fields

    assert describe_fields() == format_help(TrainConfig)
    assert describe_options("neglect") == format_help(NeglectOptions, "task_options.")


# ----------------------------------------------------------------------------- borrowed fields


def test_rubric_judge_options_are_judge_config_fields():
    """One definition: each borrowed rubric option has JudgeConfig's type, doc and default; only the
    timeout differs, and its doc says why."""
    from typing import get_type_hints

    from rvpo.judge import JudgeConfig
    from rvpo.tasks.rubric.task import RubricOptions

    judge_hints, hints = get_type_hints(JudgeConfig), get_type_hints(RubricOptions)
    judge_defaults = {f.name: f.default for f in dataclasses.fields(JudgeConfig)}
    borrowed = {f.name: f.metadata["borrowed"][1] for f in dataclasses.fields(RubricOptions)
                if "borrowed" in f.metadata}
    assert borrowed == {"judge_concurrency": "concurrency", "judge_timeout_s": "timeout_s",
                        "judge_max_tokens": "max_tokens", "judge_max_retries": "max_retries",
                        "judge_max_reasks": "max_reasks", "judge_rpm": "requests_per_minute",
                        "judge_tpm": "tokens_per_minute", "judge_threshold": "threshold"}
    docs = field_docs(RubricOptions)
    for name, source in borrowed.items():
        assert hints[name] == judge_hints[source], name
        assert docs[name].startswith(field_docs(JudgeConfig)[source]), name
    changed = {n for n, s in borrowed.items() if getattr(RubricOptions(), n) != judge_defaults[s]}
    assert changed == {"judge_timeout_s"} and RubricOptions().judge_timeout_s == 120.0
    assert "(JudgeConfig's: 60.0): the embedded judge is slow on a CPU" in docs["judge_timeout_s"]
    values = borrowed_values(RubricOptions(judge_rpm=30.0), JudgeConfig)
    assert values["requests_per_minute"] == 30.0 and values["timeout_s"] == 120.0 and "base_url" not in values


def test_borrow_needs_a_reason_for_another_default():
    from rvpo.judge import JudgeConfig

    with pytest.raises(TypeError, match="needs its reason"):
        borrow(JudgeConfig, "timeout_s", 5.0)


# ----------------------------------------------------------------------------- every settings class


def _train(values: dict) -> Any:
    from rvpo.train.config import build_config

    return build_config(overrides=values)


def _experiment(change: dict) -> Any:
    from rvpo.experiment.spec import parse_spec

    return parse_spec({"train": {"steps": 1}, "methods": ["gdpo"], "seeds": 0, **change})


def _options(cls_path: str, values: dict) -> Any:
    import importlib

    from rvpo.tasks.base import build_options

    module, _, name = cls_path.rpartition(".")
    return build_options(getattr(importlib.import_module(module), name), values)


def _advantage(values: dict) -> Any:
    from rvpo.core import AdvantageSpec

    return AdvantageSpec.from_dict(values)


def _judge(values: dict) -> Any:
    from rvpo.judge import JudgeConfig

    return JudgeConfig.from_env(**values)


def _sim(values: dict) -> Any:
    from rvpo.sim import SimConfig

    return load_settings(SimConfig, values)


SETTINGS = [  # (settings class, how it is built from a mapping, the mapping, its misspelt key, the hint)
    ("TrainConfig", _train, {"grup_size": 3}, "grup_size", "group_size"),
    ("LoraConfig", _train, {"lora.rank": 8}, "lora.rank", "lora.r"),
    ("EvalConfig", _train, {"eval.sample": 2}, "eval.sample", "eval.samples"),
    ("WarmStartConfig", _train, {"warmstart.step": 2}, "warmstart.step", "warmstart.steps"),
    ("AdvantageSpec", _advantage, {"estimatr": "gdpo"}, "estimatr", "estimator"),
    ("AdvantageSpec in TrainConfig", _train, {"advantage.kk": 1}, "advantage.kk", "advantage.k"),
    ("ToolCallOptions", lambda v: _options("rvpo.tasks.toolcall.task.ToolCallOptions", v), {"x": 1}, "x", None),
    ("ConstraintsOptions", lambda v: _options("rvpo.tasks.constraints.task.ConstraintsOptions", v),
     {"n_trian": 5}, "n_trian", "n_train"),
    ("NeglectOptions", lambda v: _options("rvpo.tasks.neglect.task.NeglectOptions", v), {"max_word": 5}, "max_word",
     "max_words"),
    ("RubricOptions", lambda v: _options("rvpo.tasks.rubric.task.RubricOptions", v),
     {"judge_timeout": 5}, "judge_timeout", "judge_timeout_s"),
    ("ExperimentSpec", _experiment, {"sedes": [0]}, "sedes", "seeds"),
    ("HoldSettings", _experiment, {"hold": {"metric": "exact_match_rate", "at_lest": 1}}, "at_lest", "at_least"),
    ("ScreenSettings", _experiment, {"screen": {"group_sise": 8}}, "group_sise", "group_size"),
    ("JudgeConfig", _judge, {"modle": "m"}, "modle", "model"),
    ("SimConfig", _sim, {"m_eazy": 2}, "m_eazy", "m_easy"),
]


@pytest.mark.parametrize("name, build, values, key, near", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_every_settings_class_refuses_an_unknown_key_with_the_shared_hint(monkeypatch, name, build, values, key,
                                                                          near):
    calls = []
    real = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches", lambda *a, **k: calls.append(a) or real(*a, **k))
    with pytest.raises((ValueError, TypeError)) as e:
        build(values)
    hint = f" (did you mean {near!r}?)" if near else "; known options: (none)"
    assert f"{key!r}{hint}" in str(e.value), str(e.value)
    assert calls, "the hint did not come from rvpo.settings.unknown_key_error"
