"""Training the KL autoencoder (:mod:`ddlib.vae`) with the loop every model shares (:func:`ddlib.train.fit`).

The objective (LDM §3, appendix G), per image, divided by the D = 3·H·W pixel values:

    L / D = ‖x − 𝒟(z)‖ / D  +  w_KL · KL(q(z | x) ‖ N(0, I)) / D,   z = μ + σ ⊙ ε,
    KL = ½ Σ (μ² + σ² − 1 − log σ²),

with ‖·‖ the L1 (LDM) or squared-L2 distance and w_KL = 1e-6. After the loop, :func:`train_vae` fixes the
latent scale factor s = 1 / std(μ) on a seeded subset of the training images
(:func:`ddlib.latent.latent_scale_factor`) and stores it in the checkpoint, which :func:`ddlib.vae.load_vae` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ddlib.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from ddlib.data import ImageSet, load_dataset
from ddlib.errors import DDLibError
from ddlib.latent import latent_scale_factor
from ddlib.train import LoopConfig, TrainResult, fit, seeded_model
from ddlib.vae import VAE, preset_config

RECON_LOSSES = ("l1", "mse")


@dataclass(frozen=True)
class VAETrainConfig(LoopConfig):
    """A VAE training run for :func:`ddlib.train.fit`: the loop's fields (:class:`~ddlib.train.LoopConfig`,
    with the defaults below) and the autoencoder's. Saved as ``config.json`` beside its outputs."""

    dataset: str = "tiny-imagenet-100:train"
    data_limit: int | None = None
    preset: str = "f4c4"
    vae: dict = field(default_factory=dict)  # VAEConfig overrides
    recon_loss: str = "l1"  # "l1" (LDM) or "mse"
    kl_weight: float = 1e-6  # w_KL, LDM's kl_weight
    scale_images: int = 1024  # training images (a seeded random subset) that fix s = 1/std(μ)
    steps: int = 20_000
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    ema_decay: float = 0.999

    def __post_init__(self):
        super().__post_init__()
        if self.recon_loss not in RECON_LOSSES:
            raise DDLibError(f"unknown recon_loss {self.recon_loss!r}; choose one of {', '.join(RECON_LOSSES)}")
        if self.kl_weight < 0 or self.scale_images < 1:
            raise DDLibError(f"kl_weight must be >= 0 and scale_images >= 1, got {self.kl_weight}, {self.scale_images}")
        preset_config(self.preset, **self.vae)  # validates the preset and overrides

    def make_model(self, data: ImageSet) -> VAE:
        return VAE(preset_config(self.preset, **{"image_size": data.image_size, "in_channels": data.channels, **self.vae}))


def vae_loss(recon_loss: str = "l1", kl_weight: float = 1e-6) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """L / D = mean reconstruction distance + w_KL · KL / D as ``loss_fn(vae, x, y)`` for :func:`fit`."""
    if recon_loss not in RECON_LOSSES:
        raise DDLibError(f"unknown recon_loss {recon_loss!r}; choose one of {', '.join(RECON_LOSSES)}")

    def loss_fn(vae: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_hat, mean, logvar = vae(x)
        x_hat = x_hat.float()
        rec = F.l1_loss(x_hat, x) if recon_loss == "l1" else F.mse_loss(x_hat, x)
        kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).sum()  # Σ over batch and z
        return rec + kl_weight * kl / x.numel()

    return loss_fn


def train_vae(
    config: VAETrainConfig,
    out_dir: str | Path,
    *,
    data: ImageSet | None = None,
    device: str | torch.device = "auto",
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a VAE with the shared loop, then fix its scale factor s on the training data.

    The checkpoint holds ``kind="vae"``, the resolved ``vae_config`` and ``scale_factor`` (written at
    the end, so a run killed mid-way has none until it is resumed to completion). ``result.ema`` is
    the VAE to use, with s set.
    """
    if data is None:
        data = load_dataset(config.dataset, limit=config.data_limit, progress=progress)
    model = seeded_model(config, data)
    extra = {"kind": "vae", "vae_config": model.config.to_dict()}
    result = fit(model, vae_loss(config.recon_loss, config.kl_weight), data, config, config.identity(), out_dir,
                 device=device, resume=resume, progress=progress, extra_state=extra)
    subset = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))[: config.scale_images]
    scale = latent_scale_factor(result.ema, data.images[subset.sort().values])
    result.ema.scale_factor = result.model.scale_factor = scale
    ckpt = result.out_dir / CHECKPOINT
    save_checkpoint({**load_checkpoint(ckpt), "scale_factor": scale}, ckpt)
    return result
