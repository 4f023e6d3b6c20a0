"""Noise schedules and the forward process q(x_t | x_0).

Notation (Ho et al. 2020, DDPM; 0-indexed here):

==========================  ==========================================================
``betas[t]``                β_t, the variance added at step t, t ∈ {0, …, T-1}
``alphas[t]``               α_t = 1 − β_t
``alphas_cumprod[t]``       ᾱ_t = ∏_{s ≤ t} α_s  (so ᾱ_0 = α_0 < 1)
``alphas_cumprod_prev[t]``  ᾱ_{t-1}, with ᾱ_{-1} = 1 (the clean sample)
``snr[t]``                  SNR(t) = ᾱ_t / (1 − ᾱ_t)  (Kingma et al. 2021)
==========================  ==========================================================

The forward process (DDPM eq. 4) is x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε with ε ~ N(0, I).
A schedule holds only precomputed float64 tensors; coefficients are cast to the input's dtype and
device when used, so sampling in float32 or bfloat16 never accumulates error in the schedule itself.
"""

from __future__ import annotations

import math

import torch

from ddlib.errors import DDLibError

SCHEDULES = ("linear", "cosine", "seed-cosine", "seed-cosine-floored")


def extract(a: torch.Tensor, t: torch.Tensor, x_shape: torch.Size | tuple[int, ...], dtype=None) -> torch.Tensor:
    """Gather ``a[t]`` for a batch of timesteps and shape it to broadcast against ``x``: (B,) → (B, 1, …, 1).

    ``t`` is an int64 tensor of shape (B,) (or a 0-d tensor / int, broadcast to every sample).
    The result lives on ``t``'s device with ``dtype`` (default: ``a``'s dtype).
    """
    t = torch.as_tensor(t)
    out = a.to(t.device)[t.long()]  # (B,) or ()
    if dtype is not None:
        out = out.to(dtype)
    return out.reshape(out.shape + (1,) * (len(x_shape) - out.dim()))


class NoiseSchedule:
    """Precomputed β_t and everything derived from it (float64 tensors of shape (T,)).

    Build one with :func:`make_schedule`. ``name`` and ``params`` record how it was made.
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom", params: dict | None = None):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or len(betas) < 1:
            raise DDLibError(f"betas must be a 1-d tensor with at least one step, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise DDLibError("every beta must lie in (0, 1]; check the schedule's parameters")
        self.name = name
        self.params = dict(params or {})
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # Posterior q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I), DDPM eqs. 6–7:
        #   β̃_t = (1 − ᾱ_{t-1}) / (1 − ᾱ_t) · β_t
        #   μ̃_t = √ᾱ_{t-1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t) · x_t
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = (1.0 - self.alphas_cumprod_prev) / one_minus * betas
        self.posterior_mean_coef_x0 = self.alphas_cumprod_prev.sqrt() * betas / one_minus
        self.posterior_mean_coef_xt = self.alphas.sqrt() * (1.0 - self.alphas_cumprod_prev) / one_minus
        self._alpha_bar_padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])  # ᾱ_{-1} = 1
        self._copies: dict[torch.device, NoiseSchedule] = {}

    def to(self, device: str | torch.device) -> NoiseSchedule:
        """This schedule with its tables on ``device``, made once per device and then reused.

        Samplers and the training loss move the schedule once, so that a step on a GPU gathers from tables
        already there instead of copying them from host memory, which would make the host wait for the GPU.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.betas.device == device:
            return self
        if device not in self._copies:
            moved = object.__new__(NoiseSchedule)
            moved.__dict__.update({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()})
            moved._copies = {self.betas.device: self}
            self._copies[device] = moved
        return self._copies[device]

    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    def __len__(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"NoiseSchedule({self.name!r}, T={len(self)}{', ' + params if params else ''})"

    @property
    def snr(self) -> torch.Tensor:
        """SNR(t) = ᾱ_t / (1 − ᾱ_t), float64 (T,)."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ_t with the convention ᾱ_{-1} = 1 (float64, same shape as ``t``)."""
        t = torch.as_tensor(t, dtype=torch.long)
        return self._alpha_bar_padded.to(t.device)[t + 1]

    def check_timesteps(self, t: torch.Tensor) -> None:
        """int64, non-empty, within 0..T-1. The range is checked on the CPU only: reading a GPU tensor's values
        would make the host wait for the GPU every step (an out-of-range index there fails in the gather)."""
        if t.dtype not in (torch.int64, torch.int32) or t.numel() == 0:
            raise DDLibError(f"timesteps must be a non-empty int64 tensor, got {t.dtype} with {t.numel()} elements")
        if t.device.type != "cpu":
            return
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= len(self):
            raise DDLibError(f"timesteps must lie in 0..{len(self) - 1} for this schedule, got {lo}..{hi}")

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε (DDPM eq. 4). ``t``: int64 (B,)."""
        t = torch.as_tensor(t, device=x0.device)
        self.check_timesteps(t)
        abar = extract(self.alphas_cumprod, t, x0.shape)  # (B, 1, 1, 1) float64
        return (abar.sqrt().to(x0.dtype) * x0 + (1.0 - abar).sqrt().to(x0.dtype) * noise).to(x0.dtype)

    def predict_x0(self, eps: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Invert the forward process for x_0 given ε: x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (DDPM eq. 15)."""
        abar = extract(self.alphas_cumprod, torch.as_tensor(t, device=x_t.device), x_t.shape)
        return ((x_t - (1.0 - abar).sqrt().to(x_t.dtype) * eps) / abar.sqrt().to(x_t.dtype)).to(x_t.dtype)


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al. 2020, §4: 1e-4 → 0.02, T = 1000)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def cosine_betas(num_train_timesteps: int, s: float, max_beta: float) -> torch.Tensor:
    """Nichol & Dhariwal (2021), eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2).

    With 0-indexed steps, ᾱ_t = ᾱ(t + 1) and β_t = 1 − ᾱ(t+1)/ᾱ(t), clipped at ``max_beta`` (0.999)
    so the last steps stay invertible.
    """
    T = num_train_timesteps
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def seed_cosine_betas(num_train_timesteps: int, eps: float, max_beta: float) -> torch.Tensor:
    """The seed report's "adjusted" cosine formula read literally (its §V.C, "Adjusted Formula for Numerical
    Stability").

    The seed writes ᾱ_t = cos²(π/2 · t/T) / (cos²(π/2 · (t−1)/T) + ε). A ratio of consecutive cos² terms is a
    per-step α_t, not a cumulative ᾱ_t (without ε it is exactly its own α_t = ᾱ_t/ᾱ_{t−1} for ᾱ_t = cos²(π/2·t/T)),
    so the ᾱ label is a slip and the formula defines

        β_t = 1 − cos²(π/2 · t/T) / (cos²(π/2 · (t−1)/T) + ε),   t = 1 … T,

    stored at 0-based index t − 1 and clipped at ``max_beta``. The ε in the denominator makes every α_t a little
    smaller than the cos² ratio, and the deficit compounds: ᾱ falls well below cos²(π/2·t/T) in the last tenth
    (≈ 8e-15 at t = T with T = 1000 and the 0.999 clip). Without the clip (``max_beta=1``), β_T = 1 because
    cos²(π/2) = 0: ᾱ_T = 0, zero terminal SNR, and x̂_0 = (x_T − √(1−ᾱ_T) ε̂)/√ᾱ_T is undefined at the last step.
    """
    T = num_train_timesteps
    steps = torch.arange(T + 1, dtype=torch.float64)
    c = torch.cos(math.pi / 2 * steps / T) ** 2  # c[t] = cos²(π/2 · t/T), t = 0 … T
    c[-1] = 0.0  # cos(π/2) is 6e-17 in floating point; the formula means 0
    return (1 - c[1:] / (c[:-1] + eps)).clamp(max=max_beta)


def seed_cosine_floored_betas(num_train_timesteps: int, eps: float) -> torch.Tensor:
    """The seed report's first cosine formula, ᾱ_t = cos²(π/2 · t/T), kept away from 0 by a floor ε.

    With 0-indexed steps: ᾱ_t = (1 − ε) · cos²(π/2 · (t + 1)/T) + ε, so ᾱ falls from ≈ 1 to exactly ε at the last
    step. This is not what the seed's "adjusted" formula says (see :func:`seed_cosine_betas`); it is almost
    Nichol & Dhariwal's cosine without the offset s (β_0 ≈ π²/(4T²) is tiny) and without a cap on β.
    """
    T = num_train_timesteps
    steps = torch.arange(T + 1, dtype=torch.float64)
    abar = (1 - eps) * torch.cos(math.pi / 2 * steps / T) ** 2 + eps  # abar[0] = 1, i.e. ᾱ_{-1}
    return 1 - abar[1:] / abar[:-1]


def make_schedule(kind: str = "linear", num_train_timesteps: int = 1000, **params) -> NoiseSchedule:
    """Build a named schedule.

    - ``"linear"``: ``beta_start=1e-4, beta_end=0.02`` (Ho et al.; the seed report used 2e-4 → 0.02)
    - ``"cosine"``: ``s=0.008, max_beta=0.999`` (Nichol & Dhariwal 2021)
    - ``"seed-cosine"``: ``eps=1e-4, max_beta=0.999``, the seed report's adjusted formula read literally as
      β_t = 1 − cos²(π/2·t/T) / (cos²(π/2·(t−1)/T) + ε) (see :func:`seed_cosine_betas`)
    - ``"seed-cosine-floored"``: ``eps=1e-4``, ᾱ_t = (1 − ε) cos²(π/2·(t+1)/T) + ε, the seed's unadjusted cos²
      kept above ε (see :func:`seed_cosine_floored_betas`)
    """
    defaults = {
        "linear": {"beta_start": 1e-4, "beta_end": 0.02},
        "cosine": {"s": 0.008, "max_beta": 0.999},
        "seed-cosine": {"eps": 1e-4, "max_beta": 0.999},
        "seed-cosine-floored": {"eps": 1e-4},
    }
    if kind not in defaults:
        raise DDLibError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise DDLibError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps!r}")
    unknown = set(params) - set(defaults[kind])
    if unknown:
        raise DDLibError(
            f"schedule {kind!r} takes {', '.join(defaults[kind])}, not {', '.join(sorted(unknown))}"
        )
    p = {**defaults[kind], **params}
    if kind == "linear":
        if not 0 < p["beta_start"] <= p["beta_end"] < 1:
            raise DDLibError(f"linear schedule needs 0 < beta_start <= beta_end < 1, got {p['beta_start']}, {p['beta_end']}")
        betas = linear_betas(num_train_timesteps, p["beta_start"], p["beta_end"])
    elif kind == "cosine":
        if not (p["s"] >= 0 and 0 < p["max_beta"] <= 1):
            raise DDLibError(f"cosine schedule needs s >= 0 and 0 < max_beta <= 1, got s={p['s']}, max_beta={p['max_beta']}")
        betas = cosine_betas(num_train_timesteps, p["s"], p["max_beta"])
    elif kind == "seed-cosine":
        if not (0 < p["eps"] < 1 and 0 < p["max_beta"] <= 1):
            raise DDLibError(f"seed-cosine schedule needs 0 < eps < 1 and 0 < max_beta <= 1, got eps={p['eps']}, "
                             f"max_beta={p['max_beta']}")
        betas = seed_cosine_betas(num_train_timesteps, p["eps"], p["max_beta"])
    else:
        if not 0 < p["eps"] < 1:
            raise DDLibError(f"seed-cosine-floored schedule needs 0 < eps < 1, got {p['eps']}")
        betas = seed_cosine_floored_betas(num_train_timesteps, p["eps"])
    return NoiseSchedule(betas, name=kind, params={"num_train_timesteps": num_train_timesteps, **p})
