"""The command line: ``python -m ddlib COMMAND …`` (also installed as ``ddlib``).

Each module in :mod:`ddlib.cli` adds one sub-command through its ``register(subparsers)``.
Every user error ends as one ``error: …`` line on stderr with exit status 2: a
:class:`~ddlib.errors.DDLibError`, a bad option (argparse), and a file or folder that cannot be
written or read (``OSError``). SIGINT and SIGTERM end a command with ``interrupted`` and status
128 + the signal number (130, 143). docs/errors.md states the promise and its exceptions.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys

from ddlib.errors import DDLibError, raise_interrupted


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: …``, exit 2) instead of usage plus message."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m ddlib",
        description="Train, sample and evaluate diffusion models. `python -m ddlib COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"ddlib.cli.{info.name}").register(sub)
    return parser


def _oserror_line(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    return f"cannot access{where}: {err.strerror or err}; check that the path exists and is writable, or choose another"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, raise_interrupted)  # the same tidy exit as Ctrl-C (locks released, STATUS set)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return int(args.func(args) or 0)
    except DDLibError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {_oserror_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print("interrupted", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
