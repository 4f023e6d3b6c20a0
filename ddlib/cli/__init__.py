"""The command line: ``python -m ddlib COMMAND …`` (also installed as ``ddlib``).

Each module in :mod:`ddlib.cli` adds one sub-command through its ``register(subparsers)``.
A :class:`~ddlib.errors.DDLibError` is printed as one ``error: …`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ddlib.errors import DDLibError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ddlib",
        description="Train, sample and evaluate diffusion models. `python -m ddlib COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"ddlib.cli.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DDLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

