"""``rvpo eval <benchmark>``: each benchmark lives in ``rvpo.cli.eval_<name>`` with ``register(sub)``;
``rvpo eval task NAME`` evaluates any task through its own ``Task.evaluate``."""

from __future__ import annotations

import importlib

BENCHMARKS = ("toolcall", "constraints", "healthbench", "gpqa", "task")


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a policy: tool calling, IFEval-style constraints, HealthBench rubrics, GPQA, or any task")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", parser_class=type(p))
    for name in BENCHMARKS:
        try:
            mod = importlib.import_module(f"rvpo.cli.eval_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"rvpo.cli.eval_{name}":
                continue
            raise
        mod.register(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
