"""Latent diffusion (Rombach et al. 2022): a diffusion UNet trained and sampled on a VAE's latents.

The pipeline around the autoencoder of :mod:`ddlib.vae`:

- :func:`latent_scale_factor` — s = 1 / std(μ) over a fixed subset of the training images, so the latents
  the diffusion model sees have unit variance (LDM §4.3.2, ``scale_by_std``); :func:`ddlib.train_vae.train_vae`
  stores it with the VAE.
- :func:`encode_dataset` encodes a whole :class:`~ddlib.data.ImageSet` once, each image and its horizontal
  flip, into a :class:`LatentSet` (cached on disk under the VAE's weight hash and the images' hash), so
  diffusion training in latent space runs no encoder per step and trains with ``hflip=False``.
- :func:`train_latent_diffusion` trains a UNet on those latents with :func:`ddlib.train.train`;
  :func:`load_latent_diffusion` loads it with its VAE. Sampling decodes outside the loop:
  ``generate(model, schedule, n, labels=…, guidance=s, decode=vae.decode)``.
- :func:`reconstruct`, :func:`reconstruction_metrics` (PSNR/SSIM, :func:`image_quality`) and
  :func:`bicubic_reconstruction` (the baseline a factor-f autoencoder must beat) measure what the round trip
  x → z → x̂ loses, i.e. the ceiling every latent sample lives under.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ddlib.checkpoint import config_hash, load_checkpoint, save_checkpoint
from ddlib.data import ImageSet, TensorSet, default_cache_dir, load_dataset, to_model_range, to_uint8
from ddlib.device import resolve_device
from ddlib.errors import DDLibError
from ddlib.train import TrainConfig, TrainedModel, TrainResult, load_trained, train
from ddlib.vae import VAE, load_vae, vae_fingerprint


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int, device,
             desc: str | None = None) -> torch.Tensor:
    """fn over ``images`` in batches on ``device``; results concatenated on the CPU (a progress bar with ``desc``)."""
    starts = tqdm(range(0, len(images), batch_size), desc=desc, disable=desc is None)
    return torch.cat([fn(images[i : i + batch_size].to(device)).float().cpu() for i in starts])


def latent_scale_factor(vae: VAE, images: torch.Tensor, batch_size: int = 64) -> float:
    """s = 1 / std(μ) over every element of the unscaled latent means of ``images`` (uint8)."""
    mean = _batched(lambda x: vae.moments(x)[0], images, batch_size, next(vae.parameters()).device)
    return float(1.0 / mean.double().std())


# --------------------------------------------------------------------------------------------------
# the latent data path


@dataclass(frozen=True, eq=False)
class LatentSet(TensorSet):
    """A data set encoded by a VAE, shaped like an :class:`~ddlib.data.ImageSet` for :func:`fit`.

    ``images`` holds float32 scaled latents z = s·μ (N, c, h, w) (the name lets the training loop
    read it like pixels; float data skips ``to_model_range``); with flips, rows N/2… are the latents
    of the horizontally flipped images 0…N/2−1. ``vae_hash`` is :func:`vae_fingerprint` of the encoder.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    vae_hash: str


def encode_dataset(
    vae: VAE,
    data: ImageSet,
    batch_size: int = 64,
    include_flips: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> LatentSet:
    """Encode every image of ``data`` (and its mirror image, with ``include_flips``) once.

    With ``cache_dir`` the latents are stored as ``latents-<key>.pt``, key = hash of (VAE fingerprint,
    data set name, images and labels, flips), and read back from there on the next call.
    """
    vae_hash = vae_fingerprint(vae)
    digest = hashlib.sha256(data.images.numpy())
    digest.update(data.labels.numpy())
    key = config_hash({"vae": vae_hash, "data": data.name, "images": digest.hexdigest()[:16], "flips": include_flips})
    path = Path(cache_dir) / f"latents-{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        z, labels = (state := load_checkpoint(path))["latents"], state["labels"]
    else:
        device, desc = next(vae.parameters()).device, f"encoding {data.name}" if progress else None
        z = _batched(vae.encode, data.images, batch_size, device, desc)  # (N, c, h, w)
        labels = data.labels
        if include_flips:
            desc = None if desc is None else desc + " (flipped)"
            flipped = _batched(lambda x: vae.encode(x.flip(-1)), data.images, batch_size, device, desc)
            z, labels = torch.cat([z, flipped]), torch.cat([labels, labels])  # (2N, c, h, w), (2N,)
        if path is not None:
            save_checkpoint({"kind": "latents", "key": key, "latents": z, "labels": labels}, path)
    return LatentSet(z, labels, tuple(data.classes), f"{data.name}@vae-{vae_hash}", vae_hash)


def train_latent_diffusion(
    config: TrainConfig,
    vae_run: str | Path,
    out_dir: str | Path,
    *,
    latents: LatentSet | None = None,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    resume: bool = True,
    progress: bool = True,
    evaluator: Callable[[nn.Module, int], dict] | None = None,
    eval_every: int = 0,
) -> TrainResult:
    """Train a diffusion UNet on the latents of ``config.dataset`` under the VAE of ``vae_run`` (LDM).

    The UNet is sized from the latents (c channels, side H/f). ``config.hflip`` must be False: flips
    are in the encoded set. Latents come from ``latents`` or are encoded (cached in ``cache_dir``,
    default ``<ddlib cache>/latents``). The checkpoint records the VAE's run folder and fingerprint,
    and resuming under another VAE is refused.
    """
    if config.hflip:
        raise DDLibError("latent diffusion trains with hflip=False: encode_dataset already holds every image's flip")
    vae = load_vae(vae_run, device=resolve_device(device))
    vae_hash = vae_fingerprint(vae)
    if latents is None:
        images = load_dataset(config.dataset, limit=config.data_limit, progress=progress)
        cache_dir = cache_dir if cache_dir is not None else default_cache_dir() / "latents"
        latents = encode_dataset(vae, images, cache_dir=cache_dir, progress=progress)
    if latents.vae_hash != vae_hash:
        raise DDLibError(f"the latents were encoded by VAE {latents.vae_hash}, not by {vae_run} ({vae_hash}); re-encode them")
    return train(config, out_dir, data=latents, device=device, resume=resume, progress=progress, evaluator=evaluator,
                 eval_every=eval_every, extra_identity={"vae": vae_hash},
                 extra_state={"vae": {"run": str(Path(vae_run).resolve()), "hash": vae_hash}})


def load_latent_diffusion(run: str | Path, *, device: str | torch.device = "cpu") -> tuple[TrainedModel, VAE]:
    """The (EMA) UNet of a :func:`train_latent_diffusion` run and the VAE it was trained with."""
    trained = load_trained(run, device=device)
    info = trained.vae
    if info is None:
        raise DDLibError(f"{run} is a pixel-space run (no VAE recorded); use ddlib.train.load_trained")
    vae = load_vae(info["run"], device=device)
    if vae_fingerprint(vae) != info["hash"]:
        raise DDLibError(f"the VAE at {info['run']} changed since {run} was trained on it; retrain or restore it")
    return trained, vae


# --------------------------------------------------------------------------------------------------
# what the round trip x → z → x̂ costs in pixels


def image_quality(reference: torch.Tensor, images: torch.Tensor) -> dict:
    """Mean per-image PSNR (dB) and SSIM (Gaussian 11×11, σ 1.5) of uint8 ``images`` against ``reference``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if reference.shape != images.shape or reference.dtype != torch.uint8 or images.dtype != torch.uint8:
        raise DDLibError(f"image_quality needs two uint8 batches of one shape, got {reference.dtype} "
                         f"{tuple(reference.shape)} and {images.dtype} {tuple(images.shape)}")
    a, b = reference.double() / 255, images.double() / 255
    psnr = peak_signal_noise_ratio(b, a, data_range=1.0, dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(b, a, data_range=1.0)
    return {"psnr": float(psnr), "ssim": float(ssim), "n": len(images)}


def reconstruct(vae: VAE, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """𝒟(ℰ(x)) of uint8 ``images`` as uint8 (what a decoded latent looks like as a picture)."""
    device = next(vae.parameters()).device
    return to_uint8(_batched(lambda x: vae.decode(vae.encode(x)), images, batch_size, device))


def reconstruction_metrics(vae: VAE, images: torch.Tensor, batch_size: int = 64) -> dict:
    """PSNR and SSIM of the VAE's reconstructions of uint8 ``images`` (e.g. the validation split)."""
    return image_quality(images, reconstruct(vae, images, batch_size))


def bicubic_reconstruction(images: torch.Tensor, factor: int) -> torch.Tensor:
    """The baseline a factor-f autoencoder must beat: antialiased bicubic down by f, bicubic up, uint8."""
    x = to_model_range(images)
    small = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True)
    return to_uint8(F.interpolate(small, size=x.shape[-2:], mode="bicubic", antialias=True))
