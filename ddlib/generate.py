"""Batched, reproducible image generation on top of the samplers.

Image i starts from x_T drawn with its own seed (``seed + i``), as in EDM's per-image seeds, so a
deterministic sampler (DDIM, η = 0) gives the same image i whatever the batch size or the number of
images asked for (up to float rounding: batched convolutions may differ in the last bits). Per-step noise (DDPM, DDIM η > 0) comes from one generator per batch.
Class-conditional models get labels (one class, or cycling through all) and optional
classifier-free guidance; latent models pass ``decode`` to map samples back to pixels.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from ddlib import distributed
from ddlib.data import to_uint8
from ddlib.errors import DDLibError, check_number
from ddlib.accel.graphs import graphed
from ddlib.guidance import GuidedModel, check_labels
from ddlib.samplers import ddim_sample, ddpm_sample
from ddlib.schedules import NoiseSchedule

SAMPLERS = ("ddim", "ddpm")


def initial_noise(shape: tuple[int, ...], seeds: list[int], device, dtype=torch.float32) -> torch.Tensor:
    """x_T for a batch: sample i is N(0, I) drawn with ``torch.Generator().manual_seed(seeds[i])``."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s), dtype=dtype) for s in seeds]).to(device)


def class_labels(n: int, num_classes: int, label: int | None = None) -> torch.Tensor:
    """n labels: all ``label``, or 0, 1, …, K-1, 0, 1, … when ``label`` is None."""
    if label is not None:
        check_labels(torch.tensor([label]), num_classes)
        return torch.full((n,), label, dtype=torch.long)
    return torch.arange(n) % num_classes


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    num: int,
    *,
    sampler: str = "ddim",
    num_steps: int = 50,
    eta: float = 0.0,
    spacing: str = "leading",
    variance: str = "fixed_small",
    clip: bool = False,
    label: int | None = None,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    shard: bool = True,
    on_batch: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample ``num`` images; returns (uint8 images (N, C, H, W) on the CPU, labels or None).

    For a class-conditional model, ``labels`` (N,) or ``label`` choose the classes (default: cycle
    through all) and ``guidance`` is the classifier-free guidance scale s (1 = conditional).
    ``shard``: in a torchrun job (:mod:`ddlib.distributed`) each rank samples a contiguous block of the batches
    and every rank gets all ``num`` images in index order; a batch is made exactly as one process makes it
    (same images, same seeds, same generator), so the images do not depend on the number of ranks. Every rank
    must call it then; ``shard=False`` makes all images in this process.
    ``on_batch(start, images)``: called with each finished batch of uint8 images instead of keeping
    them (memory stays bounded by one batch); the returned image tensor is then empty. In a torchrun job each
    rank's ``on_batch`` receives that rank's batches only.
    """
    if sampler not in SAMPLERS:
        raise DDLibError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    check_number("num", num, minimum=1, integer=True)
    check_number("batch_size", batch_size, minimum=1, integer=True)
    check_number("guidance", guidance, minimum=0)
    check_number("eta", eta, minimum=0)
    cfg = model.config
    device = next(model.parameters()).device
    num_classes = cfg.num_classes
    if num_classes is None and (label is not None or labels is not None or guidance != 1.0):
        raise DDLibError("this model is unconditional: drop --class/labels and --guidance, or train with --class-conditional")
    net = graphed(model)  # with DDLIB_CUDA_GRAPHS=1 on CUDA, denoiser calls replay CUDA graphs (ddlib.accel.graphs)
    if num_classes is not None:
        labels = class_labels(num, num_classes, label) if labels is None else torch.as_tensor(labels).long()
        check_labels(labels, num_classes)
        net = GuidedModel(net, guidance)
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    out = []
    starts = range(0, num, batch_size)
    sharded = shard and distributed.world() > 1
    first, stop = distributed.shard_range(len(starts)) if sharded else (0, len(starts))  # this rank's batches
    mine = list(enumerate(starts))[first:stop]
    quiet = not progress or len(mine) <= 1 or not distributed.is_main()
    for b, start in tqdm(mine, desc=f"sample {num}", disable=quiet):
        n = min(batch_size, num - start)
        x_T = initial_noise(shape, list(range(seed + start, seed + start + n)), device)
        g = torch.Generator(device=device).manual_seed(seed * 7_919 + b)
        kw = {"y": labels[start : start + n].to(device)} if num_classes is not None else {}
        common = dict(generator=g, progress=progress, clip=clip, x_T=x_T, device=device, **kw)
        if sampler == "ddim":
            x = ddim_sample(net, schedule, x_T.shape, num_steps=num_steps, eta=eta, spacing=spacing, **common)
        else:
            x = ddpm_sample(net, schedule, x_T.shape, variance=variance, **common)
        if decode is not None:
            x = decode(x)
        if on_batch is not None:
            on_batch(start, to_uint8(x).cpu())
        else:
            out.append(to_uint8(x).cpu())
    if on_batch is not None:
        return torch.empty((0, *shape), dtype=torch.uint8), labels
    if not sharded:
        return torch.cat(out), labels
    mine = torch.cat(out) if out else torch.zeros((0,), dtype=torch.uint8)  # a rank may have no batch
    return distributed.all_gather_rows(mine), labels
