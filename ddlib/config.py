"""Helpers for the frozen configuration dataclasses: named presets with overrides, unknown options refused."""

from __future__ import annotations

import dataclasses
from typing import Iterable, TypeVar

from ddlib.errors import DDLibError

C = TypeVar("C")


def check_options(cls: type, names: Iterable[str], what: str) -> None:
    """Raise a :class:`DDLibError` naming every name in ``names`` that is not a field of the dataclass ``cls``."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = set(names) - set(valid)
    if unknown:
        raise DDLibError(f"unknown {what} option(s) {', '.join(sorted(unknown))}; valid: {', '.join(valid)}")


def from_preset(presets: dict[str, C], name: str, what: str, **overrides) -> C:
    """``presets[name]`` with fields replaced by ``overrides``; ``what`` names the component in errors ("UNet")."""
    if name not in presets:
        raise DDLibError(f"unknown {what} preset {name!r}; choose one of {', '.join(presets)}")
    check_options(type(presets[name]), overrides, what)
    return dataclasses.replace(presets[name], **overrides)
