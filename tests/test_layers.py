"""The import graph of ``rvpo`` runs down the layers only: no module imports a room above its own.

Every ``import rvpo.X`` / ``from rvpo.X import`` in every module counts, at module level or inside a
function (a deferred import is still a dependency). Rooms are the packages and top-level modules
under ``rvpo/``; a room may import its own modules and any room on a lower layer. The table is the
architecture: change it deliberately, in review, not to make this test pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rvpo

LAYERS: list[set[str]] = [
    {"core", "stats", "runs", "rewards", "userfiles", "settings"},  # pure math, plain files, the settings layer
    {"model", "judge"},  # loading, generating with and judging with models
    {"evals"},  # benchmark scoring shared by tasks
    {"tasks"},  # each task: data, rewards, evaluation
    {"integrations", "screen", "sim"},  # TRL / verl adapters, the offline screen and simulator
    {"train"},  # rvpo train
    {"experiment"},  # methods x seeds over rvpo train
    {"cli", "__main__", "__init__"},  # the command line and the package face
]
ROOT = Path(rvpo.__file__).parent


def is_room(name: str) -> bool:
    return (ROOT / name / "__init__.py").is_file() or (ROOT / f"{name}.py").is_file()


def room(module: str) -> str:
    """The room of a dotted module ``rvpo.X...`` (``rvpo`` itself, or a name it exports: ``__init__``)."""
    parts = module.split(".")[1:]
    return parts[0] if parts and is_room(parts[0]) else "__init__"


def layer(name: str) -> int:
    for i, rooms in enumerate(LAYERS):
        if name in rooms:
            return i
    raise AssertionError(f"rvpo/{name}: a room no layer names; add it to LAYERS in {__file__}")


def imports() -> list[tuple[str, str, int]]:
    """``(file, imported rvpo module, line)`` for every rvpo import in the package."""
    out = []
    for f in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "rvpo" else [f"rvpo.{a.name}" for a in node.names]
            out += [(str(f.relative_to(ROOT)), n, node.lineno) for n in names if n == "rvpo" or n.startswith("rvpo.")]
    return out


def test_every_room_has_a_layer():
    rooms = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"}
    assert all(layer(r) >= 0 for r in rooms)  # layer() raises for a room no layer names
    named = set().union(*LAYERS)
    assert rooms == named, f"LAYERS names rooms that do not exist: {sorted(named - rooms)}"


def test_no_import_runs_up_the_layers():
    upward = []
    for file, target, line in imports():
        src = room("rvpo." + ".".join(Path(file).with_suffix("").parts))
        dst = room(target)
        if dst != "__init__" and src != dst and layer(dst) > layer(src):
            upward.append(f"rvpo/{file}:{line} ({src}, layer {layer(src)}) imports {target} ({dst}, layer {layer(dst)})")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_the_check_finds_an_upward_import(tmp_path, monkeypatch):
    """The scanner sees a deferred import inside a function (a test that cannot fail is a defect)."""
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    for name in ("core", "cli"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "core" / "x.py").write_text("def f():\n    from rvpo.cli import main\n")
    (tmp_path / "cli" / "y.py").write_text("from rvpo.core import x\nfrom rvpo import __version__\n")
    assert sorted(imports()) == [("cli/y.py", "rvpo.__version__", 2), ("cli/y.py", "rvpo.core", 1),
                                 ("core/x.py", "rvpo.cli", 2)]
    try:
        test_no_import_runs_up_the_layers()
    except AssertionError as e:
        assert "rvpo/core/x.py:2 (core, layer 0) imports rvpo.cli (cli, layer 7)" in str(e)
        assert "cli/y.py" not in str(e)  # downward imports and the package face are fine
    else:
        raise AssertionError("the upward import was not reported")
