"""The one exception type users see, and the checks that raise it where values and files enter.

A :class:`DDLibError` carries a single line that names the problem and says what to do about it.
The command line prints it as ``error: …`` without a traceback and exits with status 2; library
callers can catch it (it is a ``ValueError``) or let it propagate. docs/errors.md lists the promise.
"""

from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from pathlib import Path


class DDLibError(ValueError):
    """Bad input or state that the user can fix; the message says how."""


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM, SIGINT) asked the process to stop; raised like Ctrl-C so that ``finally`` blocks
    release locks and write ``STATUS``. The command line exits with 128 + ``signum``."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum, frame):
    """A signal handler: turn the signal into :class:`Interrupted`."""
    raise Interrupted(signum)


@contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM until the block ends, then deliver the first to the handler that was in place.

    For writes a signal must not interrupt from the inside: raised within ``torch.save``, an interrupt leaves
    the zip writer in an error state whose RuntimeError replaces it (seen as a traceback and exit status 1
    instead of "interrupted"). Outside the main thread, where handlers cannot be set, the block runs as it is.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, integer: bool = False):
    """``value`` if it is a finite number within the bounds, else a :class:`DDLibError` naming ``name``.

    ``minimum``/``maximum`` are inclusive bounds, ``above`` an exclusive lower bound. NaN and ±inf are
    always refused: a NaN compares false with everything, so an unchecked one slips past ``x < 0`` tests.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise DDLibError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise DDLibError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise DDLibError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise DDLibError(f"{name} must be <= {maximum}, got {value}")
    if above is not None and not value > above:
        raise DDLibError(f"{name} must be > {above}, got {value}")
    return value


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(what: str, name: str) -> str:
    """A name that becomes one path component (a profile, a run): letters, digits, ``._-``; no separators,
    no ``..``, not absolute, not hidden. Refusing these keeps every ``rmtree`` inside its own folder."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise DDLibError(f"{what} {name!r} cannot name a folder: use letters, digits, '.', '_' and '-' only "
                         "(no '/', '..' or absolute paths)")
    return name


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie or another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(folder: str | os.PathLike, pattern: str = "*.tmp*") -> list[Path]:
    """Delete temporary files in ``folder`` left by processes that died (killed mid-write).

    Files whose name carries a ``.pid<N>.`` tag are removed when process N is gone; others only when
    ``folder`` is held by the caller (see :func:`ddlib.checkpoint.run_lock`), which is what callers ensure.
    """
    removed = []
    for p in Path(folder).glob(pattern):
        m = re.search(r"\.pid(\d+)\.", p.name)
        if m and pid_alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def tmp_name(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A temporary sibling of ``path`` unique to this process (``name.pid<N>.<random>.tmp``)."""
    path = Path(path)
    return path.with_name(f"{path.name}.pid{os.getpid()}.{os.urandom(4).hex()}{suffix}")


@contextmanager
def open_npz(path: str | os.PathLike, remedy: str):
    """``np.load(path, allow_pickle=False)`` whose failures are one :class:`DDLibError` naming the file and ``remedy``.

    A file that is not a zip, is truncated, or holds Python objects (which a safe load refuses) all mean
    the same to the user: this file cannot be used; the remedy says how to make a good one.
    """
    import zipfile

    import numpy as np

    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DDLibError(f"no file {path}; {remedy}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DDLibError(f"{path} is damaged or not an .npz of numeric arrays ({_reason(err)}); {remedy}") from None
    with z:
        try:
            yield z
        except DDLibError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            raise DDLibError(f"{path} is damaged or not an .npz of numeric arrays ({_reason(err)}); {remedy}") from None


def _reason(err: BaseException) -> str:
    """A short reason without library hints about loading untrusted files unsafely."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "allow_pickle" in text or "pickle" in text.lower() or "weights only" in text.lower() or "trust" in text.lower():
        return "it holds Python objects, which ddlib never unpickles"
    return text[:120]
