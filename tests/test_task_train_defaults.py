"""A task's ``train_defaults``: dataclass defaults < task < YAML < command line, checked keys, file
tasks, the default run and the neglect experiments unchanged, ``--help-config`` and ``--resume``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvpo.tasks.base import get_task, train_defaults
from rvpo.train.config import ConfigError, TrainConfig, build_config, from_dict, save_config, task_base, to_dict

REPO = Path(__file__).resolve().parents[1]

DEFAULT_RUN = {
    "model": "smollm2-135m-instruct", "task": "toolcall", "task_options": {}, "data": "", "train_examples": 0,
    "advantage": {"estimator": "rvpo", "k": "linear:0.5:2.0", "beta": 0.5, "eps": 0.0001, "weights": None,
                  "unbiased": True, "scale": "group", "whiten": True, "drop_zero_spread": False,
                  "noise_floor": None},
    "steps": 8, "group_size": 4, "prompts_per_step": 3, "max_completion_length": 64, "temperature": 0.7,
    "learning_rate": 0.0001, "kl_beta": 0.0, "gradient_checkpointing": False, "loss_type": "dapo", "seed": 0,
    "lora": {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.0,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "warmstart": {"enabled": True, "steps": 24, "batch_size": 4, "learning_rate": 0.0003, "eval": True,
                  "from_dir": ""},
    "eval": {"enabled": True, "data": "", "examples": 32, "max_new_tokens": 64, "batch_size": 32,  # was 16: speed only
             "temperature": 0.0, "samples": 1, "seed": 0},
    "out": "runs", "save_steps": 10, "save_total_limit": 2, "report_to": "none", "device": "auto",
    "precision": "auto",
}
"""The resolved config of ``rvpo train`` with no arguments before tasks declared training defaults."""

TASK_FILE = '''
from rvpo.tasks.base import Task

class FileTask(Task):
    name = "file"
    train_defaults = {TRAIN_DEFAULTS}
    def load(self, spec, split, seed=0):
        return [{"prompt": [{"role": "user", "content": "hi"}], "id": "0"}]
    def reward_funcs(self):
        def one(prompts, completions, **kw):
            return [1.0] * len(completions)
        return [one]
    def evaluate(self, model, tokenizer, rows, *, max_new_tokens, batch_size):
        return {"n": 0, "metrics": {}, "ci95": {}, "records": []}

def make(**kw):
    return FileTask(**kw)

make.train_defaults = FileTask.train_defaults

def make_without(**kw):
    return FileTask(**kw)
'''


def _file_task(tmp_path: Path, defaults: str) -> Path:
    f = tmp_path / "my_task.py"
    f.write_text(TASK_FILE.replace("{TRAIN_DEFAULTS}", defaults))
    return f


def test_the_default_run_resolves_to_the_same_config_field_by_field():
    cfg = to_dict(build_config())
    assert sorted(cfg) == sorted(DEFAULT_RUN)
    for name, want in DEFAULT_RUN.items():
        assert cfg[name] == want, name
    assert TrainConfig().temperature == 1.0 and build_config().temperature == 0.7  # toolcall's, not the dataclass's


def test_precedence_dataclass_task_yaml_cli(tmp_path):
    assert train_defaults("neglect") == {"prompts_per_step": 4, "group_size": 8, "max_completion_length": 48,
                                         "temperature": 0.7}
    cfg = build_config(string_overrides={"task": "neglect"})
    assert (cfg.prompts_per_step, cfg.group_size, cfg.max_completion_length, cfg.temperature) == (4, 8, 48, 0.7)
    assert cfg.steps == TrainConfig().steps and cfg.eval == TrainConfig().eval  # the rest: the dataclass's
    y = tmp_path / "run.yaml"
    y.write_text("task: neglect\ngroup_size: 6\nmax_completion_length: 40\n")
    cfg = build_config(y, string_overrides={"max_completion_length": "32"})
    assert (cfg.prompts_per_step, cfg.group_size, cfg.max_completion_length) == (4, 6, 32)  # task < YAML < CLI
    # the task is resolved from the YAML or the command line, whichever wins
    assert build_config(y, string_overrides={"task": "constraints"}).group_size == 6  # YAML still wins
    assert build_config(string_overrides={"task": "constraints"}).temperature == 1.0  # declares none
    # a base (a resolved config: --resume, an experiment's method) gets no task defaults again
    base = build_config(string_overrides={"task": "neglect", "group_size": "4"})
    assert build_config(base=base, overrides={"steps": 2}).group_size == 4


def test_a_task_declaring_an_unknown_or_bad_key_fails_naming_the_task(tmp_path):
    f = _file_task(tmp_path, "{'grup_size': 8}")
    with pytest.raises(ConfigError, match=r"task '.*my_task.py:make': train_defaults: unknown field 'grup_size' "
                                          r"\(did you mean 'group_size'\?\)"):
        build_config(string_overrides={"task": f"{f}:make"})
    f = _file_task(tmp_path, "{'group_size': 1}")
    with pytest.raises(ConfigError, match=r"train_defaults: config field 'group_size': expected an int >= 2, got 1"):
        task_base(f"{f}:make")
    f = _file_task(tmp_path, "{'task_options.n': 2}")
    with pytest.raises(ConfigError, match=r"train_defaults: 'task_options.n' cannot be a training default"):
        task_base(f"{f}:make")
    f = _file_task(tmp_path, "[('steps', 2)]")
    with pytest.raises(ConfigError, match=r"train_defaults: expected a mapping"):
        task_base(f"{f}:make")
    with pytest.raises(ConfigError, match=r"config field 'task': unknown task 'nope'"):
        build_config(string_overrides={"task": "nope"})


def test_a_file_task_declares_train_defaults(tmp_path):
    f = _file_task(tmp_path, "{'steps': 3, 'k': 2, 'lora.r': 4}")
    for factory in ("FileTask", "make"):  # the class as its own factory, or a function carrying them
        cfg = build_config(string_overrides={"task": f"{f}:{factory}", "lora.r": "2"})
        assert cfg.steps == 3 and cfg.advantage.k == "constant:2.0" and cfg.lora.r == 2  # aliases resolve; CLI wins
    # a function factory that does not carry its class's train_defaults would leave them unused: refused
    assert build_config(string_overrides={"task": f"{f}:make_without"}).steps == TrainConfig().steps
    with pytest.raises(ValueError, match=r"whose train_defaults its factory does not carry.*make_without"):
        get_task(f"{f}:make_without")
    assert get_task(f"{f}:make").train_defaults == {"steps": 3, "k": 2, "lora.r": 4}


def test_help_config_lists_the_tasks_training_defaults(capsys):
    from rvpo.cli import main

    assert main(["train", "--help-config", "--task", "neglect"]) == 0
    out = capsys.readouterr().out
    head = out.index("Training defaults of task 'neglect'")
    assert "| field | default | task 'neglect' |" in out[head:]
    for row in ("| `group_size` | `4` | `8` |", "| `prompts_per_step` | `3` | `4` |",
                "| `max_completion_length` | `64` | `48` |", "| `temperature` | `1.0` | `0.7` |"):
        assert row in out[head:]
    assert main(["train", "--help-config"]) == 0  # the default task
    assert "| `temperature` | `1.0` | `0.7` |" in capsys.readouterr().out
    assert main(["train", "--help-config", "--task", "constraints"]) == 0
    assert "Task 'constraints' declares no training defaults" in capsys.readouterr().out


def test_neglect_experiments_resolve_as_before():
    """The presets pin every field the neglect task now declares: each run's config is what the dataclass
    defaults of before, the YAML and the method made (no task layer)."""
    import yaml

    from rvpo.experiment.spec import load_spec
    from rvpo.train.config import flatten_config

    before = from_dict(DEFAULT_RUN)
    assert to_dict(before) == DEFAULT_RUN
    files = sorted((REPO / "configs" / "experiments").glob("neglect_*.yaml"))
    assert len(files) >= 3
    for path in files:
        spec = load_spec(path)
        train = flatten_config(yaml.safe_load(path.read_text())["train"], "")
        base = build_config(overrides=train, base=before)
        assert spec.base == base, path.name
        for m in spec.methods:
            old = build_config(base=base, overrides=m.overrides)
            for seed in spec.seeds[:2]:
                want = build_config(base=old, overrides={"seed": seed, "out": str(spec.root / "runs")})
                assert spec.config(m, seed) == want, (path.name, m.label, seed)


def test_resume_reads_the_resolved_config_back(tmp_path):
    from rvpo.train.run import load_resume_config

    cfg = build_config(string_overrides={"task": "neglect", "group_size": "4"})  # the user's value over the task's
    save_config(tmp_path / "config.yaml", cfg)
    assert load_resume_config(tmp_path) == cfg
    # a config.yaml without a field the task declares: the task's value, as when the run was built
    (tmp_path / "config.yaml").write_text("task: neglect\nsteps: 2\n")
    assert load_resume_config(tmp_path) == build_config(string_overrides={"task": "neglect", "steps": "2"})
