"""The KL autoencoder of latent diffusion (Rombach et al. 2022, "kl-f4") and the latent data path.

Notation (LDM §3, appendix G). The encoder ℰ maps an image x ∈ [-1, 1]^{3×H×W} to the mean μ and
log-variance log σ² of a diagonal Gaussian q(z | x) = N(μ, σ²) over latents of shape c × H/f × W/f,
f = 2^(levels − 1) the downsampling factor; the decoder 𝒟 maps a latent back to pixels. Training
minimises, per image,

    L = ‖x − 𝒟(z)‖  +  w_KL · KL(q(z | x) ‖ N(0, I)),   z = μ + σ ⊙ ε,
    KL = ½ Σ (μ² + σ² − 1 − log σ²),

with ‖·‖ the L1 or squared-L2 distance summed over the D = 3·H·W pixel values (LDM uses L1 plus a
perceptual and an adversarial term, which are left out here) and w_KL = 1e-6 as in LDM. The code
divides L by D (a mean over pixel values), which changes nothing but the loss's scale.

The diffusion model works on z = s · μ (the posterior mean: with w_KL = 1e-6, σ is tiny and LDM's
sample z ~ q differs from μ by far less than the decoder can resolve). The scale factor
s = 1 / std(μ) is computed once after training on a fixed subset of the training images, so the
latents the diffusion model sees have unit variance (LDM §4.3.2 and its ``scale_by_std``);
:meth:`VAE.encode` multiplies by s and :meth:`VAE.decode` divides by it.

Architecture: LDM's Encoder/Decoder — per level ``num_res_blocks`` residual blocks (GroupNorm → SiLU →
conv, twice), stride-2 convolutions down and nearest-neighbour + conv up, res-attn-res in the middle —
without the 1×1 ``quant_conv``/``post_quant_conv`` (folded into the encoder's and decoder's convs).

Latent data path: :func:`encode_dataset` encodes a whole :class:`~ddlib.data.ImageSet` once, each
image and its horizontal flip, into a :class:`LatentSet` (cached on disk under the VAE's weight hash
and the images' hash), so diffusion training in latent space runs no encoder per step and trains with
``hflip=False`` (:func:`train_latent_diffusion`). Sampling decodes outside the loop:
``generate(model, schedule, n, labels=…, guidance=s, decode=vae.decode)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ddlib.checkpoint import config_hash, load_checkpoint, run_checkpoint, save_checkpoint
from ddlib.config import from_preset
from ddlib.data import ImageSet, TensorSet, default_cache_dir, load_dataset, to_model_range, to_uint8
from ddlib.device import resolve_device
from ddlib.errors import DDLibError
from ddlib.train import (
    CHECKPOINT, LoopConfig, TrainConfig, TrainedModel, TrainResult, fit, load_trained, seeded_model, train,
)
from ddlib.unet import AttnBlock

RECON_LOSSES = ("l1", "mse")


@dataclass(frozen=True)
class VAEConfig:
    """The autoencoder's shape: images ``in_channels × image_size²`` ↔ latents ``latent_channels × (image_size/factor)²``."""

    image_size: int = 64
    in_channels: int = 3
    factor: int = 4  # f, a power of 2; the encoder has log2(f) + 1 levels
    latent_channels: int = 4  # c
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)  # width multiplier per level: log2(factor) + 1 entries
    num_res_blocks: int = 2
    norm_groups: int = 32

    def __post_init__(self):
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))  # lists from JSON
        if self.factor < 1 or self.factor & (self.factor - 1):
            raise DDLibError(f"VAE factor must be a power of 2 (1, 2, 4, 8, …), got {self.factor}")
        levels = int(math.log2(self.factor)) + 1
        if len(self.channel_mult) != levels:
            raise DDLibError(f"VAE factor {self.factor} needs {levels} channel_mult entries (one per level), "
                             f"got {len(self.channel_mult)}: {self.channel_mult}")
        if self.image_size % self.factor:
            raise DDLibError(f"VAE image_size {self.image_size} must be divisible by the factor {self.factor}")
        if self.latent_channels < 1 or self.in_channels < 1 or self.num_res_blocks < 1:
            raise DDLibError("VAE latent_channels, in_channels and num_res_blocks must be >= 1")
        widths = {self.base_channels * m for m in self.channel_mult}
        if any(w < 1 or w % self.norm_groups for w in widths):
            raise DDLibError(f"every VAE width {sorted(widths)} must be a positive multiple of norm_groups={self.norm_groups}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, H/f, W/f)."""
        side = self.image_size // self.factor
        return (self.latent_channels, side, side)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, VAEConfig] = {
    # LDM's kl-f4 (models/first_stage_models/kl-f4/config.yaml): ch 128, mult 1,2,4, 2 blocks, z 3
    "kl-f4": VAEConfig(latent_channels=3, base_channels=128),
    # the same shape at half the width and 4 latent channels: the seed report's latent model's input
    "f4c4": VAEConfig(),
    # CPU-sized: tests and the smoke profile
    "small": VAEConfig(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8),
    "test": VAEConfig(base_channels=8, channel_mult=(1, 2, 4), num_res_blocks=1, norm_groups=4),
}


def preset_config(name: str, **overrides) -> VAEConfig:
    """The named VAE preset's config with fields replaced by ``overrides`` (e.g. ``latent_channels=3``)."""
    return from_preset(PRESETS, name, "VAE", **overrides)


# --------------------------------------------------------------------------------------------------
# the network


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, twice, plus a (1×1-projected) skip; LDM's ResnetBlock without temb."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class _Mid(nn.Module):
    """res-attn-res at the lowest resolution."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.res1, self.attn, self.res2 = ResBlock(c, c, groups), AttnBlock(c, 1, groups), ResBlock(c, c, groups)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(h)))


def _encoder(cfg: VAEConfig) -> nn.Sequential:
    ch, g = cfg.base_channels, cfg.norm_groups
    layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, ch, 3, padding=1)]
    c = ch
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers.append(ResBlock(c, ch * mult, g))
            c = ch * mult
        if level < len(cfg.channel_mult) - 1:
            layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
    layers += [_Mid(c, g), nn.GroupNorm(g, c), nn.SiLU(), nn.Conv2d(c, 2 * cfg.latent_channels, 3, padding=1)]
    return nn.Sequential(*layers)


def _decoder(cfg: VAEConfig) -> nn.Sequential:
    ch, g = cfg.base_channels, cfg.norm_groups
    c = ch * cfg.channel_mult[-1]
    layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, c, 3, padding=1), _Mid(c, g)]
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        for _ in range(cfg.num_res_blocks + 1):
            layers.append(ResBlock(c, ch * mult, g))
            c = ch * mult
        if level > 0:
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
    layers += [nn.GroupNorm(g, c), nn.SiLU(), nn.Conv2d(c, cfg.in_channels, 3, padding=1)]
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """ℰ and 𝒟 with the latent scale factor s: ``encode(x) = s·μ(x)``, ``decode(z) = 𝒟(z / s)``.

    ``forward(x)`` is the training pass: (𝒟(z), μ, log σ²) with z = μ + σ ε drawn from the global RNG.
    ``scale_factor`` is a plain attribute (1 until :func:`train_vae` sets it), kept in the checkpoint.
    There is no dropout or batch norm, so train and eval mode compute the same function.
    """

    def __init__(self, config: VAEConfig, scale_factor: float = 1.0):
        super().__init__()
        self.config = config
        self.scale_factor = float(scale_factor)
        self.encoder = _encoder(config)
        self.decoder = _decoder(config)

    def _check_images(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise DDLibError(f"VAE encode expects images (B, {', '.join(map(str, want))}), got {tuple(x.shape)}; "
                             f"resize the images or use a VAE made for them")
        return to_model_range(x) if x.dtype == torch.uint8 else x

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z | x), each (B, c, H/f, W/f); x float in [-1, 1] or uint8 pixels."""
        mean, logvar = self.encoder(self._check_images(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # LDM's DiagonalGaussianDistribution bounds

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.moments(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)  # reparameterisation
        return self.decoder(z), mean, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W), float in [-1, 1] or uint8 → scaled latents s·μ (B, c, H/f, W/f)."""
        return self.scale_factor * self.moments(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, c, H/f, W/f) → images 𝒟(z / s) (B, C, H, W) in model range (unclamped)."""
        want = self.config.latent_shape
        if z.dim() != 4 or tuple(z.shape[1:]) != want:
            raise DDLibError(f"VAE decode expects latents (B, {', '.join(map(str, want))}), got {tuple(z.shape)}; "
                             f"the diffusion model and the VAE do not match")
        return self.decoder(z / self.scale_factor)


def vae_fingerprint(vae: VAE) -> str:
    """A 16-hex hash of the VAE's config, scale factor and weights: the key of latent caches."""
    h = hashlib.sha256(json.dumps([vae.config.to_dict(), vae.scale_factor], sort_keys=True).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# training


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


def load_vae(run: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> VAE:
    """The VAE of a :func:`train_vae` run folder (or its checkpoint), with its scale factor, in eval mode."""
    ckpt = run_checkpoint(run)
    state = load_checkpoint(ckpt)
    if state.get("kind") != "vae":
        raise DDLibError(f"{ckpt} holds a {state.get('kind')!r} model, not a VAE; point to a train_vae run")
    if "scale_factor" not in state:
        raise DDLibError(f"{ckpt} has no latent scale factor: its training stopped early; run train_vae again to finish it")
    vae = VAE(VAEConfig(**state["vae_config"]), state["scale_factor"])
    vae.load_state_dict(state["ema" if use_ema else "model"])
    return vae.to(resolve_device(device)).eval()


# --------------------------------------------------------------------------------------------------
# reconstruction quality


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
