# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python (ddlib)
#     language: python
#     name: ddlib
# ---

# %% [markdown]
# # 4. Noise schedules: linear against cosine
#
# The schedule decides how fast signal is destroyed, and so which noise levels the model practices on. Nichol &
# Dhariwal (2021) observed that with the linear schedule the last part of the forward process is nearly pure noise and
# contributes little, and proposed a cosine schedule. The seed report used its own cosine formula; this notebook
# compares all three at **equal training steps**, with everything else identical.

# %% tags=["parameters"]
profile = "quick"          # the profile these values come from (papermill passes the real one)
reports_dir = "reports"    # outputs go to <reports_dir>/<profile>/ (relative to the repository root)
cache_dir = None           # checkpoints and cached metrics; None: .cache/ddlib/report
device = "auto"            # "auto": CUDA if available, else CPU
torch_threads = None       # None: PyTorch's default
# the CIFAR-10 model shared by notebooks 01, 02 and 04 (equal values: one cached run)
dataset = "cifar10:train"
data_limit = None
preset = "tiny"
unet_overrides = {}
timesteps = 1000
beta_start = 0.0001
beta_end = 0.02
train_steps = 800
batch_size = 32
lr = 0.0005
warmup_steps = 100
ema_decay = 0.995
train_seed = 0
# sampling: clamp x̂_0 to [-1, 1] at every step (Ho et al.'s released sampler does); FID/KID reference and batch
clip_denoised = True
fid_reference = "cifar10:test"
fid_reference_count = None
sample_batch = 64
schedules = ['linear', 'cosine', 'seed-cosine']
schedule_train_steps = None      # None: the same steps as notebook 01 (its linear run is reused)
schedule_fid_samples = 64
schedule_ddim_steps = 100
schedule_grid_samples = 8

# %%
from ddlib.lab import context, experiments, figures

ctx = context.start(profile, "04_cosine_schedule", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
config = experiments.diffusion_config(
    dataset=dataset, data_limit=data_limit, preset=preset, unet=unet_overrides, schedule="linear",
    schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end), timesteps=timesteps,
    steps=train_steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
print(f"profile {profile} on {ctx.hardware}; outputs in {ctx.out}")
configs = experiments.schedule_configs(
    schedules, beta_start=beta_start, beta_end=beta_end, dataset=dataset, data_limit=data_limit, preset=preset,
    unet=unet_overrides, timesteps=timesteps, steps=schedule_train_steps or train_steps, batch_size=batch_size, lr=lr,
    warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)

# %% [markdown]
# ## Three schedules
#
# * **linear** (Ho et al.): $\beta_t$ from $\beta_1$ to $\beta_T$ evenly; $\bar\alpha_t = \prod_s (1-\beta_s)$.
# * **cosine** (Nichol & Dhariwal 2021, eq. 17): define $\bar\alpha$ directly,
#   $$\bar\alpha_t = \frac{f(t)}{f(0)},\qquad f(t) = \cos^2\!\Big(\frac{t/T + \delta}{1+\delta}\cdot\frac{\pi}{2}\Big),\qquad \delta = 0.008,$$
#   with $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$ clipped at 0.999 so the last steps stay invertible. The offset
#   $\delta$ (the paper's and the code's `s`; here $s$ is reserved for the guidance scale) keeps $\beta$ from being
#   vanishingly small near $t = 0$.
# * **seed-cosine** (the seed report's "adjusted" formula, read literally): the seed writes
#   $\bar\alpha_t = \cos^2(\tfrac{\pi}{2}\,t/T) / (\cos^2(\tfrac{\pi}{2}\,(t-1)/T) + \epsilon)$, but a ratio of
#   consecutive terms is a per-step $\alpha_t$, not a cumulative $\bar\alpha_t$, so it defines
#   $$\beta_t = 1 - \frac{\cos^2(\tfrac{\pi}{2}\,t/T)}{\cos^2(\tfrac{\pi}{2}\,(t-1)/T) + \epsilon},\qquad t = 1,\dots,T,\qquad \epsilon = 10^{-4}.$$
#   The $\epsilon$ makes every $\alpha_t$ slightly smaller than the $\cos^2$ ratio and the deficit compounds, so
#   $\bar\alpha$ falls far below $\cos^2$ in the last tenth. At $t = T$, $\cos^2(\pi/2) = 0$ gives $\beta_T = 1$:
#   $\bar\alpha_T = 0$, zero terminal SNR, and $\hat x_0 = (x_T - \sqrt{1-\bar\alpha_T}\,\hat\varepsilon)/\sqrt{\bar\alpha_T}$ is
#   undefined there; like Nichol & Dhariwal we clip $\beta$ at 0.999.
# * **seed-cosine-floored** (an earlier reading of the seed): $\bar\alpha_t = (1-\epsilon)\cos^2(\tfrac{\pi}{2}\,t/T) + \epsilon$,
#   the unadjusted $\cos^2$ kept above $\epsilon$ — almost the cosine schedule without its offset $s$.
#
# **What cosine changes in SNR.** $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$; for the cosine schedule
# $\mathrm{SNR}(t) = \cot^2\!\big(\tfrac{\pi}{2}\tfrac{t/T+\delta}{1+\delta}\big)$, whose logarithm is close to linear in $t$ over
# the middle, so noise levels are visited evenly; the linear schedule's $\log\mathrm{SNR}$ falls fast and then lingers
# near pure noise. The figure shows every reading; the models below are trained for the profile's `schedules` only.
# The cosine $\bar\alpha$ and the seed's literal $\beta_t$ in the paper's symbols, against `make_schedule`:

# %%
from ddlib.schedules import SCHEDULES, make_schedule

curves = {k: make_schedule(k, timesteps, **experiments.schedule_params_for(k, beta_start, beta_end)) for k in SCHEDULES}
figures.show(figures.plot_schedules(curves, ctx.figure("schedules_alpha_snr", f"ᾱ_t and log₁₀ SNR(t) of the linear, "
            f"cosine (Nichol & Dhariwal eq. 17), seed-cosine (the seed's formula read literally, β clipped at 0.999) "
            f"and seed-cosine-floored schedules, T = {timesteps}.")))

# %%
import math

import torch

T, delta = timesteps, 0.008
steps = torch.arange(T + 1, dtype=torch.float64)
f = torch.cos((steps / T + delta) / (1 + delta) * math.pi / 2) ** 2        # f(t), t = 0 … T
abar = f[1:] / f[0]                                                         # ᾱ_t = f(t)/f(0), t = 1 … T
betas = (1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])).clamp(max=0.999)
assert torch.allclose(torch.cumprod(1 - betas, 0), make_schedule("cosine", T).alphas_cumprod)
c = torch.cos(math.pi / 2 * steps / T) ** 2
c[-1] = 0.0                                                                 # cos(π/2) = 0
seed_betas = (1 - c[1:] / (c[:-1] + 1e-4)).clamp(max=0.999)                 # β_t = 1 − c(t)/(c(t−1) + ε)
assert torch.allclose(seed_betas, make_schedule("seed-cosine", T).betas)
for k, s_ in curves.items():
    print(f"{k:20s} ᾱ_t < 0.01 for {float((s_.alphas_cumprod < 0.01).double().mean()):.0%} of the steps")

# %% [markdown]
# ## Training at equal steps
#
# Each schedule trains the same network from the same initial weights on the same batches for the same number of
# steps. Note that the loss values are **not directly comparable** across schedules: the loss at a given $t$ depends on
# how noisy $x_t$ is, and the schedules visit different noise levels. Predicting $\varepsilon$ is hardest at *low* noise
# (the noise is a small part of $x_t$ and must be told apart from image detail) and trivial near pure noise, where
# $x_t \approx \varepsilon$. The linear schedule's lower mean loss comes from its many near-pure-noise steps (the share of
# steps with $\bar\alpha_t < 0.01$ is printed above: about a third for linear at $T = 1000$, a few per cent for cosine),
# where the loss is close to 0. Compare the samples and FID/KID instead.

# %%
runs = {name: ctx.train(cfg) for name, cfg in configs.items()}
figures.show(figures.plot_loss_curves({name: run.log() for name, run in runs.items()}, ctx.figure("loss_schedules",
            "Training loss per schedule at equal steps (same data order, same initial weights)."),
            title="training loss by schedule"))

# %% [markdown]
# ## Quality at equal training steps

# %%
rows = experiments.schedule_comparison(ctx, runs, n=schedule_fid_samples, ddim_steps=min(schedule_ddim_steps, timesteps),
                                       reference=fid_reference, reference_count=fid_reference_count, batch_size=sample_batch,
                                       clip=clip_denoised)
ctx.table("schedules", rows, "Linear, cosine and seed-cosine schedules at equal training steps",
          columns=["schedule", "train_steps", "alpha_bar_last", "log10_snr_mid", "final_loss", "sampler", "fid", "kid",
                   "kid_std"])

# %%
grids = [experiments.sample_grid(ctx, run, n=schedule_grid_samples, pool=schedule_fid_samples, sampler="ddim",
                                 num_steps=min(schedule_ddim_steps, timesteps), batch_size=sample_batch,
                                 clip=clip_denoised)
         for run in runs.values()]
figures.show(figures.save_image_rows(grids, ctx.figure("samples_schedules", "DDIM samples (same initial noise) of the "
            "models trained with each schedule (rows)."), row_labels=list(runs)))

# %% [markdown]
# ## Sanity checks

# %%
import math

assert all(math.isfinite(r["loss"]) for run in runs.values() for r in run.log()), "losses must be finite"
assert all(math.isfinite(r["fid"]) for r in rows) and len(rows) == len(schedules)
assert not context.check_outputs(ctx.out, "04_cosine_schedule"), context.check_outputs(ctx.out, "04_cosine_schedule")
print("04: all checks passed")
