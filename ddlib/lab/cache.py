"""Cached expensive steps for the report notebooks: training runs, results and image sets, keyed by config hash.

A notebook asks for "the model this config trains" or "the FID of these samples"; the answer is
computed once and stored under a folder named by the hash of everything that determines it, so

- re-running a notebook reuses every checkpoint and number whose inputs did not change;
- changing one parameter re-runs only what depends on it (its hash changes, the others do not);
- an interrupted training run resumes from its last checkpoint (exactly; see :mod:`ddlib.train`);
- ``FORCE=1`` in the environment recomputes everything a run touches (the old entry is replaced).

Layout under the cache root (default ``<ddlib cache>/report``, i.e. ``.cache/ddlib/report``;
``$DDLIB_REPORT_CACHE`` or the ``root`` argument override it)::

    runs/<hash>/        a training run: config.json, checkpoint.pt, log.jsonl, done.json
    results/<kind>-<hash>.json       a JSON result with its key and provenance
    images/<kind>-<hash>.npz         a uint8 image set (e.g. samples for a grid)

``done.json`` marks a run complete and records how long it took and on what hardware, so a reused
run still reports its real training time. Entries are written atomically (temporary file, rename).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ddlib.checkpoint import config_hash
from ddlib.device import hardware_string, resolve_device
from ddlib.errors import DDLibError
from ddlib.files import atomic_open, atomic_write_text

FORCE_ENV = "FORCE"
FORCE_SINCE_ENV = "DDLIB_FORCE_SINCE"


def force_enabled() -> bool:
    """True when ``$FORCE`` is set to something other than empty, ``0``, ``false`` or ``no``."""
    return os.environ.get(FORCE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def forced(path: str | Path) -> bool:
    """Whether ``$FORCE`` asks to recompute the cache entry at ``path`` (a file, or a run folder).

    Outside a report run: always. Inside one, the pipeline sets ``$DDLIB_FORCE_SINCE`` to the run's start
    time, and only entries written before it are recomputed, so a model retrained by notebook 01 is reused,
    not retrained again, by notebooks 02 and 04.
    """
    if not force_enabled():
        return False
    since = os.environ.get(FORCE_SINCE_ENV)
    if not since:
        return True
    path = Path(path)
    try:
        stamps = [p.stat().st_mtime for p in path.iterdir()] if path.is_dir() else [path.stat().st_mtime]
    except OSError:
        return True
    return not stamps or max(stamps) < float(since)


def default_root() -> Path:
    """``$DDLIB_REPORT_CACHE`` when set, else ``<ddlib.data.default_cache_dir()>/report``."""
    env = os.environ.get("DDLIB_REPORT_CACHE")
    if env:
        return Path(env).expanduser()
    from ddlib.data import default_cache_dir

    return default_cache_dir() / "report"


# --------------------------------------------------------------------------------------------------
# training runs


@dataclass
class CachedRun:
    """A complete training run in the cache."""

    run_dir: Path
    key: str  # the config hash naming the folder
    config: Any  # the TrainConfig
    wall_s: float  # training time of the run (the invocation that completed it), seconds
    hardware: str
    reused: bool  # True when this call found the run complete and trained nothing
    resumed_from: int  # step the completing invocation started from (0: trained from scratch)

    def load(self, device: str | torch.device = "cpu"):
        """The trained model (EMA weights) with its schedule: :func:`ddlib.train.load_trained`."""
        from ddlib.train import load_trained

        return load_trained(self.run_dir, device=device)

    def log(self) -> list[dict]:
        from ddlib.train import read_log

        return read_log(self.run_dir / "log.jsonl")


def run_key(config, extra: dict | None = None) -> str:
    """The hash naming a run: what determines its weights (``config.identity()`` and ``steps``) plus ``extra``.

    ``log_every`` and ``checkpoint_every`` do not change the weights (training resumes exactly), so
    runs that differ only in them share a folder.
    """
    ident = config.identity() if hasattr(config, "identity") else config.to_dict()
    return config_hash({"config": ident, "steps": config.steps, **({"extra": extra} if extra else {})})


def cached_train(config, root: str | Path | None = None, *, data=None, device: str | torch.device = "auto",
                 progress: bool = False, evaluator=None, eval_every: int = 0, extra_key: dict | None = None,
                 train_fn: Callable | None = None) -> CachedRun:
    """Train ``config`` (a :class:`ddlib.train.TrainConfig`) into ``<root>/runs/<hash>/``, or reuse it.

    - complete (``done.json`` present, checkpoint at ``config.steps``): nothing is trained;
    - partial (a checkpoint from an interrupted call): training resumes from it;
    - ``FORCE=1``: the folder is deleted and the run trained from scratch (once per report run: :func:`forced`).

    ``evaluator``/``eval_every`` go to :func:`ddlib.train.train`; pass ``extra_key`` (e.g. the evaluator's
    settings) so runs with different evaluations get different folders. ``train_fn`` replaces
    :func:`ddlib.train.train` (same signature), e.g. for another kind of model.
    """
    from ddlib.checkpoint import load_checkpoint
    from ddlib.train import train

    train_fn = train_fn or train
    root = Path(root) if root is not None else default_root()
    key = run_key(config, extra_key)
    run_dir = root / "runs" / key
    done = run_dir / "done.json"
    if run_dir.exists() and forced(run_dir):
        shutil.rmtree(run_dir)
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("step") == config.steps and (run_dir / "checkpoint.pt").is_file():
            return CachedRun(run_dir, key, config, float(info["wall_s"]), info["hardware"], True,
                             int(info.get("resumed_from", 0)))
        done.unlink()
    start = 0
    if (run_dir / "checkpoint.pt").is_file():
        try:
            start = int(load_checkpoint(run_dir / "checkpoint.pt")["step"])
        except DDLibError:  # a corrupt checkpoint: start over
            shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    kwargs = dict(data=data, device=device, resume=True, progress=progress)
    if evaluator is not None:
        kwargs.update(evaluator=evaluator, eval_every=eval_every)
    result = train_fn(config, run_dir, **kwargs)
    wall = time.perf_counter() - t0
    hw = hardware_string(resolve_device(device))
    info = {"step": int(result.step), "wall_s": round(wall, 2), "hardware": hw, "resumed_from": start,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key": key, "config": config.to_dict()}
    atomic_write_text(done, json.dumps(info, indent=2) + "\n")
    return CachedRun(run_dir, key, config, round(wall, 2), hw, False, start)


# --------------------------------------------------------------------------------------------------
# results and image sets


def result_path(kind: str, key: dict, root: str | Path | None = None) -> Path:
    root = Path(root) if root is not None else default_root()
    return root / "results" / f"{kind}-{config_hash(key)}.json"


def cached_result(kind: str, key: dict, fn: Callable[[], dict], root: str | Path | None = None) -> dict:
    """``fn()`` (a JSON-able dict), computed once per ``(kind, key)`` and stored with its key.

    The stored value gains ``wall_s`` (seconds ``fn`` took, unless it set one itself) and ``cached``
    (True when this call read it from the cache). ``FORCE=1`` recomputes.
    """
    path = result_path(kind, key, root)
    if path.is_file() and not forced(path):
        stored = json.loads(path.read_text())
        if stored.get("key") == json.loads(json.dumps(key, default=str)):
            return {**stored["value"], "cached": True}
    t0 = time.perf_counter()
    value = dict(fn())
    value.setdefault("wall_s", round(time.perf_counter() - t0, 2))
    record = {"kind": kind, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "value": value}
    atomic_write_text(path, json.dumps(record, indent=1, default=str) + "\n")
    return {**json.loads(json.dumps(value, default=str)), "cached": False}


def cached_images(kind: str, key: dict, fn: Callable[[], torch.Tensor], root: str | Path | None = None) -> torch.Tensor:
    """A uint8 image tensor ``fn()``, stored once per ``(kind, key)`` as ``.npz``; ``FORCE=1`` recomputes."""
    root = Path(root) if root is not None else default_root()
    path = root / "images" / f"{kind}-{config_hash(key)}.npz"
    if path.is_file() and not forced(path):
        with np.load(path, allow_pickle=False) as z:
            return torch.from_numpy(z["images"])
    images = fn()
    with atomic_open(path) as f:
        np.savez(f, images=images.cpu().numpy(), key=np.array(json.dumps(key, default=str)))
    return images
