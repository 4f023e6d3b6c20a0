"""The ε-prediction UNet of Ho et al. (2020), with optional class conditioning for guidance.

Architecture (DDPM appendix B, after PixelCNN++): a sinusoidal timestep embedding and a 2-layer MLP;
at each resolution level ``num_res_blocks`` residual blocks (GroupNorm → SiLU → conv, the timestep
embedding added in between, dropout before the second conv), self-attention at the chosen levels,
stride-2 convolutions down and nearest-neighbour + conv up, skip connections from every block on
the way down to the way up (``num_res_blocks + 1`` blocks per level up), and res-attn-res in the
middle. Class conditioning adds a learned class embedding to the timestep embedding; index
``num_classes`` is the "null" class that classifier-free guidance trains and samples with.

Levels are numbered from 0 at full resolution: with ``image_size=32`` and four levels they are
32, 16, 8, 4 pixels, so "attention at 16×16" is ``attention_levels=(1,)``.

Two fields change the arithmetic, not the shapes: ``downsample_padding`` ("symmetric": one pixel on
every side of the stride-2 convolution, or "tf_same": TensorFlow's "SAME" at stride 2, none before and one
after, as in Ho et al.'s code) and ``norm_eps`` (the ε in every GroupNorm's √(σ² + ε); torch's default
1e-5, Ho et al.'s code 1e-6). Their defaults are what ddlib computed before they existed;
``ho-cifar10`` sets both to the original's (the function of diffusers' ``google/ddpm-cifar10-32``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ddlib.config import from_preset
from ddlib.distributed import ShardDropout
from ddlib.errors import DDLibError


DOWNSAMPLE_PADDINGS = ("symmetric", "tf_same")


@dataclass(frozen=True)
class UNetConfig:
    image_size: int = 32
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (1,)
    dropout: float = 0.1
    num_heads: int = 1
    norm_groups: int = 32
    num_classes: int | None = None  # None: unconditional; k: labels 0..k-1 plus the null class k
    downsample_padding: str = "symmetric"  # "symmetric" | "tf_same" (0 before, 1 after, as TF's "SAME")
    norm_eps: float = 1e-5  # ε of every GroupNorm

    def __post_init__(self):
        # accept lists (from JSON or papermill) but store tuples so the config stays hashable
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        levels = len(self.channel_mult)
        if self.image_size % 2 ** (levels - 1):
            raise DDLibError(f"image_size {self.image_size} must be divisible by 2^{levels - 1} for {levels} levels")
        bad = [lv for lv in self.attention_levels if not 0 <= lv < levels]
        if bad:
            raise DDLibError(f"attention_levels {bad} out of range: levels are 0..{levels - 1}")
        widths = {self.base_channels * m for m in self.channel_mult}
        if any(w % self.norm_groups for w in widths) or any(w % self.num_heads for w in widths):
            raise DDLibError(f"every width {sorted(widths)} must be divisible by norm_groups={self.norm_groups} and num_heads={self.num_heads}")
        if self.downsample_padding not in DOWNSAMPLE_PADDINGS:
            raise DDLibError(f"unknown downsample_padding {self.downsample_padding!r}; choose one of {', '.join(DOWNSAMPLE_PADDINGS)}")
        if not self.norm_eps > 0:
            raise DDLibError(f"norm_eps must be > 0, got {self.norm_eps}")
        if self.num_classes is not None and self.num_classes < 1:
            raise DDLibError(f"num_classes must be None (unconditional) or >= 1, got {self.num_classes}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, UNetConfig] = {
    # Ho et al. 2020, CIFAR-10: 35.7M parameters; with TF "SAME" downsampling and GroupNorm ε = 1e-6 it computes
    # what diffusers' google/ddpm-cifar10-32 computes (tests/test_convert.py compares them)
    "ho-cifar10": UNetConfig(downsample_padding="tf_same", norm_eps=1e-6),
    # the seed report's Table III: ch 64, mult 1,2,4,4, 3 res blocks, attention at levels 2 and 3
    "seed-cifar10": UNetConfig(base_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=3, attention_levels=(2, 3)),
    # the seed report's latent model (Tables IV/V): 4-channel 32×32 latents of 128×128 images
    "seed-latent": UNetConfig(
        image_size=32, in_channels=4, base_channels=128, channel_mult=(1, 2, 2, 4, 4), attention_levels=(1, 2, 3, 4)
    ),
    # CPU-sized models for the quick profile and for tests
    "small": UNetConfig(base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_levels=(1,), dropout=0.1),
    "tiny": UNetConfig(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(1,), dropout=0.0, norm_groups=8),
    "test": UNetConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), dropout=0.0, norm_groups=4),
}


def preset_config(name: str, **overrides) -> UNetConfig:
    """The named preset's config with fields replaced by ``overrides`` (e.g. ``image_size=64``)."""
    return from_preset(PRESETS, name, "UNet", **overrides)


NUMERICS = ("downsample_padding", "norm_eps")  # fields that change the arithmetic, not the shapes


def changed_numerics(preset: str, overrides: dict) -> dict:
    """The arithmetic fields (``downsample_padding``, ``norm_eps``) that ``preset`` with ``overrides`` sets away
    from their defaults; {} when it computes what ddlib computed before those fields existed.

    Run caches and checkpoints add this to the hash of a training config, so runs of ``ho-cifar10`` made
    before it matched the original network are not reused, while every other preset's hash is unchanged.
    """
    base = PRESETS.get(preset, UNetConfig())
    defaults = UNetConfig()
    return {f: overrides.get(f, getattr(base, f)) for f in NUMERICS
            if overrides.get(f, getattr(base, f)) != getattr(defaults, f)}


def unet_from_preset(name: str, **overrides) -> "UNet":
    """Build the UNet of a named preset (see :data:`PRESETS`), with config fields overridden."""
    return UNet(preset_config(name, **overrides))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps → (B, dim): [sin(t·ω_k), cos(t·ω_k)], ω_k = max_period^(−k/(dim/2 − 1)).

    As in Ho et al.'s code (after Vaswani et al. 2017). Computed in float32 whatever the model's dtype (the
    UNet casts it), as Ho et al.'s code and diffusers do, so a float64 model computes the same function.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float, groups: int, eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.dropout = ShardDropout(dropout)  # nn.Dropout; under torchrun its masks are drawn for the global batch
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Multi-head self-attention over the H·W positions, through ``scaled_dot_product_attention``."""

    def __init__(self, channels: int, num_heads: int, groups: int, eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        # each (B, heads, HW, C/heads), made contiguous: the fused attention kernels need a unit last stride
        q, k, v = (u.contiguous() for u in qkv.transpose(-1, -2).unbind(1))
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """A stride-2 3×3 convolution; ``padding`` "symmetric" pads one pixel on every side, "tf_same" none on the
    top/left and one on the bottom/right (TensorFlow's "SAME" for an even size at stride 2)."""

    def __init__(self, channels: int, padding: str = "symmetric"):
        super().__init__()
        self.pad = (0, 1, 0, 1) if padding == "tf_same" else None  # F.pad order: left, right, top, bottom
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if self.pad else 1)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad) if self.pad else x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """ε_θ(x_t, t[, y]): ``forward(x, t, y=None)`` with x (B, C, H, W), t int64 (B,), y int64 (B,) or None.

    For a class-conditional model (``config.num_classes`` set), ``y=None`` means the null class
    (unconditional); labels must lie in 0..num_classes (num_classes itself is the null class).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch, g, eps = cfg.base_channels, cfg.norm_groups, cfg.norm_eps
        temb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, temb_dim) if cfg.num_classes is not None else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips, c = [ch], ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(c, ch * mult, temb_dim, cfg.dropout, g, eps)]
                c = ch * mult
                if level in cfg.attention_levels:
                    blocks.append(AttnBlock(c, cfg.num_heads, g, eps))
                self.down.append(nn.ModuleList(blocks))
                skips.append(c)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(c, cfg.downsample_padding)]))
                skips.append(c)

        self.mid = nn.ModuleList([ResBlock(c, c, temb_dim, cfg.dropout, g, eps), AttnBlock(c, cfg.num_heads, g, eps),
                                  ResBlock(c, c, temb_dim, cfg.dropout, g, eps)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(c + skips.pop(), ch * mult, temb_dim, cfg.dropout, g, eps)]
                c = ch * mult
                if level in cfg.attention_levels:
                    blocks.append(AttnBlock(c, cfg.num_heads, g, eps))
                self.up.append(nn.ModuleList(blocks))
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(c)]))

        self.norm_out = nn.GroupNorm(g, c, eps=eps)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels or x.shape[-1] != cfg.image_size or x.shape[-2] != cfg.image_size:
            raise DDLibError(
                f"UNet expects input (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}"
            )
        emb = timestep_embedding(t, cfg.base_channels).to(self.conv_in.weight.dtype)  # (B, ch) in the model's dtype
        temb = self.time_mlp(emb)  # (B, 4ch)
        if self.class_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), cfg.num_classes, device=x.device, dtype=torch.long)
            temb = temb + self.class_emb(y)
        elif y is not None:
            raise DDLibError("this UNet is unconditional (num_classes=None) but class labels y were given")
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, temb)
            hs.append(h)
        h = self._run(self.mid, h, temb)
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(blocks, h, temb)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
