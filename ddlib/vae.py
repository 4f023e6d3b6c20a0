"""The KL autoencoder of latent diffusion (Rombach et al. 2022, "kl-f4"): encoder, decoder, scale factor.

Notation (LDM §3, appendix G). The encoder ℰ maps an image x ∈ [-1, 1]^{3×H×W} to the mean μ and
log-variance log σ² of a diagonal Gaussian q(z | x) = N(μ, σ²) over latents of shape c × H/f × W/f,
f = 2^(levels − 1) the downsampling factor; the decoder 𝒟 maps a latent back to pixels. Training
(:mod:`ddlib.train_vae`) minimises, per image,

    L = ‖x − 𝒟(z)‖  +  w_KL · KL(q(z | x) ‖ N(0, I)),   z = μ + σ ⊙ ε,
    KL = ½ Σ (μ² + σ² − 1 − log σ²),

with ‖·‖ the L1 or squared-L2 distance summed over the D = 3·H·W pixel values (LDM uses L1 plus a
perceptual and an adversarial term, which are left out here) and w_KL = 1e-6 as in LDM. The code
divides L by D (a mean over pixel values), which changes nothing but the loss's scale.

The diffusion model works on z = s · μ (the posterior mean: with w_KL = 1e-6, σ is tiny and LDM's
sample z ~ q differs from μ by far less than the decoder can resolve). The scale factor
s = 1 / std(μ) is computed once after training on a fixed subset of the training images, so the
latents the diffusion model sees have unit variance (LDM §4.3.2 and its ``scale_by_std``;
:func:`ddlib.latent.latent_scale_factor`); :meth:`VAE.encode` multiplies by s and :meth:`VAE.decode` divides by it.

Architecture: LDM's Encoder/Decoder — per level ``num_res_blocks`` residual blocks (GroupNorm → SiLU →
conv, twice), stride-2 convolutions down and nearest-neighbour + conv up, res-attn-res in the middle —
without the 1×1 ``quant_conv``/``post_quant_conv`` (folded into the encoder's and decoder's convs).

The latent data path (encoding a data set, training and loading a latent diffusion model) is in
:mod:`ddlib.latent`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ddlib import distributed
from ddlib.checkpoint import load_checkpoint, run_checkpoint
from ddlib.config import from_preset
from ddlib.data import to_model_range
from ddlib.device import resolve_device
from ddlib.errors import DDLibError
from ddlib.unet import AttnBlock


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
    ``scale_factor`` is a plain attribute (1 until :func:`ddlib.train_vae.train_vae` sets it), kept in the checkpoint.
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
        z = mean + torch.exp(0.5 * logvar) * distributed.randn_like(mean)  # reparameterisation
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


def load_vae(run: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> VAE:
    """The VAE of a :func:`ddlib.train_vae.train_vae` run folder (or its checkpoint), with its scale factor, in eval mode."""
    ckpt = run_checkpoint(run)
    state = load_checkpoint(ckpt)
    if state.get("kind") != "vae":
        raise DDLibError(f"{ckpt} holds a {state.get('kind')!r} model, not a VAE; point to a train_vae run")
    if "scale_factor" not in state:
        raise DDLibError(f"{ckpt} has no latent scale factor: its training stopped early; run train_vae again to finish it")
    vae = VAE(VAEConfig(**state["vae_config"]), state["scale_factor"])
    vae.load_state_dict(state["ema" if use_ema else "model"])
    return vae.to(resolve_device(device)).eval()


