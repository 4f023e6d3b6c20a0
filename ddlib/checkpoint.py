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
from pathlib import Path

import torch

from ddlib.errors import DDLibError
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
    """Write ``state`` (plus the format tag) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, **state}, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DDLibError(f"no checkpoint at {path}; train first (python -m ddlib train --out {path.parent})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign object: all mean "unusable file"
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise DDLibError(f"checkpoint {path} is corrupt or not a ddlib checkpoint ({reason}); delete it or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DDLibError(f"{path} is not a {FORMAT} file; point to a checkpoint written by ddlib")
    return state


def check_config(state: dict, expected: dict, path: str | os.PathLike) -> None:
    """Raise if ``state`` was written under a config other than ``expected``, naming the differing keys."""
    saved = state.get("config", {})
    if config_hash(saved) == config_hash(expected):
        return
    keys = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {expected.get(k)!r}" for k in keys[:4])
    raise DDLibError(
        f"checkpoint {path} was written for a different config ({diffs}); use another --out folder or the original settings"
    )
