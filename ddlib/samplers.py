"""DDPM and DDIM sampling: one-step updates and the loops around them, as free functions.

A model is any callable ``model(x_t, t, **model_kwargs) -> ε̂`` with ``t`` an int64 tensor of shape
(B,): the UNet, a classifier-free-guidance wrapper, or a test stand-in. The samplers never know which.

Conventions (see :mod:`ddlib.schedules` for the notation):

- timesteps are 0-indexed, t ∈ {0, …, T-1}; ``t_prev = -1`` is the clean sample, with ᾱ = 1;
- ``noise=None`` draws fresh noise from ``generator``; a tensor makes a step deterministic;
- the DDPM step at t = 0 adds no noise; DDIM with η = 0 is deterministic;
- ``clip=True`` clamps the predicted x̂_0 to [-1, 1] before the update; DDIM then re-derives ε̂ from the
  clamped x̂_0 so that both of its terms describe one x_0 (see :func:`ddim_update`).

Coefficients are computed in float64 and cast to ``x_t``'s dtype, so float64 inputs give
float64-exact updates (the tests compare against closed forms at 1e-6).
"""

from __future__ import annotations

import math

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ddlib.errors import DDLibError
from ddlib.schedules import NoiseSchedule, extract

VARIANCES = ("fixed_small", "fixed_large")
SPACINGS = ("leading", "trailing", "linspace")


def _is_int(t) -> bool:
    return isinstance(t, (int, np.integer))


def _as_batch_t(t, x: torch.Tensor) -> torch.Tensor:
    """An int or 0-d/1-d tensor of timesteps as an int64 (B,) tensor on ``x``'s device."""
    if _is_int(t):  # filled on the device: no copy from host memory
        return torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    t = torch.as_tensor(t, dtype=torch.long, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def _any(condition, *, unread: bool) -> bool:
    """``condition.any()`` for a Python comparison or a CPU tensor; ``unread`` for a GPU tensor, whose values are
    not read back (that would make the host wait for the GPU at every step)."""
    if isinstance(condition, (bool, np.bool_)):
        return bool(condition)
    return bool(condition.any()) if condition.device.type == "cpu" else unread


def _noise_like(x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if noise is not None:
        if noise.shape != x.shape:
            raise DDLibError(f"noise has shape {tuple(noise.shape)} but x_t has {tuple(x.shape)}; pass matching shapes")
        return noise
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _predict_x0(s: NoiseSchedule, eps: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, clip: bool) -> torch.Tensor:
    x0 = s.predict_x0(eps, t, x_t)
    return x0.clamp(-1.0, 1.0) if clip else x0


def ddpm_update(
    s: NoiseSchedule, eps, t, x_t, noise=None, variance: str = "fixed_small", clip: bool = False, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step of DDPM (Ho et al. 2020, Algorithm 2), returning ``(x_{t-1}, x̂_0)``.

    x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, then x_{t-1} = μ̃_t(x_t, x̂_0) + σ_t z with the posterior mean
    μ̃_t of DDPM eq. 7. Variance: ``"fixed_small"`` σ_t² = β̃_t (the true posterior variance) or
    ``"fixed_large"`` σ_t² = β_t (Ho et al. §3.2). No noise is added at t = 0.
    """
    if variance not in VARIANCES:
        raise DDLibError(f"unknown DDPM variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    t_given, s, t = t, s.to(x_t.device), _as_batch_t(t, x_t)
    x0 = _predict_x0(s, eps, t, x_t, clip)
    dt = x_t.dtype
    mean = extract(s.posterior_mean_coef_x0, t, x_t.shape, dt) * x0 + extract(s.posterior_mean_coef_xt, t, x_t.shape, dt) * x_t
    var_table = s.posterior_variance if variance == "fixed_small" else s.betas
    sigma = extract(var_table, t, x_t.shape).sqrt().to(dt)  # (B, 1, 1, 1)
    nonzero = (t > 0).to(dt).reshape(sigma.shape)  # no noise at t = 0
    if _any(t_given > 0 if _is_int(t_given) else t > 0, unread=True):  # on a GPU: draw, and mask by nonzero
        mean = mean + nonzero * sigma * _noise_like(x_t, noise, generator)
    return mean, x0


def ddpm_step(s: NoiseSchedule, eps, t, x_t, noise=None, variance: str = "fixed_small", clip: bool = False, generator=None):
    """x_{t-1} from x_t and the model's ε̂ by one DDPM step; see :func:`ddpm_update`."""
    return ddpm_update(s, eps, t, x_t, noise=noise, variance=variance, clip=clip, generator=generator)[0]


def ddim_update(
    s: NoiseSchedule, eps, t, t_prev, x_t, eta: float = 0.0, noise=None, clip: bool = False, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from t to t_prev < t (Song et al. 2021, eq. 12), returning ``(x_{t_prev}, x̂_0)``.

    x_{t_prev} = √ᾱ_prev · x̂_0 + √(1 − ᾱ_prev − σ²) · ε̂ + σ z, with
    σ = η · √((1 − ᾱ_prev)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_prev) (eq. 16). η = 0 is deterministic (DDIM);
    η = 1 with t_prev = t − 1 is the DDPM posterior with σ² = β̃_t. ``t_prev = -1`` means ᾱ_prev = 1.

    Clipping. With ``clip=True`` x̂_0 is clamped to [-1, 1] and ε̂ is re-derived from the clamped x̂_0,
    ε̂' = (x_t − √ᾱ_t · clip(x̂_0)) / √(1 − ᾱ_t), so the direction term points from the same x_0 the first term
    uses. Then DDIM with η = 1 over all T steps is DDPM's ancestral step μ̃_t(x_t, clip(x̂_0)) + √β̃_t z exactly,
    with clipping as without (tested). Keeping the unclipped ε̂ instead mixes two different x_0 in one update
    and breaks that identity. Other code: the DDIM paper's released sampler (ermongroup/ddim,
    ``functions/denoising.py``: ``generalized_steps``) does not clip in DDIM at all (its ``ddpm_steps`` clamps
    x̂_0); diffusers' ``DDIMScheduler`` clamps x̂_0 by default (``clip_sample=True``) and keeps the unclipped ε̂
    unless ``step(..., use_clipped_model_output=True)``, which re-derives it "as in GLIDE" — the convention used
    here. With ``clip=False`` ε̂ is used as predicted.
    """
    if not 0 <= eta < math.inf:  # NaN fails this too
        raise DDLibError(f"eta must be >= 0 and finite (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    ints = _is_int(t) and _is_int(t_prev)
    if _any(t_prev >= t if ints else _as_batch_t(t_prev, x_t) >= _as_batch_t(t, x_t), unread=False):
        raise DDLibError("DDIM steps must go backwards in time: need t_prev < t")
    s, t, t_prev = s.to(x_t.device), _as_batch_t(t, x_t), _as_batch_t(t_prev, x_t)
    dt = x_t.dtype
    x0 = _predict_x0(s, eps, t, x_t, clip)
    bshape = (-1,) + (1,) * (x_t.dim() - 1)
    abar_t = s.alpha_bar(t).reshape(bshape)  # (B, 1, 1, 1) float64
    abar_prev = s.alpha_bar(t_prev).reshape(bshape)  # ᾱ_{-1} = 1
    if clip:  # ε̂' = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t): the noise that the clamped x̂_0 implies
        eps = (x_t - abar_t.sqrt().to(dt) * x0) / (1 - abar_t).sqrt().to(dt)
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()
    dir_coef = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
    x_prev = abar_prev.sqrt().to(dt) * x0 + dir_coef.to(dt) * eps
    if eta > 0:
        x_prev = x_prev + sigma.to(dt) * _noise_like(x_t, noise, generator)
    return x_prev, x0


def ddim_step(s: NoiseSchedule, eps, t, t_prev, x_t, eta: float = 0.0, noise=None, clip: bool = False, generator=None):
    """x_{t_prev} from x_t and the model's ε̂ by one DDIM step; see :func:`ddim_update`."""
    return ddim_update(s, eps, t, t_prev, x_t, eta=eta, noise=noise, clip=clip, generator=generator)[0]


def ddim_timesteps(num_train_timesteps: int, num_steps: int = 50, spacing: str = "leading") -> list[int]:
    """The S timesteps a DDIM sampler visits, descending (0-indexed; the step after the last goes to -1).

    - ``"leading"``: 0, k, 2k, … with k = T // S (DDIM paper, diffusers' default)
    - ``"trailing"``: round(T − i·T/S) − 1, so the first step starts at T − 1 (Lin et al. 2024)
    - ``"linspace"``: S points rounded from linspace(0, T − 1) (both ends included)
    """
    T = num_train_timesteps
    if not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= T:
        raise DDLibError(f"num_steps must be an integer in 1..{T} (the schedule's T), got {num_steps!r}")
    if spacing == "leading":
        ts = np.arange(num_steps) * (T // num_steps)
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, num_steps)).astype(np.int64)
    else:
        raise DDLibError(f"unknown DDIM spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return sorted({int(v) for v in ts}, reverse=True)


def _model_device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _sample_loop(model, shape, pairs, update, x_T, generator, device, dtype, progress, callback, desc, model_kwargs):
    """Shared loop: start from x_T ~ N(0, I), call ``update(eps, t, t_prev, x)`` for each (t, t_prev)."""
    device = torch.device(device) if device is not None else _model_device(model)
    if x_T is None:
        x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    else:
        if tuple(x_T.shape) != tuple(shape):
            raise DDLibError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)}; pass matching shapes")
        x = x_T.to(device=device, dtype=dtype)
    for i, (t, t_prev) in enumerate(tqdm(pairs, desc=desc, disable=not progress, leave=False)):
        with torch.no_grad():
            eps = model(x, _as_batch_t(t, x), **model_kwargs).to(dtype)
        x, x0 = update(eps, t, t_prev, x)  # Python ints: the update's checks read no GPU values
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "x": x, "x0": x0})
    return x


def ddpm_sample(
    model: Callable,
    s: NoiseSchedule,
    shape,
    variance: str = "fixed_small",
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    clip: bool = False,
    x_T: torch.Tensor | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    **model_kwargs,
) -> torch.Tensor:
    """Ancestral sampling through all T steps (DDPM Algorithm 2); returns x_0 (nominally in [-1, 1]).

    ``callback`` receives ``{"i", "t", "t_prev", "x", "x0"}`` after each step: the new x_{t-1} and
    the prediction x̂_0 it was made from (the notebooks draw denoising trajectories with it).
    ``model_kwargs`` (class labels, guidance options) go to every model call untouched.
    """
    if variance not in VARIANCES:
        raise DDLibError(f"unknown DDPM variance {variance!r}; choose one of {', '.join(VARIANCES)}")
    T = len(s)
    pairs = [(t, t - 1) for t in range(T - 1, -1, -1)]

    def update(eps, t, t_prev, x):
        return ddpm_update(s, eps, t, x, variance=variance, clip=clip, generator=generator)

    return _sample_loop(model, shape, pairs, update, x_T, generator, device, dtype, progress, callback, "DDPM", model_kwargs)


def ddim_sample(
    model: Callable,
    s: NoiseSchedule,
    shape,
    num_steps: int = 50,
    eta: float = 0.0,
    spacing: str = "leading",
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    clip: bool = False,
    x_T: torch.Tensor | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    **model_kwargs,
) -> torch.Tensor:
    """DDIM sampling with ``num_steps`` steps at the given ``spacing`` (Song et al. 2021).

    η = 0 is deterministic given x_T; η = 1 with all T steps is DDPM ancestral sampling with β̃_t.
    Arguments as :func:`ddpm_sample`.
    """
    if not 0 <= eta < math.inf:  # NaN fails this too
        raise DDLibError(f"eta must be >= 0 and finite (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    ts = ddim_timesteps(len(s), num_steps, spacing)
    pairs = list(zip(ts, ts[1:] + [-1]))

    def update(eps, t, t_prev, x):
        return ddim_update(s, eps, t, t_prev, x, eta=eta, clip=clip, generator=generator)

    return _sample_loop(model, shape, pairs, update, x_T, generator, device, dtype, progress, callback, f"DDIM-{len(ts)}", model_kwargs)
