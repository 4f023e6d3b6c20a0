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
train_steps = 900
batch_size = 32
lr = 0.0005
warmup_steps = 100
ema_decay = 0.995
train_seed = 0
# sampling: clamp x̂_0 to [-1, 1] at every step (Ho et al.'s released sampler does); FID/KID reference and batch
clip_denoised = True
fid_reference = "cifar10:test"
fid_reference_count = 600
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
figures.show(figures.plot_schedules({"linear": schedule}, ctx.figure("schedule_linear",
                    f"The linear schedule (β from {beta_start:g} to {beta_end:g}, T = {timesteps}): ᾱ_t and log₁₀ SNR(t).")))
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
figures.show(figures.plot_loss_curves({"linear schedule": run.log()}, ctx.figure("loss_ddpm",
                    f"Training loss (DDPM eq. 14) of the {preset} UNet on {dataset}, batch {batch_size}; faint: each logged "
                    "mean, bold: moving average."), title="DDPM training loss"))
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

# %% [markdown]
# ## What this notebook showed
#
# - The forward process $q(x_t \mid x_0)$ and the linear schedule's $\bar\alpha_t$: by the last step almost no signal is left.
# - Training is regression of the added noise, $\lVert\varepsilon - \varepsilon_\theta(x_t, t)\rVert^2$ at a random $t$; the loss
#   curve shows it falling.
# - Sampling is $T$ ancestral steps, each the posterior mean $\tilde\mu_t(x_t, \hat x_0)$ plus $\sqrt{\tilde\beta_t}\,z$, written
#   in the paper's symbols and checked against the library; the trajectory shows layout first, detail last.
# - The samples' FID and KID with 95 % intervals, beside real images scored the same way at the same $n$.
#
# **What it cannot show at this budget.** A tiny UNet trained for minutes on a CPU draws blurred colour fields, not
# objects, and tens of samples give FIDs far above the floor with wide intervals: this notebook shows the algorithm and
# how to read a score honestly, not what DDPM reaches on CIFAR-10 (Ho et al.: FID 3.17 at 50,000 samples after 800k
# steps of batch 128). Notebook 02 compares samplers on this same model and these same seeds. The measured numbers:

# %%
model_row = rows[0]
floor_rows = [r for r in rows[1:] if r.get("fid") is not None]
print(f"- Training: {config.steps} steps of batch {config.batch_size} in {run.wall_s:.0f} s on {run.hardware}; "
      f"final loss (mean of the last tenth of the log) {experiments.train_row(ctx, run, 'DDPM')['final_loss']}.")
print(f"- DDPM-{timesteps}: FID {model_row['fid']:.4g} [{model_row['fid_lo']:.4g}, {model_row['fid_hi']:.4g}], "
      f"KID {model_row['kid']:.3g} [{model_row['kid_lo']:.3g}, {model_row['kid_hi']:.3g}] at n = {model_row['n_samples']}.")
for r in floor_rows:
    print(f"- Real-image floor ({r['model']}): FID {r['fid']:.4g} [{r['fid_lo']:.4g}, {r['fid_hi']:.4g}] at the same n; "
          + ("the model's interval lies above the floor's." if model_row["fid_lo"] > r["fid_hi"]
             else "the intervals overlap: not resolved from the floor at this n."))
if not floor_rows:
    print("- Real-image floor: n/a (real_fid_dataset is None in this profile).")

# %% [markdown]
# ## Exercises
#
# Each exercise asks for one function in the paper's symbols, written with `torch` (or `math`/`numpy`): write it
# between the lines of its cell that say `YOUR CODE HERE`, then run the **check yourself** cell below it. Hidden tests,
# run by the grader, carry the points; they call your function with ddlib's own implementation switched off, so
# calling `ddlib` (or diffusers) instead of writing the formula scores nothing. Keep everything an exercise needs
# inside its cell. This section stands alone: run the next cell, then any exercise, without running the notebook
# above. Steps are 0-indexed as in `ddlib`: $t \in \{0, \dots, T-1\}$, with $\bar\alpha_{-1} = 1$.

# %% nbgrader={"grade": false, "grade_id": "exercises_setup_01", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import numpy as np
import torch

# %% [markdown]
# ### Exercise 1.1 — the forward sample $q(x_t \mid x_0)$ (2 points)
#
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ (DDPM eq. 4). `alpha_bar_t` holds one
# $\bar\alpha_t$ per sample, shape $(B,)$: reshape it so that it broadcasts against $x_0$ of shape $(B, C, H, W)$.

# %% nbgrader={"grade": false, "grade_id": "q_sample", "locked": false, "schema_version": 3, "solution": true, "task": false}
def q_sample(x0, eps, alpha_bar_t):
    """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε; x0, eps: (B, C, H, W); alpha_bar_t: (B,). Returns x_t, shaped like x0."""
    ### BEGIN SOLUTION
    abar = alpha_bar_t.reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)  # (B, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q_sample_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself
_x0, _eps = torch.ones(2, 1, 2, 2), -torch.ones(2, 1, 2, 2)
_x_t = q_sample(_x0, _eps, torch.tensor([1.0, 0.0]))
assert _x_t.shape == _x0.shape, "x_t must have x_0's shape"
assert torch.allclose(_x_t[0], _x0[0]), "ᾱ_t = 1 (no noise yet) must give x_t = x_0"
assert torch.allclose(_x_t[1], _eps[1]), "ᾱ_t = 0 (all noise) must give x_t = ε"
print("q_sample: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "q_sample_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# hidden tests (2 points)
### BEGIN HIDDEN TESTS
# ᾱ = 0.64 = 0.8² and ᾱ = 0.36 = 0.6²: x_t = 0.8 x_0 + 0.6 ε and 0.6 x_0 + 0.8 ε, by hand
_x0 = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.0]]]])  # (2, 1, 1, 2)
_eps = torch.tensor([[[[1.0, 1.0]]], [[[-1.0, 2.0]]]])
_x_t = q_sample(_x0, _eps, torch.tensor([0.64, 0.36]))
assert tuple(_x_t.shape) == (2, 1, 1, 2), "x_t must have x_0's shape (B, C, H, W)"
assert torch.allclose(_x_t, torch.tensor([[[[1.4, -1.0]]], [[[-0.5, 1.6]]]]), atol=1e-6), \
    "x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, hand-computed for ᾱ_t = 0.64 and 0.36, is wrong (a sign? ᾱ_t instead of its root?)"
# moments: for a fixed x_0, x_t has mean √ᾱ_t x_0 and variance 1 − ᾱ_t
_g = torch.Generator().manual_seed(0)
_eps = torch.randn(20000, 1, 1, 1, generator=_g, dtype=torch.float64)
_x_t = q_sample(torch.full_like(_eps, 2.0), _eps, torch.full((20000,), 0.25, dtype=torch.float64))
assert abs(float(_x_t.mean()) - 1.0) < 0.03 and abs(float(_x_t.var()) - 0.75) < 0.03, \
    "x_t must have mean √ᾱ_t x_0 and variance 1 − ᾱ_t"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 1.2 — the posterior $q(x_{t-1} \mid x_t, x_0)$ (3 points)
#
# DDPM eqs. 6–7: $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ with
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,
# \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
# `betas` is the float64 tensor $(\beta_0, \dots, \beta_{T-1})$; `t` a Python int; remember $\bar\alpha_{-1} = 1$.
# Return `(mean, variance)`: the mean shaped like $x_t$, the variance a 0-d tensor.

# %% nbgrader={"grade": false, "grade_id": "q_posterior", "locked": false, "schema_version": 3, "solution": true, "task": false}
def q_posterior(x0, x_t, t, betas):
    """(μ̃_t, β̃_t) of q(x_{t-1} | x_t, x_0); t: int in 0..T-1; betas: float64 (T,)."""
    ### BEGIN SOLUTION
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    abar_t = alpha_bar[t]
    abar_prev = alpha_bar[t - 1] if t > 0 else torch.ones((), dtype=betas.dtype)  # ᾱ_{-1} = 1
    mean = abar_prev.sqrt() * betas[t] / (1 - abar_t) * x0 + alphas[t].sqrt() * (1 - abar_prev) / (1 - abar_t) * x_t
    variance = (1 - abar_prev) / (1 - abar_t) * betas[t]
    return mean, variance
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "q_posterior_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself: at t = 0 the posterior is x_0 itself, with no variance
_betas = torch.tensor([0.1, 0.2], dtype=torch.float64)
_mean, _var = q_posterior(torch.tensor([3.0]), torch.tensor([7.0]), 0, _betas)
assert torch.allclose(_mean, torch.tensor([3.0])) and abs(float(_var)) < 1e-12, "at t = 0, μ̃ = x_0 and β̃ = 0"
print("q_posterior: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "q_posterior_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# hidden tests (3 points)
### BEGIN HIDDEN TESTS
# by hand, β = (0.1, 0.2): ᾱ_0 = 0.9, ᾱ_1 = 0.72, so β̃_1 = 0.1 / 0.28 · 0.2 = 1/14
_betas = torch.tensor([0.1, 0.2], dtype=torch.float64)
_mean, _var = q_posterior(torch.tensor([1.0]), torch.tensor([0.0]), 1, _betas)
assert abs(float(_var) - 1 / 14) < 1e-9, f"β̃_1 must be 1/14 for β = (0.1, 0.2), got {float(_var):.6f} (β_t instead of β̃_t?)"
# Bayes: q(x_{t-1}|x_0) = N(√ᾱ_{t-1} x_0, 1−ᾱ_{t-1}) times q(x_t|x_{t-1}) = N(√α_t x_{t-1}, β_t) is a Gaussian in x_{t-1}
# with precision 1/(1−ᾱ_{t-1}) + α_t/β_t and mean var·(√ᾱ_{t-1} x_0/(1−ᾱ_{t-1}) + √α_t x_t/β_t)
_betas = torch.linspace(0.01, 0.3, 8, dtype=torch.float64)
_x0, _xt = torch.tensor([0.3, -1.2], dtype=torch.float64), torch.tensor([1.1, 0.4], dtype=torch.float64)
_abar_prev = 1.0
for _t in range(8):
    _a = 1 - float(_betas[_t])
    _mean, _var = q_posterior(_x0, _xt, _t, _betas)
    if _t > 0:
        _v = 1 / (1 / (1 - _abar_prev) + _a / float(_betas[_t]))
        _m = _v * (math.sqrt(_abar_prev) * _x0 / (1 - _abar_prev) + math.sqrt(_a) * _xt / float(_betas[_t]))
        assert abs(float(_var) - _v) < 1e-9, f"β̃_t at t = {_t} disagrees with Bayes' rule"
        assert torch.allclose(torch.as_tensor(_mean, dtype=torch.float64), _m, atol=1e-9), f"μ̃_t at t = {_t} disagrees with Bayes' rule"
    else:
        assert torch.allclose(torch.as_tensor(_mean, dtype=torch.float64), _x0) and abs(float(_var)) < 1e-12, "t = 0: μ̃ = x_0, β̃ = 0"
    _abar_prev *= _a
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 1.3 — one DDPM step (3 points)
#
# DDPM Algorithm 2, line 4, with $\sigma_t^2 = \tilde\beta_t$ ("fixed small"), 0-indexed:
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\hat\varepsilon\Big) + \sigma_t z,$$
# and no noise at the last step, $t = 0$. `z` is the standard normal noise to use (so the step is deterministic).

# %% nbgrader={"grade": false, "grade_id": "ddpm_reverse_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ddpm_reverse_step(x_t, eps_hat, t, betas, z):
    """x_{t-1} from x_t and the predicted noise ε̂; t: int in 0..T-1; betas: float64 (T,); z: noise shaped like x_t."""
    ### BEGIN SOLUTION
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    mean = (x_t - betas[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alphas[t].sqrt()
    if t == 0:
        return mean
    beta_tilde = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * betas[t]
    return mean + beta_tilde.sqrt() * z
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "ddpm_reverse_step_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself: no noise is added at t = 0
_betas = torch.tensor([0.1, 0.2], dtype=torch.float64)
_x = torch.tensor([0.5, -0.5], dtype=torch.float64)
assert torch.allclose(ddpm_reverse_step(_x, _x, 0, _betas, torch.ones(2, dtype=torch.float64)),
                      ddpm_reverse_step(_x, _x, 0, _betas, torch.zeros(2, dtype=torch.float64))), "t = 0 adds no noise"
print("ddpm_reverse_step: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "ddpm_reverse_step_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# hidden tests (3 points)
### BEGIN HIDDEN TESTS
_betas = torch.tensor([0.1, 0.2], dtype=torch.float64)
_x, _e = torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
_z = torch.tensor([1.0, -2.0], dtype=torch.float64)
# the noise enters as σ_t z with σ_t = √β̃_1 = √(1/14) for β = (0.1, 0.2)
_sig = (ddpm_reverse_step(_x, _e, 1, _betas, _z) - ddpm_reverse_step(_x, _e, 1, _betas, torch.zeros(2, dtype=torch.float64))) / _z
assert torch.allclose(_sig, torch.full((2,), math.sqrt(1 / 14), dtype=torch.float64), atol=1e-9), \
    f"σ_t must be √β̃_t = {math.sqrt(1 / 14):.4f} here, got {float(_sig[0]):.4f} (a variance where its square root belongs?)"
# mean by hand at t = 1: (x_t − 0.2/√0.28 · ε̂)/√0.8
_m = (_x - 0.2 / math.sqrt(0.28) * _e) / math.sqrt(0.8)
assert torch.allclose(ddpm_reverse_step(_x, _e, 1, _betas, torch.zeros(2, dtype=torch.float64)), _m, atol=1e-9), \
    "the mean 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε̂) is wrong"
# with the true ε the mean is the posterior mean μ̃_t(x_t, x_0), here from Bayes' rule
_betas = torch.linspace(0.02, 0.4, 6, dtype=torch.float64)
_abar = torch.cumprod(1 - _betas, 0)
_x0, _e = torch.tensor([0.7, -0.3], dtype=torch.float64), torch.tensor([-1.0, 0.5], dtype=torch.float64)
for _t in (1, 3, 5):
    _xt = _abar[_t].sqrt() * _x0 + (1 - _abar[_t]).sqrt() * _e
    _ap, _a, _b = float(_abar[_t - 1]), 1 - float(_betas[_t]), float(_betas[_t])
    _v = 1 / (1 / (1 - _ap) + _a / _b)
    _m = _v * (math.sqrt(_ap) * _x0 / (1 - _ap) + math.sqrt(_a) * _xt / _b)
    _out = ddpm_reverse_step(_xt, _e, _t, _betas, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(_out, _m, atol=1e-9), f"with the true ε the step must land on μ̃_t (t = {_t})"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 1.4 — the ε-prediction loss (2 points)
#
# $L_\text{simple}$ of DDPM eq. 14 for one batch: build $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$
# with each sample's own $t$, call the model, and return the mean over all elements of
# $(\varepsilon - \varepsilon_\theta(x_t, t))^2$ as a 0-d tensor. `alpha_bar` is the tensor $(\bar\alpha_0, \dots, \bar\alpha_{T-1})$,
# `t` an int64 tensor of shape $(B,)$, `eps_model(x_t, t)` returns $\hat\varepsilon$.

# %% nbgrader={"grade": false, "grade_id": "simple_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def simple_loss(eps_model, x0, t, eps, alpha_bar):
    """mean((ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t))²); x0, eps: (B, C, H, W); t: int64 (B,); alpha_bar: (T,)."""
    ### BEGIN SOLUTION
    abar = alpha_bar[t].reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)  # (B, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return ((eps - eps_model(x_t, t)) ** 2).mean()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "simple_loss_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself: a model that always predicts 0 has loss mean(ε²)
_eps = torch.tensor([[[[1.0, -3.0]]]])
_loss = simple_loss(lambda x, t: torch.zeros_like(x), torch.zeros_like(_eps), torch.tensor([0]), _eps, torch.tensor([0.5]))
assert abs(float(_loss) - 5.0) < 1e-6, "predicting 0 must cost mean(ε²) = 5 here"
print("simple_loss: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "simple_loss_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# hidden tests (2 points)
### BEGIN HIDDEN TESTS
_abar = torch.tensor([0.99, 0.64, 0.36, 0.01])
_x0 = torch.tensor([[[[1.0]]], [[[-2.0]]]])
_eps = torch.tensor([[[[1.0]]], [[[0.5]]]])
_t = torch.tensor([1, 2])
# the identity model returns x_t: by hand x_t = (0.8·1 + 0.6·1, 0.6·(−2) + 0.8·0.5) = (1.4, −0.8),
# so the loss is ((1 − 1.4)² + (0.5 + 0.8)²)/2 = (0.16 + 1.69)/2
_loss = simple_loss(lambda x, t: x, _x0, _t, _eps, _abar)
assert abs(float(_loss) - 0.925) < 1e-6, f"loss with the identity model must be 0.925 here, got {float(_loss):.4f} (x_t built with √ᾱ_t?)"
# an oracle that knows x_0 recovers ε exactly: zero loss, whatever t
_seen = {}
def _oracle(x, t):
    _seen["t"] = t
    a = _abar[t].reshape(-1, 1, 1, 1)
    return (x - a.sqrt() * _x0) / (1 - a).sqrt()
assert float(simple_loss(_oracle, _x0, _t, _eps, _abar)) < 1e-10, "the exact noise predictor must have zero loss"
assert torch.equal(torch.as_tensor(_seen["t"]), _t), "the model must be called with each sample's timestep t"
assert torch.as_tensor(simple_loss(lambda x, t: x, _x0, _t, _eps, _abar)).dim() == 0, "return a 0-d tensor (the mean)"
### END HIDDEN TESTS

# %% [markdown]
# ### Question 1.5 — predict before you run (1 point, graded by hand)
#
# For the linear schedule of Ho et al. ($\beta$ from $10^{-4}$ to $0.02$, $T = 1000$), at about which step $t$ does
# $\bar\alpha_t$, the fraction of signal variance left, fall below one half: near $t = 100$, $250$, $500$ or $750$?
# Write your guess and one line of reasoning **before** running the cell below.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_predict_half_signal", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# **Rubric (1 point).** ᾱ_t first drops below 1/2 at t ≈ 258, so "250" is right. Full point for 250 with a reason
# such as log ᾱ_t ≈ −Σ_s β_s ≈ −(10⁻⁴ t + 10⁻⁵ t²) = −ln 2 ⇒ t ≈ 260, or "half the signal is gone after a quarter
# of the steps, because β grows linearly". Half a point for the right choice without a reason; none otherwise.
# ### END SOLUTION

# %%
_linear = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
print("first t with ᾱ_t < 1/2:", int((_linear < 0.5).nonzero()[0]))
