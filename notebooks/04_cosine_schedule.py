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
schedules = ['linear', 'cosine']
schedule_train_steps = None      # None: the same steps as notebook 01 (its linear run is reused)
schedule_fid_samples = 64
schedule_ddim_steps = 100
schedule_grid_samples = 8
schedule_ddpm_samples = 64       # DDPM-T samples per schedule (equal to ddpm_fid_samples: the linear model reuses notebook 01's set)
real_fid_dataset = "cifar10:train"   # real images scored like the samples: the FID floor at each n (as in 01)
loss_t_points = 20               # per-t loss: t evenly spaced over 0 … T−1, both ends included
loss_t_images = 128   # per-t loss: held-out images (of fid_reference), the same ε per image for every model

# %%
from ddlib.lab import context, experiments, figures
from IPython.display import display

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
# steps. The profile's `schedules` are trained; the figure above also draws schedules that are not trained here (the
# cell below names them). The loss values are **not directly comparable** across schedules: training draws $t$
# uniformly, the loss at a given $t$ depends on how noisy $x_t$ is, and the schedules put their steps at different
# noise levels. Near pure noise ($\bar\alpha_t \to 0$) $x_t \approx \varepsilon$ and predicting $\varepsilon$ is trivial;
# at *low* noise the noise is a small part of $x_t$ and must be told apart from image detail, so it is hardest there.
# The claim to be measured in the next section: the linear schedule's lower mean training loss comes from its many
# steps with $\bar\alpha_t < 0.01$ (their share is printed above), where the loss is close to 0.

# %%
runs = {name: ctx.train(cfg) for name, cfg in configs.items()}
untrained = [k for k in curves if k not in runs]
print(f"trained in profile {profile}: {', '.join(runs)}; " + (f"drawn above but not trained here: {', '.join(untrained)} "
      f"(trained only in the profiles that list them in `schedules`)" if untrained else "every schedule drawn above"))
figures.show(figures.plot_loss_curves({name: run.log() for name, run in runs.items()}, ctx.figure("loss_schedules",
            "Training loss per schedule at equal steps (same data order, same initial weights)."),
            title="training loss by schedule"))

# %% [markdown]
# ## Loss per noise level
#
# Training averages $\lVert\varepsilon - \varepsilon_\theta(x_t, t)\rVert^2$ over $t$ drawn uniformly. Here it is measured
# at fixed $t$ instead: `loss_t_images` held-out images (the test split, `fid_reference`, that no model trained on),
# one $\varepsilon$ per image shared by every $t$ and every schedule, at `loss_t_points` values of $t$ from 0 to $T-1$.
# The band is a 95 % interval over images (mean ± 1.96 s/√n). Plotted against $\log_{10}\mathrm{SNR}(t)$ the schedules
# should roughly agree: at equal SNR, $x_t = \sqrt{\bar\alpha_t}\,\big(x_0 + \varepsilon/\sqrt{\mathrm{SNR}(t)}\big)$ is the same
# noisy image up to a scale, so the task is the same whatever the schedule; plotted against $t$ they differ by where
# each schedule puts its noise levels. One $t$ by hand, in the paper's symbols, against the library:

# %%
from ddlib.data import load_dataset, to_model_range

name0, run0 = next(iter(runs.items()))
trained0 = run0.load(ctx.device)
abar = trained0.schedule.alphas_cumprod
x0 = to_model_range(load_dataset(fid_reference, progress=False).images[:8]).to(ctx.device)
eps = experiments.heldout_noise(x0.shape, seed=0).to(ctx.device)
t = timesteps // 2
x_t = abar[t].sqrt().float() * x0 + (1 - abar[t]).sqrt().float() * eps          # x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
with torch.no_grad():
    eps_hat = trained0.model(x_t, torch.full((len(x0),), t, device=ctx.device))   # ε_θ(x_t, t)
by_hand = ((eps - eps_hat) ** 2).flatten(1).mean(1)                                # ‖ε − ε_θ‖² per image (mean over pixels)
lib = experiments.loss_per_t(trained0.model, trained0.schedule, x0, eps, [t], device=ctx.device)[0]
assert torch.allclose(by_hand.double().cpu(), lib, rtol=1e-4, atol=1e-6)
print(f"{name0}, t = {t}: loss of 8 test images {float(by_hand.mean()):.4f} (by hand) = {float(lib.mean()):.4f} (library)")

# %%
losses = experiments.schedule_loss_per_t(ctx, runs, heldout=fid_reference, n_images=loss_t_images,
                                         t_points=loss_t_points, batch_size=sample_batch)
figures.show(figures.plot_loss_per_t(losses, ctx.figure("loss_per_t", f"ε-prediction loss at fixed t of the model "
            f"trained with each schedule: {loss_t_images} held-out images of {fid_reference}, the same ε per image for "
            f"every t and schedule, {loss_t_points} values of t; bands: 95 % intervals over images. Left against t, "
            f"right against log₁₀ SNR(t).")))
for name, r in losses.items():
    train_loss = experiments.schedule_columns(name, runs[name])["final_loss"]
    share = float((curves[name].alphas_cumprod < 0.01).double().mean())
    print(f"{name:20s} loss at t = {r['t'][0]}: {r['mean'][0]:.4f} [{r['lo'][0]:.4f}, {r['hi'][0]:.4f}], "
          f"at t = {r['t'][-1]}: {r['mean'][-1]:.5f} [{r['lo'][-1]:.5f}, {r['hi'][-1]:.5f}]; "
          f"mean over t (uniform, what training averages): {r['uniform_t_mean']:.4f} "
          f"[{r['uniform_t_lo']:.4f}, {r['uniform_t_hi']:.4f}] beside the final training loss {train_loss}; "
          f"ᾱ_t < 0.01 on {share:.0%} of the steps")

# %% [markdown]
# ## Quality: each schedule under DDIM at η = 0 and η = 1, under its better η, and under DDPM
#
# Every model is sampled from the same per-image seeds, so the schedules are compared image by image (paired
# bootstrap of the FID difference). First DDIM with `schedule_ddim_steps` steps at $\eta = 0$ and $\eta = 1$
# (`schedule_fid_samples` images each); per schedule, the $\eta$ whose FID is lower **with a resolved paired difference**
# is kept, and where the two are not resolved the stated default $\eta = 0$ (DDIM's deterministic sampler) is kept and
# the table says so. Then the ancestral DDPM sampler over all $T$ steps (`schedule_ddpm_samples` images, which may
# differ from the DDIM n: a table of its own, with its own real-image floor). All sentences below are generated from
# the intervals.

# %%
cmp = experiments.schedule_samplers(ctx, runs, n=schedule_fid_samples, ddim_steps=min(schedule_ddim_steps, timesteps),
                                    ddpm_n=schedule_ddpm_samples, reference=fid_reference,
                                    reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised,
                                    real_dataset=real_fid_dataset, default_eta=0.0, losses=losses)
display(ctx.table("schedules_ddim", cmp["ddim"], f"Each schedule under DDIM-{min(schedule_ddim_steps, timesteps)} at "
                  f"η = 0 and η = 1, {schedule_fid_samples} samples each", columns=["schedule", "sampler", "eta", "fid",
                  "kid", "eta_vs_other"],
                  notes=[f"eta_vs_other: the paired comparison of the two η of the same schedule. "
                         + " ".join(cmp["sentences"]["eta_choice"].values()),
                         *[f"Schedules at η = {e:g}: {t}" for e, t in cmp["sentences"]["ddim"].items()]]))
display(ctx.table("schedules", cmp["best"], f"Schedules at equal training steps, each under its chosen DDIM η "
                  f"({schedule_fid_samples} samples)", columns=["schedule", "train_steps", "alpha_bar_last",
                  "log10_snr_mid", "final_loss", "loss_uniform_t", "sampler", "eta", "chosen_from", "fid", "kid"],
                  notes=["final_loss: the last tenth of the training log; loss_uniform_t: the per-t loss on held-out "
                         "images averaged over evenly spaced t (not comparable across schedules, see the text)."]))
display(ctx.table("schedules_ddpm", cmp["ddpm"], f"Schedules under DDPM ancestral sampling over all T steps, "
                  f"{schedule_ddpm_samples} samples each", columns=["schedule", "sampler", "steps", "fid", "kid"]))
for e, text in cmp["sentences"]["ddim"].items():
    print(f"DDIM η = {e:g}: {text}")
print(f"each under its chosen η: {cmp['sentences']['best']}")
print(f"DDPM-{timesteps}: {cmp['sentences']['ddpm']}")

# %%
grids = [experiments.sample_grid(ctx, runs[r["schedule"]], n=schedule_grid_samples, pool=schedule_fid_samples,
                                 sampler="ddim", num_steps=min(schedule_ddim_steps, timesteps), eta=r["eta"],
                                 batch_size=sample_batch, clip=clip_denoised)
         for r in cmp["best"]]
figures.show(figures.save_image_rows(grids, ctx.figure("samples_schedules", "DDIM samples (same initial noise) of the "
            "models trained with each schedule (rows), each at its chosen η."),
            row_labels=[f"{r['schedule']} η={r['eta']:g}" for r in cmp["best"]]))

# %% [markdown]
# ## Sanity checks

# %%
import math

assert all(math.isfinite(r["loss"]) for run in runs.values() for r in run.log()), "losses must be finite"
rows = cmp["ddim"] + cmp["best"] + cmp["ddpm"]
assert all(math.isfinite(r["fid"]) for r in rows) and len(cmp["ddim"]) == 2 * len(schedules)
assert not context.check_outputs(ctx.out, "04_cosine_schedule"), context.check_outputs(ctx.out, "04_cosine_schedule")
print("04: all checks passed")

# %% [markdown]
# ## What this notebook showed
#
# The schedules' $\bar\alpha_t$ and SNR curves, the seed's literal formula included; the per-$t$ loss of the trained
# models, which says where $\varepsilon$-prediction is hard and why the mean training losses of different schedules cannot be
# compared; and the schedules' FID/KID under the same samplers, each with its interval, its real-image floor and a
# paired comparison. What it cannot show at this CPU budget: how the schedules compare once trained far longer (Nichol
# & Dhariwal's models trained for hundreds of thousands of steps, these for `train_steps`), and any difference smaller
# than the intervals at these n; and it compares only the schedules the profile trains. The measured sentences:

# %%
for line in experiments.loss_findings(losses, curves):
    print(line)
print(f"Samplers ({schedule_fid_samples} samples per DDIM cell, {schedule_ddpm_samples} per DDPM cell):")
for r in cmp["best"] + cmp["ddpm"]:
    print(f"  {r['schedule']}, {r['sampler']}" + (f" η={r['eta']:g}" if "eta" in r else "") + f": FID {r['fid']:.1f} "
          f"[{r['fid_lo']:.1f}, {r['fid_hi']:.1f}] against the real-image floor {r.get('floor_fid', float('nan')):.1f} "
          f"at n = {r['n_samples']}")
for name, text in cmp["sentences"]["eta_choice"].items():
    print(f"  η for {name}: {text}")
print(f"  each schedule under its chosen η: {cmp['sentences']['best']}")
print(f"  under DDPM-{timesteps}: {cmp['sentences']['ddpm']}")

# %% [markdown]
# ## Exercises
#
# As in notebook 01: write each function between the lines that say `YOUR CODE HERE`, run its **check yourself**
# cell; hidden tests, run with ddlib's schedules switched off, carry the points. This section stands alone.
# Both functions return $(\beta_1, \dots, \beta_T)$ as a float64 tensor of shape $(T,)$ (ddlib stores it 0-indexed).

# %% nbgrader={"grade": false, "grade_id": "exercises_setup_04", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import numpy as np
import torch

# %% [markdown]
# ### Exercise 4.1 — the cosine schedule of Nichol & Dhariwal (3 points)
#
# Their eq. 17: $\bar\alpha(t) = f(t)/f(0)$ with $f(t) = \cos^2\!\Big(\dfrac{t/T + s}{1 + s}\cdot\dfrac{\pi}{2}\Big)$, and
# $\beta_t = \min\big(1 - \bar\alpha(t)/\bar\alpha(t-1),\ \beta_\text{max}\big)$ for $t = 1, \dots, T$ (they clip at 0.999 so
# that the last steps stay invertible).

# %% nbgrader={"grade": false, "grade_id": "nichol_cosine_betas", "locked": false, "schema_version": 3, "solution": true, "task": false}
def nichol_cosine_betas(T, s=0.008, max_beta=0.999):
    """β_1 … β_T of the cosine schedule, float64 (T,)."""
    ### BEGIN SOLUTION
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "nichol_cosine_betas_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself
_b = nichol_cosine_betas(1000)
assert tuple(_b.shape) == (1000,) and _b.dtype == torch.float64, "a float64 tensor of shape (T,)"
assert float(_b[-1]) == 0.999, "the last β is clipped at max_beta"
print("nichol_cosine_betas: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "nichol_cosine_betas_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# hidden tests (3 points)
### BEGIN HIDDEN TESTS
# by hand, T = 4, s = 0: f(k) = cos²(kπ/8), so β = (sin²(π/8), 1 − (1/2)/cos²(π/8), 1 − sin²(π/8)/(1/2), clipped 1)
#                                               = ((2 − √2)/4, √2 − 1, √2/2, max_beta)
_want = torch.tensor([(2 - math.sqrt(2)) / 4, math.sqrt(2) - 1, math.sqrt(2) / 2, 0.9], dtype=torch.float64)
assert torch.allclose(torch.as_tensor(nichol_cosine_betas(4, s=0.0, max_beta=0.9), dtype=torch.float64), _want, atol=1e-9), \
    "T = 4, s = 0: β = ((2 − √2)/4, √2 − 1, √2/2, max_beta)"
# telescoping: ∏_{k ≤ t}(1 − β_k) = f(t)/f(0) wherever β is not clipped
_T, _s = 1000, 0.008
_b = torch.as_tensor(nichol_cosine_betas(_T, s=_s), dtype=torch.float64)
_f = lambda t: math.cos((t / _T + _s) / (1 + _s) * math.pi / 2) ** 2
_abar = torch.cumprod(1 - _b, 0)
for _t in (1, 10, 250, 500, 900, 990):
    assert abs(float(_abar[_t - 1]) - _f(_t) / _f(0)) < 1e-9, f"∏(1 − β) up to t = {_t} must be f(t)/f(0) (is s in f?)"
assert abs(float(_b[0]) - (1 - _f(1) / _f(0))) < 1e-12, "β_1 = 1 − f(1)/f(0)"
assert bool((_b <= 0.999).all()) and float(_b[-1]) == 0.999, "β is clipped at max_beta = 0.999"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4.2 — the seed report's formula, literally (2 points)
#
# The seed report's "adjusted formula" for its cosine schedule, read as the $\beta_t$ it produces:
# $$\beta_t = 1 - \frac{\cos^2\!\big(\frac{\pi}{2}\cdot\frac{t}{T}\big)}{\cos^2\!\big(\frac{\pi}{2}\cdot\frac{t-1}{T}\big) + \epsilon},
# \qquad t = 1, \dots, T,\ \text{clipped at } \beta_\text{max}.$$
# (Question 5.2 asks what the report got wrong about it.)

# %% nbgrader={"grade": false, "grade_id": "seed_report_betas", "locked": false, "schema_version": 3, "solution": true, "task": false}
def seed_report_betas(T, eps=1e-4, max_beta=0.999):
    """β_1 … β_T of the seed report's cos² formula with its small ε, float64 (T,)."""
    ### BEGIN SOLUTION
    t = torch.arange(1, T + 1, dtype=torch.float64)
    ratio = torch.cos(math.pi / 2 * t / T) ** 2 / (torch.cos(math.pi / 2 * (t - 1) / T) ** 2 + eps)
    return (1 - ratio).clamp(max=max_beta)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "seed_report_betas_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself
_b = seed_report_betas(1000)
assert tuple(_b.shape) == (1000,) and float(_b[-1]) == 0.999, "shape (T,), last β clipped"
print("seed_report_betas: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "seed_report_betas_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# hidden tests (2 points)
### BEGIN HIDDEN TESTS
# ε = 0 is Nichol & Dhariwal's f with s = 0: for T = 4 the same hand-computed ((2 − √2)/4, √2 − 1, √2/2, max_beta)
_want = torch.tensor([(2 - math.sqrt(2)) / 4, math.sqrt(2) - 1, math.sqrt(2) / 2, 0.9], dtype=torch.float64)
assert torch.allclose(torch.as_tensor(seed_report_betas(4, eps=0.0, max_beta=0.9), dtype=torch.float64), _want, atol=1e-9), \
    "T = 4, ε = 0: β = ((2 − √2)/4, √2 − 1, √2/2, max_beta)"
# by hand, T = 2, ε = 1: β_1 = 1 − (1/2)/(1 + 1) = 3/4, β_2 = 1 − 0/(1/2 + 1) = 1 → max_beta
assert torch.allclose(torch.as_tensor(seed_report_betas(2, eps=1.0, max_beta=0.95), dtype=torch.float64),
                      torch.tensor([0.75, 0.95], dtype=torch.float64), atol=1e-9), "T = 2, ε = 1: β = (3/4, max_beta)"
# ε sits in the denominator only: β_1 = 1 − cos²(π/(2T))/(1 + ε)
_b = torch.as_tensor(seed_report_betas(1000, eps=0.01), dtype=torch.float64)
assert abs(float(_b[0]) - (1 - math.cos(math.pi / 2000) ** 2 / 1.01)) < 1e-12, "β_1 = 1 − cos²(π/2T)/(1 + ε)"
### END HIDDEN TESTS

# %% [markdown]
# ### Question 4.3 — predict before you run (1 point, graded by hand)
#
# The seed report says the cosine schedule "assigns more noise to earlier timesteps". At $t = T/4$ and $t = T/2$
# ($T = 1000$), which schedule leaves **less** signal, i.e. the smaller $\bar\alpha_t$: Ho et al.'s linear one or
# Nichol & Dhariwal's cosine one? Answer, then run the cell below.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q4_predict_cosine", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# **Rubric (1 point).** The linear schedule: ᾱ_{T/4} ≈ 0.52 (linear) against ≈ 0.85 (cosine), ᾱ_{T/2} ≈ 0.08 against
# ≈ 0.49. The cosine schedule adds noise *more slowly* early on and destroys information more evenly over t (Nichol &
# Dhariwal §3.2), so the report's sentence is backwards. Full point for "linear" with this reading; half for "linear"
# alone.
# ### END SOLUTION

# %%
_lin = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
from ddlib.schedules import make_schedule

_cos = make_schedule("cosine", 1000).alphas_cumprod
for _t in (250, 500):
    print(f"ᾱ at t = {_t}: linear {float(_lin[_t - 1]):.3f}, cosine {float(_cos[_t - 1]):.3f}")
