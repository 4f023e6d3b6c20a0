"""Experiments over the samplers: the classifier-free guidance sweep and latent- vs pixel-space cost.

:func:`guidance_sweep` samples the same labels from the same seeds (x_T of image i from seed
``seed + i``) at every guidance scale s, so scales differ only through s, and scores each set by
class consistency (:mod:`ddlib.metrics.classifier`) and, when given a ``metrics`` callable, by FID/KID
against a reference — for instance with :mod:`ddlib.metrics`::

    ref = image_source("tiny-imagenet-100:val")
    def metrics(images):
        s = fid_kid(Source.from_features(compute_features(images, progress=False), "samples"), ref)
        return {"fid": s["fid"], "kid": s["kid_mean"]}

:func:`compare_latent_pixel_sampling` times the same sampler in latent space (plus one decode) and
in pixel space at the same output resolution, and measures the peak memory each adds
(:func:`ddlib.perf.cost.measure`: CUDA allocations, or the peak resident set size on a CPU).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from ddlib.metrics.classifier import SmallCNN, class_consistency, predict
from ddlib.perf.cost import measure, memory_method
from ddlib.device import hardware_string
from ddlib.errors import DDLibError
from ddlib.generate import generate
from ddlib.schedules import NoiseSchedule


def guidance_sweep(
    model: nn.Module,
    schedule: NoiseSchedule,
    scales: list[float],
    n_per_scale: int,
    classifier: SmallCNN,
    *,
    sampler: str = "ddim",
    num_steps: int = 50,
    seed: int = 0,
    batch_size: int = 256,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    metrics: Callable[[torch.Tensor], dict] | None = None,
    classes: list[int] | None = None,
    progress: bool = False,
) -> list[dict]:
    """One record per guidance scale s: ``{"scale", "n", "class_consistency", "correct", "sample_seconds", **metrics(images)}``.

    ``correct``: per sample (index i, the same x_T and label at every s), whether the classifier agreed with its label,
    so that two scales can be compared paired.

    Labels cycle 0, 1, …, K−1, 0, … (balanced classes), or through ``classes`` when given — the labels the
    model was trained on, if its data held only some of its K classes; ``decode`` maps latent samples to pixels
    (``vae.decode``); ``metrics(images_uint8) -> dict`` adds e.g. FID/KID (optional, so the sweep
    runs without the Inception network).
    """
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is None:
        raise DDLibError("a guidance sweep needs a class-conditional model (train with class_conditional=True)")
    if bad := [s for s in scales if s < 0]:
        raise DDLibError(f"guidance scales must be >= 0 (1 = conditional, 0 = unconditional), got {bad}")
    if n_per_scale < 1:
        raise DDLibError(f"n_per_scale must be >= 1, got {n_per_scale}")
    classes = list(range(num_classes)) if classes is None else classes
    if not classes or min(classes) < 0 or max(classes) >= num_classes:
        raise DDLibError(f"classes must be a non-empty list of labels in 0..{num_classes - 1}, got {classes}")
    labels = torch.tensor(classes)[torch.arange(n_per_scale) % len(classes)]  # (N,) cycling through the classes
    records = []
    for s in scales:
        t0 = time.perf_counter()
        images, _ = generate(model, schedule, n_per_scale, sampler=sampler, num_steps=num_steps, labels=labels,
                             guidance=s, seed=seed, batch_size=batch_size, decode=decode, progress=progress)
        seconds = round(time.perf_counter() - t0, 3)
        correct = (predict(classifier, images) == labels).tolist()  # per sample, in index order (pairs across scales)
        record = {"scale": float(s), "n": n_per_scale, "class_consistency": class_consistency(classifier, images, labels),
                  "correct": [bool(c) for c in correct], "sample_seconds": seconds}
        records.append({**record, **(metrics(images) if metrics is not None else {})})
    return records


def compare_latent_pixel_sampling(
    latent_model: nn.Module,
    decode: Callable[[torch.Tensor], torch.Tensor],
    pixel_model: nn.Module,
    schedule: NoiseSchedule,
    *,
    n: int = 16,
    num_steps: int = 20,
    batch_size: int = 16,
    seed: int = 0,
) -> dict:
    """Time and peak memory of DDIM sampling ``n`` images in latent space (then ``decode``) vs pixel space.

    Both models must produce the same output resolution: ``decode`` (e.g. ``vae.decode``) of the
    latent model's samples must match the pixel model's samples in shape. Each side runs once
    untimed on one image with one step (warm-up), then timed. Class-conditional models sample
    labels 0, 1, … at s = 1.
    """
    device = next(pixel_model.parameters()).device

    def run(model: nn.Module, dec, num: int, steps: int) -> torch.Tensor:
        return generate(model, schedule, num, num_steps=steps, seed=seed, batch_size=batch_size, decode=dec, progress=False)[0]

    latent_out, pixel_out = run(latent_model, decode, 1, 1), run(pixel_model, None, 1, 1)  # warm-up
    if latent_out.shape != pixel_out.shape:
        raise DDLibError(f"latent sampling gives {tuple(latent_out.shape[1:])} images but pixel sampling "
                         f"{tuple(pixel_out.shape[1:])}: compare models of the same output resolution")
    result = {"n": n, "num_steps": num_steps, "batch_size": batch_size, "image_shape": tuple(pixel_out.shape[1:]),
              "device": hardware_string(device),
              "memory_method": memory_method(device)}
    for name, model, dec in (("latent", latent_model, decode), ("pixel", pixel_model, None)):
        seconds, peak = measure(lambda: run(model, dec, n, num_steps), device)
        cfg = model.config
        result[name] = {"seconds": round(seconds, 3), "img_per_s": round(n / seconds, 3), "peak_mib": round(peak / 2**20, 1),
                        "sample_shape": (cfg.in_channels, cfg.image_size, cfg.image_size)}
    result["speedup"] = round(result["pixel"]["seconds"] / result["latent"]["seconds"], 2)
    return result
