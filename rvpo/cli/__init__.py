"""The ``rvpo`` command line: ``rvpo sim | train | experiment | screen | eval | judge``.

Each subcommand lives in its own module ``rvpo.cli.<name>`` exposing ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors in user input (a bad option, value,
config field or file) print one line, ``rvpo <cmd>: error: ...``, and exit with status 2: raise
:class:`UserError`; a :class:`rvpo.runs.RunDirError` (``--out`` is a file, not writable) is treated
the same way.

Imports: every subcommand's parser is built at start-up, so a subcommand module imports at its top
only what its parser needs; its handler (``func``) imports the rest, the libraries that take seconds to
load (transformers, trl, peft, datasets, matplotlib, scipy, httpx) and the rvpo modules that pull them
in. This is the one package where imports inside functions are the rule, for start-up time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rvpo.runs import RunDirError

COMMANDS = ("sim", "train", "experiment", "screen", "eval", "judge")


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and defaults shown in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    parser = Parser(prog="rvpo", description="Risk-sensitive multi-reward RL fine-tuning (RVPO).")
    from rvpo import __version__

    parser.add_argument("--version", action="version", version=f"rvpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"rvpo.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch loads (building the parser loads it). OpenMP threads that spin while waiting make torch
    # 10-20x slower on a CPU shared with other work (measured on 2 cores: an 8-token generation took 21-41 s
    # instead of 2 s); passive waiting costs nothing measurable otherwise. A value the user set wins. Set
    # here, in the command's process, not at `import rvpo`: a library import changes no environment.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, RunDirError) as e:  # RunDirError: --out names a file, or a folder we may not write
        sys.stderr.write(f"rvpo {args.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"rvpo {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
