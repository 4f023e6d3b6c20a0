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
# # 1. DDPM on CIFAR-10
#
# A denoising diffusion probabilistic model (Ho, Jain & Abbeel 2020) learns to undo a fixed process that
# slowly drowns an image in Gaussian noise. This notebook walks through the four pieces: the **forward
# process**, the **noise schedule**, **training** with the simple ε-prediction loss, and **ancestral
# sampling** — and scores the samples with **FID** and **KID**.
#
# Everything below calls `ddlib`; nothing is defined here. Expensive steps (training, sampling for FID,
# reference statistics) are cached by the hash of their configuration, so re-running the notebook is
# quick; `FORCE=1` recomputes. The parameters cell holds the `quick` profile's values; `make report
# PROFILE=…` runs it with another profile's (`notebooks/profiles/`).

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
real_fid_dataset = "cifar10:train"   # real images scored like the samples: the FID floor at this sample count
forward_timesteps = [0, 50, 100, 200, 300, 500, 700, 999]
forward_image_index = 0
grid_samples = 36
trajectory_frames = 8
ddpm_fid_samples = 64

# %%
from ddlib import grids
from ddlib.lab import context, experiments, figures
from IPython.display import display

ctx = context.start(profile, "01_ddpm_cifar10", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
config = experiments.diffusion_config(
    dataset=dataset, data_limit=data_limit, preset=preset, unet=unet_overrides, schedule="linear",
    schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end), timesteps=timesteps,
    steps=train_steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
print(f"profile {profile} on {ctx.hardware}; outputs in {ctx.out}")
from ddlib.data import load_dataset

data = load_dataset(dataset, limit=data_limit, progress=False)
schedule = config.make_schedule()
print(f"{data.name}: {len(data)} images of {data.channels}×{data.image_size}×{data.image_size}; {schedule}")

# %% [markdown]
# ## The forward process
#
# The forward process adds Gaussian noise in $T$ small steps, $q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)$.
# Composing the steps gives a closed form for any $t$ (DDPM eq. 4), with $\alpha_t = 1-\beta_t$ and $\bar\alpha_t = \prod_{s\le t}\alpha_s$:
#
# $$q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big), \qquad
# x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\quad \varepsilon\sim\mathcal{N}(0, I).$$
#
# So training never simulates the chain: it jumps straight to a random $t$. In the paper's symbols, checked against
# the library's `add_noise` on the same inputs:

# %%
import torch

from ddlib.data import to_model_range

x_0 = to_model_range(data.images[forward_image_index][None])           # (1, C, H, W) in [-1, 1]
eps = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(train_seed))
t = torch.tensor([timesteps // 2])
abar_t = schedule.alphas_cumprod[t].float()                           # ᾱ_t = ∏_{s≤t} (1 − β_s)
x_t = abar_t.sqrt() * x_0 + (1 - abar_t).sqrt() * eps                 # x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
assert torch.allclose(x_t, schedule.add_noise(x_0, eps, t), atol=1e-6)

# %% [markdown]
# Below, one training image at increasing $t$, with the *same* $\varepsilon$ throughout (`ddlib` indexes steps from 0,
# so $t = T-1$ is the last).

# %%
strip = figures.forward_process_images(schedule, data.images[forward_image_index], forward_timesteps, seed=train_seed)
figures.show(figures.save_image_rows([strip], ctx.figure("forward_process", "One CIFAR-10 image under the forward process "
            "x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (DDPM eq. 4), linear schedule, one ε for all t."),
            col_labels=[f"t={t}" for t in forward_timesteps]))

# %% [markdown]
# ## The linear schedule
#
# Ho et al. use $\beta_t$ rising linearly from $10^{-4}$ to $0.02$ over $T = 1000$ steps. What matters is
# $\bar\alpha_t$, the fraction of signal variance left, or the signal-to-noise ratio
# $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ (Kingma et al. 2021). For the linear schedule $\bar\alpha_t$
# collapses early: the last few hundred steps are almost pure noise (notebook 04 compares the cosine schedule, which
# spends them better). At $t=T-1$, $\bar\alpha$ must be near 0 so that $x_T$ is indistinguishable from $\mathcal N(0,I)$.

# %%
display(figures.show(figures.plot_schedules({"linear": schedule}, ctx.figure("schedule_linear",
                    f"The linear schedule (β from {beta_start:g} to {beta_end:g}, T = {timesteps}): ᾱ_t and log₁₀ SNR(t)."))))
print(f"ᾱ at the last step: {float(schedule.alphas_cumprod[-1]):.2e}")

# %% [markdown]
# ## Training: predict the noise
#
# The network $\varepsilon_\theta(x_t, t)$ (a UNet, `ddlib.unet`) is trained to recover the noise that was added —
# the "simple" objective of DDPM eq. 14 (Algorithm 1):
#
# $$L_\text{simple}(\theta) = \mathbb{E}_{t\sim\mathcal U\{0..T-1\},\ x_0,\ \varepsilon}
# \Big[\big\lVert \varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\rVert^2\Big].$$
#
# `ddlib.train` adds what reference implementations all have: AdamW, learning-rate warmup, gradient clipping and an
# exponential moving average (EMA) of the weights, which is what we sample from. The run is cached under the hash of
# its config: if it exists it is reused; if it was interrupted it resumes exactly.

# %%
run = ctx.train(config, data=data)
print(f"run {run.key}: {'reused from cache' if run.reused else 'trained'} — {config.steps} steps of batch "
      f"{config.batch_size}, {run.wall_s:.0f} s on {run.hardware}")
display(figures.show(figures.plot_loss_curves({"linear schedule": run.log()}, ctx.figure("loss_ddpm",
                    f"Training loss (DDPM eq. 14) of the {preset} UNet on {dataset}, batch {batch_size}; faint: each logged "
                    "mean, bold: moving average."), title="DDPM training loss")))
ctx.table("train_ddpm", [experiments.train_row(ctx, run, "DDPM, linear schedule")], "DDPM training run (notebook 01)")

# %% [markdown]
# ## Sampling: DDPM ancestral sampling (Algorithm 2)
#
# Sampling runs the learned reverse chain from $x_{T} \sim \mathcal N(0, I)$ down to $x_0$. Each step predicts the
# noise and draws from a Gaussian around the posterior mean (DDPM Algorithm 2):
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big) + \sigma_t z,
# \qquad z \sim \mathcal N(0, I),\ \ z = 0 \text{ at the last step},$$
#
# with $\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$ (`variance="fixed_small"`).
# That is $T$ network evaluations per image. With `clip_denoised` the step is taken in its equivalent form through the
# predicted clean image, $\tilde\mu_t(x_t, \hat x_0)$ (DDPM eq. 7), with $\hat x_0$ clamped to $[-1, 1]$ as in Ho et al.'s
# released sampler: an under-trained model then cannot drift into saturated, single-colour images. Every image starts from its own seeded $x_T$, so the grid is
# reproducible.
#
# **Where the step comes from.** By Bayes' rule $q(x_{t-1}\mid x_t, x_0) \propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$, a
# product of two Gaussians in $x_{t-1}$; completing the square gives DDPM eqs. 6–7,
#
# $$q(x_{t-1}\mid x_t, x_0) = \mathcal N\big(\tilde\mu_t, \tilde\beta_t I\big),\quad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\quad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# The reverse model plugs in $\hat x_0$ for the unknown $x_0$; substituting $\hat x_0$ gives Algorithm 2's $\varepsilon$ form.
# **ε-prediction is a scaled score:** the $\varepsilon^*$ that minimises $L_\text{simple}$ is $\mathbb E[\varepsilon\mid x_t]$, and
# Tweedie's formula gives $\varepsilon^*(x_t, t) = -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log q(x_t)$, so
# $s_\theta = -\varepsilon_\theta/\sqrt{1-\bar\alpha_t}$ estimates the score and each step moves $x_t$ uphill in density
# (notebook 00 checks this exactly on a toy mixture). One step in the paper's symbols, against `ddpm_step`:

# %%
from ddlib.samplers import ddpm_step

g = torch.Generator().manual_seed(0)
x_t, eps_hat, z = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
tt = timesteps // 2
beta, alpha = schedule.betas[tt], 1 - schedule.betas[tt]
abar, abar_prev = schedule.alphas_cumprod[tt], schedule.alphas_cumprod[tt - 1]
x0_hat = (x_t - (1 - abar).sqrt() * eps_hat) / abar.sqrt()                                     # x̂_0 (eq. 15)
mu = abar_prev.sqrt() * beta / (1 - abar) * x0_hat + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t  # μ̃_t (eq. 7)
sigma = ((1 - abar_prev) / (1 - abar) * beta).sqrt()                                          # √β̃_t
assert torch.allclose(mu + sigma * z, ddpm_step(schedule, eps_hat, tt, x_t, noise=z))
assert torch.allclose(mu, (x_t - beta / (1 - abar).sqrt() * eps_hat) / alpha.sqrt())           # Algorithm 2's form

# %%
grid = experiments.sample_grid(ctx, run, n=grid_samples, pool=ddpm_fid_samples, sampler="ddpm", batch_size=sample_batch,
                               clip=clip_denoised)
figures.show(grids.save_image_grid(grid, ctx.figure("samples_ddpm", f"{grid_samples} DDPM samples (T = {timesteps} "
            f"ancestral steps, EMA weights) of the {preset} UNet after {train_steps} training steps: the first "
            f"{grid_samples} of the {ddpm_fid_samples} scored below."), scale=3))

# %% [markdown]
# ### The denoising trajectory
#
# Along the way the model's current guess of the clean image is
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t,t))/\sqrt{\bar\alpha_t}$ (DDPM eq. 15). Coarse layout and colour
# appear first, at high noise; detail is decided in the last steps.

# %%
trained = run.load(ctx.device)
traj = figures.record_trajectory(trained.model, trained.schedule, num=2, sampler="ddpm", frames=trajectory_frames, seed=0,
                                clip=clip_denoised)
figures.show(figures.save_trajectory(traj, ctx.figure("trajectory_ddpm", "DDPM denoising trajectory: x_t (rows 1, 3) "
            "and the model's prediction x̂_0 (rows 2, 4) at evenly spaced steps."), title="DDPM trajectory"))

# %% [markdown]
# ## Scoring: FID and KID
#
# Both compare Inception-v3 pool features (2048-d) of samples and of a reference set. **FID** fits a Gaussian to
# each, $\mathrm{FID} = \lVert\mu_r-\mu_g\rVert^2 + \operatorname{Tr}\big(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2}\big)$;
# it is biased upwards at small sample counts, so FIDs are only comparable at equal $n$ against the same reference.
# **KID** is the unbiased squared MMD with the kernel $k(x,y) = (x^\top y/d + 1)^3$, meaningful at small $n$.
# The second row scores $n$ *real* training images the same way: the value a perfect model would get at this $n$.
# The standard Inception Score needs the network's classifier head, absent from the offline weights: it reads n/a.

# %%
rows = experiments.ddpm_table(ctx, run, n=ddpm_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, real_dataset=real_fid_dataset,
                              clip=clip_denoised)
ctx.table("ddpm", rows, "DDPM on CIFAR-10: FID and KID",
          columns=["model", "sampler", "steps", "train_steps", "fid", "kid", "kid_std", "inception_score"])

# %% [markdown]
# ## Sanity checks

# %%
import math

import torch

assert run.log() and all(math.isfinite(r["loss"]) for r in run.log()), "training loss must be finite"
assert grid.dtype == torch.uint8 and grid.shape[0] == grid_samples
assert traj["x"].shape[0] == len(traj["t"]) and traj["t"][-1] == 0
assert all(math.isfinite(r["fid"]) and r["fid"] >= 0 for r in rows)
assert not context.check_outputs(ctx.out, "01_ddpm_cifar10"), context.check_outputs(ctx.out, "01_ddpm_cifar10")
print("01: all checks passed")
