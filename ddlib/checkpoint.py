"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that needs
pickle's arbitrary code execution to load). ``save_checkpoint`` writes to a temporary file in the
same folder, flushes it to disk and renames it over the target (:func:`ddlib.files.atomic_open`), so a run killed mid-write leaves
the previous checkpoint intact. Each checkpoint records the hash of the configuration that made it;
:func:`check_config` refuses to resume or load under a different one.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ddlib.errors import DDLibError, _reason, pid_alive, remove_stale_tmp, signals_held
from ddlib.files import atomic_open

FORMAT = "ddlib-checkpoint-v1"

CHECKPOINT = "checkpoint.pt"


def run_checkpoint(run: str | Path) -> Path:
    """The checkpoint of a run folder (``run/checkpoint.pt``, whether or not the folder exists yet), or
    ``run`` itself when it names a ``.pt`` file."""
    path = Path(run)
    return path if path.suffix == ".pt" and not path.is_dir() else path / CHECKPOINT


def config_hash(config: dict) -> str:
    """A short, stable hash of a JSON-able config (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` atomically; returns the path. A SIGINT or SIGTERM
    that arrives meanwhile is delivered once the checkpoint is whole."""
    path = Path(path)
    try:
        with signals_held(), atomic_open(path, "wb", fsync=True) as f:
            torch.save({"format": FORMAT, **state}, f)
    except OSError as err:  # unwritable folder, disk full, folder made read-only mid-run
        raise DDLibError(f"cannot write checkpoint {path} ({err.strerror or err}); free space or make {path.parent} "
                         "writable (or choose another --out) and run again to resume (the previous checkpoint is intact)"
                         ) from None
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DDLibError(f"no checkpoint at {path}; train first (python -m ddlib train --out {path.parent})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign object: all mean "unusable file"
        reason = _reason(err)  # never torch's hint to load the file unsafely
        raise DDLibError(f"checkpoint {path} is corrupt or not a ddlib checkpoint ({reason}); delete it or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DDLibError(f"{path} is not a {FORMAT} file; point to a checkpoint written by ddlib")
    return state


def check_config(state: dict, expected: dict, path: str | os.PathLike, kind: str | None = None) -> None:
    """Raise if ``state`` was written under a config other than ``expected``, naming the differing keys;
    ``kind`` (``"unet"``, ``"vae"``) must match the checkpoint's own when both are known."""
    if kind is not None and state.get("kind") not in (None, kind):
        raise DDLibError(f"{path} holds a {state.get('kind')!r} checkpoint, not a {kind!r} one; "
                         "use another --out folder for this run")
    saved = state.get("config", {})
    if config_hash(saved) == config_hash(expected):
        return
    keys = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {expected.get(k)!r}" for k in keys[:4])
    raise DDLibError(
        f"checkpoint {path} was written for a different config ({diffs}); use another --out folder or the original settings"
    )


# --------------------------------------------------------------------------------------------------
# run folders: one writer at a time, and never someone else's files

LOCK = ".ddlib.lock"
MARKER = ".ddlib-run"  # written into every run folder ddlib creates or adopts
RUN_FILES = {CHECKPOINT, "config.json", "log.jsonl", "eval.jsonl", "done.json", LOCK, MARKER}


def _lock_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def run_lock(folder: str | os.PathLike):
    """Hold ``folder/.ddlib.lock`` (pid, host, start time) while the block runs.

    A second process gets a :class:`DDLibError` naming the holder. A lock left by a process that died
    on this host is taken over. The folder is created if needed; a folder that cannot be written is a
    one-line error, not a traceback.
    """
    folder = Path(folder)
    path = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DDLibError(f"cannot write to run folder {folder} ({err.strerror or err}); choose a writable --out") from None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            if not holder:  # being written right now, or empty after a crash between create and write
                time.sleep(0.05)
                holder = _lock_holder(path)
                if not holder and time.time() - path.stat().st_mtime > 10:
                    path.unlink(missing_ok=True)
                    continue
            raise DDLibError(f"run folder {folder} is in use by pid {holder.get('pid', '?')} on host "
                             f"{holder.get('host', '?')} since {holder.get('since', '?')}; wait for it to finish, use "
                             f"another --out, or delete {path} if that process is gone") from None
        except OSError as err:
            raise DDLibError(f"cannot write to run folder {folder} ({err.strerror or err}); choose a writable --out") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    else:
        raise DDLibError(f"cannot take the lock {path}; delete it if no ddlib process uses {folder}")
    try:
        yield path
    finally:
        if _lock_holder(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)


def claim_run_folder(folder: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse a folder holding files ddlib did not write, unless ``overwrite``; then mark it as a run folder.

    A folder is ddlib's when it is empty, carries the marker ``.ddlib-run``, or holds a ``checkpoint.pt``
    (runs from before the marker). Call it with the lock held; it also removes temporary files that
    killed checkpoint writes left behind.
    """
    folder = Path(folder)
    entries = [p.name for p in folder.iterdir() if p.name != LOCK]
    ours = not entries or MARKER in entries or CHECKPOINT in entries
    if not ours and not overwrite:
        shown = ", ".join(sorted(entries)[:4]) + (", …" if len(entries) > 4 else "")
        raise DDLibError(f"{folder} holds files ddlib did not write ({shown}); choose an empty or new --out folder, "
                         "or pass --overwrite (overwrite=True) to write config.json, checkpoint.pt and logs there anyway")
    remove_stale_tmp(folder, f"*{CHECKPOINT}.*.tmp")  # ddlib.files names them .checkpoint.pt.pid<N>.….tmp
    (folder / MARKER).touch()
