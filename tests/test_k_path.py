"""Which files the risk coefficient k crosses on its way from ``rvpo train --k`` to the soft-min.

The path (issue 23): the command line (``rvpo/cli/train.py``) -> the config layer (``rvpo/train/config.py``)
-> ``AdvantageSpec`` (``rvpo/core/spec.py``, parsed once by ``rvpo/core/schedules.py``) -> the run
(``rvpo/train/run.py``) -> the TRL adapter (``rvpo/integrations/trl.py``) -> the estimator
(``rvpo/core/estimators.py``). The command makes its advantage flags from the config's field names and
the run hands the whole spec to the trainer, so neither names k; the adapter hands the spec its step
(``AdvantageSpec.k_at``). That leaves five files that handle k: the three of the core, where k lives,
the config layer (the older flat name ``k_schedule``; a number or a mapping passes to the spec as it
is) and the TRL adapter (``RVPOConfig.rvpo_k_schedule``, TRL-style sugar for ``TrlParser``).

A file "handles k" when its code (docstrings and comments left out) reads an attribute ``.k``,
``.schedule`` or ``.k_at``, passes a keyword ``k=``, defines or names ``k_schedule`` / ``rvpo_k`` /
``rvpo_k_schedule`` / ``make_schedule`` / ``schedule_to_str``, or holds the string ``k``,
``advantage.k``, ``k_schedule``, ``rvpo_k_schedule``, ``rvpo_k``, ``--k`` or ``--k-schedule``. A bare
name ``k`` (a loop variable) does not count. Change the tables deliberately, in review: a new file
that starts handling k on the train path fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rvpo

ROOT = Path(rvpo.__file__).parent

SCOPE = ("cli/train.py", "settings.py", "train/*.py", "integrations/trl*.py")
"""The files rvpo train's settings pass through outside the core (the core is k's home)."""

ON_PATH = {
    "train/config.py": "the older flat name k_schedule; a number or a mapping goes to the spec unchanged",
    "integrations/trl.py": "RVPOConfig.rvpo_k_schedule, the TrlParser field of the spec's k",
}
"""Outside the core, the files on the path that handle k, and why."""

OUTPUT = {
    "train/summary.py": "writes the run's settings into summary.md",
    "train/callbacks.py": "shows the logged rvpo/k in the progress bar",
    "train/plots.py": "plots the logged rvpo/k",
}
"""Files after the soft-min: they show k, they do not carry it to the estimator."""

CORE_ON_PATH = ("core/spec.py", "core/schedules.py", "core/estimators.py")

_NAMES = {"k_schedule", "rvpo_k", "rvpo_k_schedule", "make_schedule", "schedule_to_str", "k_at"}
_ATTRS = {"k", "schedule", "k_at", "k_schedule", "rvpo_k", "rvpo_k_schedule"}
_STRINGS = re.compile(r"(--k(-schedule)?|(advantage\.)?k|k_schedule|rvpo_k|rvpo_k_schedule)")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (module, class, function, and a string right under an assignment)."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, stmt in enumerate(body):
            first = i == 0 and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            after_assign = i > 0 and isinstance(body[i - 1], (ast.Assign, ast.AnnAssign))
            if (first or after_assign) and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                out.add(id(stmt.value))
    return out


def k_mentions(path: Path) -> list[tuple[int, str]]:
    """``(line, what)`` for every place the code of ``path`` handles k (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Attribute) and node.attr in _ATTRS:
            what = f".{node.attr}"
        elif isinstance(node, ast.Name) and node.id in _NAMES:
            what = node.id
        elif isinstance(node, ast.keyword) and node.arg in _ATTRS:
            what = f"{node.arg}="
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in _NAMES:
            what = f"def {node.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                and _STRINGS.fullmatch(node.value):
            what = repr(node.value)
        if what:
            found.append((getattr(node, "lineno", 0), what))
    return sorted(set(found))


def handlers(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """``{file: mentions}`` for the files in :data:`SCOPE` that handle k."""
    files = sorted({p for pattern in SCOPE for p in root.glob(pattern)})
    out = {str(p.relative_to(root)): k_mentions(p) for p in files}
    return {f: m for f, m in out.items() if m}


def test_k_crosses_at_most_five_files_on_the_train_path():
    found = handlers()
    unexpected = {f: m for f, m in found.items() if f not in ON_PATH and f not in OUTPUT}
    assert not unexpected, ("files on rvpo train's path that started handling k (hand the whole AdvantageSpec "
                            f"on instead, or add the file to ON_PATH with its reason, in review): {unexpected}")
    assert set(ON_PATH) <= set(found), f"ON_PATH lists files that no longer handle k: {set(ON_PATH) - set(found)}"
    assert all(k_mentions(ROOT / f) for f in CORE_ON_PATH)
    assert len(ON_PATH) + len(CORE_ON_PATH) <= 5


def test_the_command_and_the_run_do_not_name_k():
    assert k_mentions(ROOT / "cli" / "train.py") == []
    assert k_mentions(ROOT / "train" / "run.py") == []


def test_the_scan_finds_each_way_of_handling_k(tmp_path):
    """The scanner sees every form (a test that cannot fail is a defect); docstrings and loop variables do not count."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "new.py").write_text(
        '"""k, advantage.k and --k in a docstring do not count."""\n'
        "def f(cfg, spec, d):\n"
        "    for k in d:\n"  # a loop variable
        "        pass\n"
        "    a = cfg.advantage.k\n"  # line 5
        "    b = spec.schedule(0, 1)\n"  # 6
        "    c = g(k=2)\n"  # 7
        "    e = d['advantage.k']\n"  # 8
        "    return ('--k', 'kl')\n")  # 9
    (tmp_path / "train" / "quiet.py").write_text("def f(d):\n    return {k: v for k, v in d.items()}\n")
    assert handlers(tmp_path) == {"train/new.py": [(5, ".k"), (6, ".schedule"), (7, "k="), (8, "'advantage.k'"),
                                                   (9, "'--k'")]}
