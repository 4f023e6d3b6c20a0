"""The ``pretrained`` profile's pieces: the official DDPM CIFAR-10 checkpoint as a cached ddlib run, the original
CIFAR-10 training set as the FID reference, and Song et al.'s Table 1 beside ddlib's samplers.

:func:`converted_run` converts a diffusers model (a Hub repository, fetched once, or a local folder) into
``<cache>/pretrained/<hash>/``, keyed by the weights' digest, and returns it as a
:class:`~ddlib.lab.cache.CachedRun` so the context's cached sampling and scoring take it like a trained run.
:func:`original_cifar10_reference` registers the lossless CIFAR-10 training images (torchvision) as the reference;
the offline JPEG copy is not comparable with published FIDs (see :mod:`ddlib.data`).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ddlib.checkpoint import config_hash
from ddlib.errors import DDLibError
from ddlib.lab.cache import CachedRun
from ddlib.lab.literature import DDIM, literature_rows


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def converted_run(ctx, *, repo_id: str | None = None, folder: str | None = None, revision: str | None = None,
                  dataset: str = "cifar10:train") -> CachedRun:
    """The diffusers model of ``repo_id`` (downloaded) or ``folder`` as a cached ddlib run folder."""
    from ddlib.convert import WEIGHT_FILES, convert_folder, fetch_pretrained, find_model_folder
    from ddlib.train import TrainConfig, load_trained

    if (repo_id is None) == (folder is None):
        raise DDLibError("give exactly one of pretrained_repo (a Hub repository) and pretrained_folder (a local folder)")
    t0 = time.perf_counter()
    src = fetch_pretrained(repo_id, revision=revision) if repo_id else Path(folder).expanduser()
    model_dir = find_model_folder(src)
    weights = next(model_dir / w for w in WEIGHT_FILES if (model_dir / w).is_file())
    source = {"hub_repo": repo_id, "revision": revision} if repo_id else {}
    key = config_hash({"weights": _digest(weights), "config": (model_dir / "config.json").read_text(), **source})
    run_dir = ctx.cache_root / "pretrained" / key
    reused = (run_dir / "checkpoint.pt").is_file()
    if not reused:
        convert_folder(src, run_dir, dataset=dataset, source=source)
    config = TrainConfig.from_dict(load_trained(run_dir).config.to_dict())
    return CachedRun(run_dir, key, config, round(time.perf_counter() - t0, 2), ctx.hardware, reused, 0)


def original_cifar10_reference(ctx, *, download: bool = True) -> tuple[str, str]:
    """Register the 50,000 original CIFAR-10 training images (torchvision, lossless) as a FID reference.

    Returns ``(name, label)``: pass ``name`` as ``reference`` to the context's scoring, print ``label``.
    """
    try:
        from torchvision.datasets import CIFAR10
    except ImportError:  # pragma: no cover - torchvision is a dependency
        raise DDLibError("the original CIFAR-10 comes through torchvision; install the package's dependencies") from None
    import torch

    root = ctx.cache_root / "torchvision-cifar10"
    try:
        data = CIFAR10(root=str(root), train=True, download=download)
    except (RuntimeError, OSError) as err:
        raise DDLibError(f"cannot get the original CIFAR-10 through torchvision into {root} ({err}); the pretrained "
                         "profile needs the internet (or a copy of cifar-10-batches-py there)") from None
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W) uint8
    name = "cifar10:train (original, torchvision)"
    return name, ctx.image_reference(images, name)


def synthetic_reference(ctx, n: int, size: int) -> tuple[str, str]:
    """A stand-in reference for the toy dry run: ``n`` synthetic images resized to ``size`` pixels."""
    import torch.nn.functional as F

    from ddlib.data import synthetic_dataset

    imgs = synthetic_dataset(seed=1).images[:n].float()
    imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
    name = f"synthetic ({size}×{size}, dry run)"
    return name, ctx.image_reference(imgs, name)


def published_fid(steps: int, eta: float) -> float | None:
    """Song et al. 2021, Table 1 (CIFAR-10, 50,000 samples): the FID at ``steps`` and ``eta``, or None."""
    for r in literature_rows(("DDIM",)):
        if r["steps"] == steps and r["eta"] == eta:
            return r["fid"]
    return None


PUBLISHED_SOURCE = DDIM
