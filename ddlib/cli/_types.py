"""argparse ``type=`` converters that refuse NaN, ±inf and out-of-range numbers where the option enters.

A refusal is an ``argparse.ArgumentTypeError``; the parser prints it as one ``error: argument --x: …``
line and exits 2 (:class:`ddlib.cli.OneLineParser`).
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, integer: bool):
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, got {text!r}") from None
    if not integer and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded(*, integer: bool = False, minimum: float | None = None, maximum: float | None = None,
            above: float | None = None):
    """A converter for numbers with inclusive ``minimum``/``maximum`` and exclusive ``above``."""

    def convert(text: str):
        value = _number(text, integer)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above}, got {text}")
        return value

    convert.__name__ = "integer" if integer else "number"  # argparse names the type in its messages
    return convert


positive_int = bounded(integer=True, minimum=1)
nonneg_int = bounded(integer=True, minimum=0)
any_int = bounded(integer=True)
finite = bounded()
positive = bounded(above=0)
nonneg = bounded(minimum=0)
probability = bounded(minimum=0, maximum=1)
