"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file ddlib writes for later reading (checkpoints, data and latent caches, reference statistics,
report tables, figures, indexes) goes through :func:`atomic_open`: the content goes to a temporary file
in the target's folder (``.<name>.<random>.tmp``, unique per call, so concurrent writers never share one),
which is renamed over the target with :func:`os.replace` only when writing succeeded. A process killed
mid-write leaves the previous file intact and at most a hidden ``.tmp`` file behind; an exception removes
the temporary file. ``fsync=True`` also forces the bytes to disk before the rename (checkpoints: a power
loss right after the rename then cannot leave an empty file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False, **open_kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` when the ``with`` block ends without error.

    ``mode`` is ``"wb"`` or ``"w"`` (``open_kwargs`` such as ``encoding``/``newline`` go to :func:`os.fdopen`).
    Missing parent folders are made. The file gets mode 0644 (readable by others, like an ordinary file).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "w", fsync=fsync, encoding="utf-8") as f:
        f.write(text)
    return Path(path)
