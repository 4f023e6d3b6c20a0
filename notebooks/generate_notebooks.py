"""Write the numbered report notebooks (without outputs) from the cell texts below.

    .venv/bin/python notebooks/generate_notebooks.py          # rewrites notebooks/0[1-5]_*.ipynb

The notebooks are ordinary Jupyter notebooks and may be edited in JupyterLab; this script is how they
were first written and keeps their cells in one reviewable place. The parameters cells take their
values from ``profiles/quick.yaml``. Each notebook: markdown explaining
the idea and its equation, then a code cell that only calls ``ddlib``, then the figure or table, and
one cell tagged ``parameters`` holding plain literals (papermill overrides them from
``notebooks/profiles/<profile>.yaml``). The defaults in the parameters cells are the ``quick`` profile's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

COMMON = '''\
profile = "quick"          # the profile these values come from (papermill passes the real one)
reports_dir = "reports"    # outputs go to <reports_dir>/<profile>/ (relative to the repository root)
cache_dir = None           # checkpoints and cached metrics; None: .cache/ddlib/report
device = "auto"            # "auto": CUDA if available, else CPU
torch_threads = None       # None: PyTorch's default
'''

TRAIN = '''\
# the CIFAR-10 model shared by notebooks 01, 02 and 04 (equal values: one cached run)
dataset = "cifar10:train"
data_limit = None
preset = "tiny"
unet_overrides = {}
timesteps = 1000
beta_start = 1e-4
beta_end = 0.02
train_steps = 1500
batch_size = 64
lr = 5e-4
warmup_steps = 100
ema_decay = 0.995
train_seed = 0
# sampling: clamp x̂_0 to [-1, 1] at every step (Ho et al.'s released sampler does); FID/KID reference and batch
clip_denoised = True
fid_reference = "cifar10:test"
fid_reference_count = None
sample_batch = 100
'''

SETUP = '''\
from ddlib.lab import context, experiments, figures as report

ctx = context.start(profile, "{name}", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
config = experiments.diffusion_config(
    dataset=dataset, data_limit=data_limit, preset=preset, unet=unet_overrides, schedule="linear",
    schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end), timesteps=timesteps,
    steps=train_steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
print(f"profile {{profile}} on {{ctx.hardware}}; outputs in {{ctx.out}}")
'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


QUICK = yaml.safe_load((HERE / "profiles" / "quick.yaml").read_text())


def quick_defaults(text: str) -> str:
    """Set every ``name = value`` of a parameters cell to the ``quick`` profile's value (comments kept), so that
    a notebook opened in JupyterLab and run top to bottom is the quick profile's run."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\w+) = (.*?)(\s+#.*)?$", line)
        if m and m.group(1) in QUICK:
            v = QUICK[m.group(1)]
            head = f"{m.group(1)} = {json.dumps(v) if isinstance(v, str) else repr(v)}"
            comment = m.group(3) or ""
            if comment:  # keep the comment's column
                width = len(m.group(1)) + 3 + len(m.group(2)) + len(comment) - len(comment.lstrip())
                comment = " " * max(2, width - len(head)) + comment.lstrip()
            line = head + comment
        out.append(line)
    return "\n".join(out)


def code(text: str, tags: tuple[str, ...] = ()):
    if "parameters" in tags:
        text = quick_defaults(text)
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(cells, name: str) -> nbformat.NotebookNode:
    for i, cell in enumerate(cells):  # stable ids: regenerating an unchanged notebook changes nothing
        cell["id"] = f"{name[:2]}-{i:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "ddlib", "display_name": "Python (ddlib)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ----------------------------------------------------------------------------------------------------------
NB01 = [
    md(r"""
# 1. DDPM on CIFAR-10

A denoising diffusion probabilistic model (Ho, Jain & Abbeel 2020) learns to undo a fixed process that
slowly drowns an image in Gaussian noise. This notebook walks through the four pieces: the **forward
process**, the **noise schedule**, **training** with the simple ε-prediction loss, and **ancestral
sampling** — and scores the samples with **FID** and **KID**.

Everything below calls `ddlib`; nothing is defined here. Expensive steps (training, sampling for FID,
reference statistics) are cached by the hash of their configuration, so re-running the notebook is
quick; `FORCE=1` recomputes. The parameters cell holds the `quick` profile's values; `make report
PROFILE=…` runs it with another profile's (`notebooks/profiles/`).
"""),
    code(COMMON + TRAIN + '''\
real_fid_dataset = "cifar10:train"   # real images scored like the samples: the FID floor at this sample count
forward_timesteps = [0, 50, 100, 200, 300, 500, 700, 999]
forward_image_index = 0
grid_samples = 36
trajectory_frames = 8
ddpm_fid_samples = 100
''', tags=("parameters",)),
    code(SETUP.format(name="01_ddpm_cifar10") + '''\
from ddlib.data import load_dataset

data = load_dataset(dataset, limit=data_limit, progress=False)
schedule = config.make_schedule()
print(f"{data.name}: {len(data)} images of {data.channels}×{data.image_size}×{data.image_size}; {schedule}")
'''),
    md(r"""
## The forward process

The forward process adds Gaussian noise in $T$ small steps, $q(x_t \mid x_{t-1}) = \mathcal{N}(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)$.
Composing the steps gives a closed form for any $t$ (DDPM eq. 4), with $\alpha_t = 1-\beta_t$ and $\bar\alpha_t = \prod_{s\le t}\alpha_s$:

$$q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big), \qquad
x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\quad \varepsilon\sim\mathcal{N}(0, I).$$

So training never simulates the chain: it jumps straight to a random $t$. Below, one training image at increasing
$t$, with the *same* $\varepsilon$ throughout (`ddlib` indexes steps from 0, so $t = T-1$ is the last).
"""),
    code('''\
strip = report.forward_process_images(schedule, data.images[forward_image_index], forward_timesteps, seed=train_seed)
report.show(report.save_image_rows([strip], ctx.figure("forward_process", "One CIFAR-10 image under the forward process "
            "x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (DDPM eq. 4), linear schedule, one ε for all t."),
            col_labels=[f"t={t}" for t in forward_timesteps]))
'''),
    md(r"""
## The linear schedule

Ho et al. use $\beta_t$ rising linearly from $10^{-4}$ to $0.02$ over $T = 1000$ steps. What matters is
$\bar\alpha_t$, the fraction of signal variance left, or the signal-to-noise ratio
$\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ (Kingma et al. 2021). For the linear schedule $\bar\alpha_t$
collapses early: the last few hundred steps are almost pure noise (notebook 04 compares the cosine schedule, which
spends them better). At $t=T-1$, $\bar\alpha$ must be near 0 so that $x_T$ is indistinguishable from $\mathcal N(0,I)$.
"""),
    code('''\
report.show(report.plot_schedules({"linear": schedule}, ctx.figure("schedule_linear",
            f"The linear schedule (β from {beta_start:g} to {beta_end:g}, T = {timesteps}): ᾱ_t and log₁₀ SNR(t).")))
print(f"ᾱ at the last step: {float(schedule.alphas_cumprod[-1]):.2e}")
'''),
    md(r"""
## Training: predict the noise

The network $\varepsilon_\theta(x_t, t)$ (a UNet, `ddlib.unet`) is trained to recover the noise that was added —
the "simple" objective of DDPM eq. 14 (Algorithm 1):

$$L_\text{simple}(\theta) = \mathbb{E}_{t\sim\mathcal U\{0..T-1\},\ x_0,\ \varepsilon}
\Big[\big\lVert \varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\rVert^2\Big].$$

`ddlib.train` adds what reference implementations all have: AdamW, learning-rate warmup, gradient clipping and an
exponential moving average (EMA) of the weights, which is what we sample from. The run is cached under the hash of
its config: if it exists it is reused; if it was interrupted it resumes exactly.
"""),
    code('''\
run = ctx.train(config, data=data)
print(f"run {run.key}: {'reused from cache' if run.reused else 'trained'} — {config.steps} steps of batch "
      f"{config.batch_size}, {run.wall_s:.0f} s on {run.hardware}")
report.show(report.plot_loss_curves({"linear schedule": run.log()}, ctx.figure("loss_ddpm",
            f"Training loss (DDPM eq. 14) of the {preset} UNet on {dataset}, batch {batch_size}; faint: each logged "
            "mean, bold: moving average."), title="DDPM training loss"))
ctx.table("train_ddpm", [experiments.train_row(ctx, run, "DDPM, linear schedule")], "DDPM training run (notebook 01)")
'''),
    md(r"""
## Sampling: DDPM ancestral sampling (Algorithm 2)

Sampling runs the learned reverse chain from $x_{T} \sim \mathcal N(0, I)$ down to $x_0$. Each step predicts the
noise and draws from a Gaussian around the posterior mean (DDPM Algorithm 2):

$$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big) + \sigma_t z,
\qquad z \sim \mathcal N(0, I),\ \ z = 0 \text{ at the last step},$$

with $\sigma_t^2 = \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$ (`variance="fixed_small"`).
That is $T$ network evaluations per image. With `clip_denoised` the step is taken in its equivalent form through the
predicted clean image, $\tilde\mu_t(x_t, \hat x_0)$ (DDPM eq. 7), with $\hat x_0$ clamped to $[-1, 1]$ as in Ho et al.'s
released sampler: an under-trained model then cannot drift into saturated, single-colour images. Every image starts from its own seeded $x_T$, so the grid is
reproducible.
"""),
    code('''\
grid = experiments.sample_grid(ctx, run, n=grid_samples, pool=ddpm_fid_samples, sampler="ddpm", batch_size=sample_batch,
                               clip=clip_denoised)
report.show(report.save_image_grid(grid, ctx.figure("samples_ddpm", f"{grid_samples} DDPM samples (T = {timesteps} "
            f"ancestral steps, EMA weights) of the {preset} UNet after {train_steps} training steps: the first "
            f"{grid_samples} of the {ddpm_fid_samples} scored below."), scale=3))
'''),
    md(r"""
### The denoising trajectory

Along the way the model's current guess of the clean image is
$\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t,t))/\sqrt{\bar\alpha_t}$ (DDPM eq. 15). Coarse layout and colour
appear first, at high noise; detail is decided in the last steps.
"""),
    code('''\
trained = run.load(ctx.device)
traj = report.record_trajectory(trained.model, trained.schedule, num=2, sampler="ddpm", frames=trajectory_frames, seed=0,
                                clip=clip_denoised)
report.show(report.save_trajectory(traj, ctx.figure("trajectory_ddpm", "DDPM denoising trajectory: x_t (rows 1, 3) "
            "and the model's prediction x̂_0 (rows 2, 4) at evenly spaced steps."), title="DDPM trajectory"))
'''),
    md(r"""
## Scoring: FID and KID

Both compare Inception-v3 pool features (2048-d) of samples and of a reference set. **FID** fits a Gaussian to
each, $\mathrm{FID} = \lVert\mu_r-\mu_g\rVert^2 + \operatorname{Tr}\big(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2}\big)$;
it is biased upwards at small sample counts, so FIDs are only comparable at equal $n$ against the same reference.
**KID** is the unbiased squared MMD with the kernel $k(x,y) = (x^\top y/d + 1)^3$, meaningful at small $n$.
The second row scores $n$ *real* training images the same way: the value a perfect model would get at this $n$.
The standard Inception Score needs the network's classifier head, absent from the offline weights: it reads n/a.
"""),
    code('''\
rows = experiments.ddpm_table(ctx, run, n=ddpm_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, real_dataset=real_fid_dataset,
                              clip=clip_denoised)
ctx.table("ddpm", rows, "DDPM on CIFAR-10: FID and KID",
          columns=["model", "sampler", "steps", "train_steps", "fid", "kid", "kid_std", "inception_score"])
'''),
    md("## Sanity checks"),
    code('''\
import math

import torch

assert run.log() and all(math.isfinite(r["loss"]) for r in run.log()), "training loss must be finite"
assert grid.dtype == torch.uint8 and grid.shape[0] == grid_samples
assert traj["x"].shape[0] == len(traj["t"]) and traj["t"][-1] == 0
assert all(math.isfinite(r["fid"]) and r["fid"] >= 0 for r in rows)
assert not context.check_outputs(ctx.out, "01_ddpm_cifar10"), context.check_outputs(ctx.out, "01_ddpm_cifar10")
print("01: all checks passed")
'''),
]

# ----------------------------------------------------------------------------------------------------------
NB02 = [
    md(r"""
# 2. DDIM on CIFAR-10: fewer steps, same model

DDIM (Song, Meng & Ermon 2021) keeps DDPM's training objective but samples with a non-Markovian process that can
skip steps. It needs **no retraining**: this notebook reuses the model of notebook 01 (same config, same cache
entry). It measures sample quality against the number of steps $S$ and the stochasticity $\eta$, and checks the
seed report's claims about DDIM's speed and memory against DDPM, measured in the same run.
"""),
    code(COMMON + TRAIN + '''\
ddim_steps = [10, 20, 50, 100, 250, 1000]
ddim_etas = [0.0, 0.5, 1.0]
ddim_fid_samples = 100
final_fid_samples = None   # the sweep's best setting scored again with this many samples (None: skip)
final_real_dataset = None  # held-out real images scored like them: the FID floor at that count (None: skip)
consistency_samples = 8
bench_batch = 16
bench_ddim_steps = 250
bench_repeats = 2
''', tags=("parameters",)),
    code(SETUP.format(name="02_ddim_cifar10") + '''\
run = ctx.train(config)
print(f"model: run {run.key} ({'reused' if run.reused else 'trained now'}), {config.steps} steps")
'''),
    md(r"""
## The DDIM update (eq. 12)

Given the model's noise estimate, DDIM first predicts $\hat x_0$ and then moves to an earlier time $\tau_{i-1}$
of a sub-sequence $\tau$ of $S$ steps:

$$x_{\tau_{i-1}} = \sqrt{\bar\alpha_{\tau_{i-1}}}\underbrace{\frac{x_{\tau_i} - \sqrt{1-\bar\alpha_{\tau_i}}\,\varepsilon_\theta(x_{\tau_i},\tau_i)}{\sqrt{\bar\alpha_{\tau_i}}}}_{\hat x_0}
+ \underbrace{\sqrt{1-\bar\alpha_{\tau_{i-1}}-\sigma_{\tau_i}^2}\ \varepsilon_\theta(x_{\tau_i},\tau_i)}_{\text{direction to } x_t}
+ \sigma_{\tau_i} z,$$

$$\sigma_{\tau_i}(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_{\tau_{i-1}}}{1-\bar\alpha_{\tau_i}}}\sqrt{1-\frac{\bar\alpha_{\tau_i}}{\bar\alpha_{\tau_{i-1}}}}\quad\text{(eq. 16)}.$$

$\eta = 0$ is deterministic (an ODE-like map from $x_T$ to $x_0$); $\eta = 1$ with all $T$ steps is exactly DDPM's
ancestral sampler. Steps here use "leading" spacing, $\tau = \{0, k, 2k, \dots\}$ with $k = T/S$.

## Quality against steps and η

Every setting scores the same number of samples from the same initial noise, against the same reference.
"""),
    code('''\
rows = experiments.ddim_sweep(ctx, run, steps=ddim_steps, etas=ddim_etas, n=ddim_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised)
ctx.table("ddim_steps", rows, "DDIM: FID and KID against steps S and η",
          columns=["sampler", "steps", "eta", "fid", "kid", "kid_std", "s_per_image"])
'''),
    code('''\
report.show(report.plot_lines(rows, "steps", "fid", ctx.figure("ddim_fid_vs_steps", f"FID of {ddim_fid_samples} DDIM "
            "samples against the number of steps S, one line per η (same model, same initial noise)."), group="eta",
            group_label="η", logx=True, title="DDIM: FID vs steps", xlabel="steps S", ylabel="FID"))
report.show(report.plot_lines(rows, "steps", "kid", ctx.figure("ddim_kid_vs_steps", "KID (mean ± std over subsets) "
            "against S, one line per η."), group="eta", yerr="kid_std", group_label="η", logx=True,
            title="DDIM: KID vs steps", xlabel="steps S", ylabel="KID"))
'''),
    md(r"""
## The headline number: the best setting, scored with more samples

The sweep ranks settings at one small, equal sample count. FID at small $n$ is biased upwards (roughly by $c/n$),
so the lowest-FID setting is scored once more with `final_fid_samples` samples, beside as many held-out real images
scored the same way: the floor FID can reach at that count. This is the number to grade the model by.
"""),
    code('''\
final = experiments.final_fid(ctx, run, rows, n=final_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised,
                              real_dataset=final_real_dataset) if final_fid_samples else []
(ctx.table("fid_final", final, f"Headline FID: the best DDIM setting of the sweep, scored with {final_fid_samples} samples",
           columns=["model", "sampler", "steps", "eta", "train_steps", "fid", "kid", "kid_std", "chosen_from"])
 if final else "final_fid_samples is None in this profile: no headline FID")
'''),
    md(r"""
## Consistency: the same $x_T$, different numbers of steps

With $\eta = 0$ the sample is a deterministic function of $x_T$: DDIM integrates an ODE, and for a well-trained model
runs with different $S$ from the same noise give nearly the same image (DDIM §5.2), so $x_T$ works as a latent code.
Each row below uses the same eight $x_T$; the caption gives each row's mean absolute difference from the last row
(uint8 levels). Whether the rows agree is a test of the model: an under-trained network's ODE need not converge
to the images its short runs produce.
"""),
    code('''\
images, labels = experiments.consistency_rows(ctx, run, steps=ddim_steps, n=consistency_samples, pool=ddim_fid_samples,
                                              batch_size=sample_batch, clip=clip_denoised)
gaps = experiments.distance_to_last(images)
report.show(report.save_image_rows(images, ctx.figure("samples_ddim", "DDIM (η = 0) samples from the same initial noise "
            f"with S steps (rows). Mean |difference| from the {labels[-1]} row, in uint8 levels: "
            + ", ".join(f"{l}: {g:g}" for l, g in zip(labels, gaps)) + "."), row_labels=labels))
'''),
    code('''\
trained = run.load(ctx.device)
traj = report.record_trajectory(trained.model, trained.schedule, num=2, sampler="ddim", num_steps=min(50, timesteps),
                                frames=8, seed=0, clip=clip_denoised)
report.show(report.save_trajectory(traj, ctx.figure("trajectory_ddim", "DDIM (S = 50, η = 0) trajectory: x_t and the "
            "prediction x̂_0 at evenly spaced steps."), title="DDIM trajectory"))
'''),
    md(r"""
## Speed and memory: DDIM against DDPM, measured in the same run

The seed report claims a **4× speed-up at 250 steps** and **about 30 % lower peak memory** for DDIM. Both samplers
are timed here on the same model, batch and hardware, each in a fresh process (alternating DDPM, DDIM, … so a
busy machine slows both alike). *Memory*: on a GPU, `torch.cuda.max_memory_allocated` minus the weights; on a CPU,
the process's peak resident set size during sampling (Linux `VmHWM`, reset just before sampling) minus its size just
before — CPU tensors are invisible to `tracemalloc`, and `getrusage`'s peak cannot be reset (after `fork` it even
holds the parent's size), so each measurement gets a fresh process.
"""),
    code('''\
bench_rows, claims = experiments.speed_memory(ctx, run, ddim_steps=min(bench_ddim_steps, timesteps),
                                              batch_size=bench_batch, repeats=bench_repeats)
ctx.table("speed_memory", bench_rows, "DDIM against DDPM: wall time and peak memory",
          columns=[c for c in ("sampler", "steps", "batch_size", "repeats", "wall_s_each", "ms_per_step", "peak_rss_mb",
                               "sampling_rss_mb", "cuda_peak_mb", "cuda_sampling_mb") if c in bench_rows[0]])
'''),
    code('''\
report.show(report.plot_bars(bench_rows, "sampler", ["wall_s", claims["memory_key"]], ctx.figure("speed_memory",
            f"Wall time (median of {bench_repeats}) and sampling memory of one batch of {bench_batch}, DDPM against DDIM."),
            ylabels=["seconds per batch", "MB added by sampling"], title="DDPM vs DDIM: time and memory"))
ctx.note("speed_memory_claims", "**What we found.** " + claims["text"])
'''),
    md("## Sanity checks"),
    code('''\
import math

import torch

assert len(rows) == len(ddim_steps) * len(ddim_etas) and all(math.isfinite(r["fid"]) for r in rows)
assert all(img.dtype == torch.uint8 for img in images)
assert claims["speedup"] > 0 and all(r["wall_s"] > 0 for r in bench_rows)
assert not context.check_outputs(ctx.out, "02_ddim_cifar10"), context.check_outputs(ctx.out, "02_ddim_cifar10")
print("02: all checks passed")
'''),
]

# ----------------------------------------------------------------------------------------------------------
NB03 = [
    md(r"""
# 3. Latent diffusion with classifier-free guidance on Tiny-ImageNet-100

Two ideas that made diffusion practical at scale. **Latent diffusion** (Rombach et al. 2022) first trains an
autoencoder that compresses an image into a small latent $z$, then runs the diffusion model on $z$: every sampling
step becomes far cheaper, and the decoder restores the pixels once at the end. **Classifier-free guidance** (Ho &
Salimans 2022) trains one class-conditional network that also knows the unconditional case, and at sampling time
pushes the prediction away from the unconditional one — trading diversity for fidelity with a single knob $s$.

The data is Tiny-ImageNet-100 (64×64; the offline stand-in for the seed report's ImageNet-100 at 128×128); on a
CPU the profile keeps the first classes only. Everything is cached: the VAE, its latents, the diffusion model, the
classifier and the sweep.
"""),
    code(COMMON + """\
# data: the first classes of Tiny-ImageNet-100 (data_limit = 500 images per class) and their validation images
latent_dataset = "tiny-imagenet-100:train"
latent_data_limit = 5000
latent_reference = "tiny-imagenet-100:val"
latent_reference_limit = 500
guidance_reference_count = 1000   # FID/KID reference: this many training images of the same classes (None: all)
# the KL autoencoder (ddlib.vae)
vae_preset = "small"
vae_overrides = {}
vae_steps = 1000
vae_batch_size = 32
vae_lr = 4e-4
# the class-conditional latent diffusion model
latent_preset = "tiny"
latent_unet_overrides = {}
latent_timesteps = 1000
beta_start = 1e-4
beta_end = 0.02
latent_train_steps = 6000
latent_batch_size = 64
latent_lr = 5e-4
p_uncond = 0.1
warmup_steps = 100
ema_decay = 0.995
train_seed = 0
# the classifier that scores class consistency, and the guidance sweep
classifier_steps = 400
guidance_scales = [0.0, 1.0, 1.5, 2.0, 3.0, 5.0]
guidance_samples = 100
guidance_ddim_steps = 50
per_class_classes = 6
per_class_samples = 8
per_class_scale = 3.0
sample_batch = 100
""", tags=("parameters",)),
    code("""\
from ddlib.lab import context, experiments, figures as report
from ddlib.data import load_dataset

ctx = context.start(profile, "03_latent_cfg", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
data = load_dataset(latent_dataset, limit=latent_data_limit, progress=False)
val = load_dataset(latent_reference, limit=latent_reference_limit, progress=False)
print(f"train: {data.name}, {len(data)} images of {len(data.labels_present)} classes, {data.image_size}×{data.image_size}; "
      f"validation: {len(val)} images of {len(val.labels_present)} classes")
"""),
    md(r"""
## The autoencoder

The encoder $\mathcal E$ maps $x$ to a diagonal Gaussian $q(z\mid x) = \mathcal N(\mu, \sigma^2)$ over a latent $f$
times smaller per side; the decoder $\mathcal D$ maps back. Training minimises (LDM's KL-regularised autoencoder,
without its perceptual and adversarial terms)

$$L = \lVert x - \mathcal D(z)\rVert_1 + w_\text{KL}\,\mathrm{KL}\big(q(z\mid x)\,\Vert\,\mathcal N(0, I)\big),\qquad
z = \mu + \sigma\odot\varepsilon,\quad w_\text{KL} = 10^{-6}.$$

The tiny KL weight keeps the latent nearly deterministic but well scaled; the diffusion model then sees
$z = s\,\mu$ with $s = 1/\operatorname{std}(\mu)$ so its inputs have unit variance (LDM §4.3.2). A useful autoencoder
must reconstruct better than the trivial one that just shrinks the image by $f$ and enlarges it again (bicubic).
"""),
    code("""\
vae_config = experiments.vae_train_config(dataset=latent_dataset, data_limit=latent_data_limit, preset=vae_preset,
                                          overrides=vae_overrides, steps=vae_steps, batch_size=vae_batch_size, lr=vae_lr,
                                          warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
vae_run = experiments.train_vae_cached(ctx, vae_config, data)
fid_ref, fid_ref_label = experiments.training_reference(ctx, data, guidance_reference_count)
vae_rows, recon_rows = experiments.vae_table(ctx, vae_run, val.images, f"{latent_reference} ({len(val)} images)",
                                             reference=fid_ref, reference_label=fid_ref_label)
report.show(report.save_image_rows(recon_rows, ctx.figure("vae_reconstructions", "Validation images (top), their VAE "
            "reconstructions D(E(x)) (middle) and the bicubic down/up-sampling baseline at the same factor (bottom)."),
            row_labels=["original", "VAE", "bicubic"]))
ctx.table("vae", vae_rows, "The VAE: reconstruction quality on validation images",
          columns=["method", "latent_shape", "scale_factor", "train_steps", "psnr_db", "ssim", "fid", "kid", "train_s"],
          notes=[f"FID/KID of the {len(val)} validation images, their reconstructions and the bicubic baseline against "
                 f"{fid_ref_label}. The reconstructions' FID bounds what any latent model decoded by this VAE can reach; "
                 "the real images' FID is the floor at this sample count."])
"""),
    md(r"""
## Latent diffusion with label dropout

The latent UNet is trained exactly like the pixel model of notebook 01 (DDPM eq. 14), on $z$ instead of $x$, and
conditioned on the class $y$ through a learned embedding added to the timestep embedding. With probability
$p_\text{uncond}$ the label is replaced by a *null* class $\varnothing$, so the same network also learns
$\varepsilon_\theta(z_t, \varnothing)$, the unconditional model.
"""),
    code("""\
latent_config = experiments.diffusion_config(
    dataset=latent_dataset, data_limit=latent_data_limit, preset=latent_preset, unet=latent_unet_overrides,
    schedule="linear", schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end),
    timesteps=latent_timesteps, steps=latent_train_steps, batch_size=latent_batch_size, lr=latent_lr,
    warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed, class_conditional=True, p_uncond=p_uncond,
    hflip=False)
ldm_run = experiments.train_latent_cached(ctx, latent_config, vae_run)
report.show(report.plot_loss_curves({"latent diffusion": ldm_run.log(), "VAE (L1 + KL)": vae_run.log()},
            ctx.figure("loss_latent", "Training loss of the VAE and of the class-conditional latent diffusion model."),
            title="latent model training"))
ctx.table("train_latent", [experiments.train_row(ctx, vae_run, "VAE"), experiments.train_row(ctx, ldm_run, "latent UNet")],
          "Latent diffusion training runs (notebook 03)")
"""),
    md(r"""
## Classifier-free guidance

At sampling time the two predictions are combined (Ho & Salimans 2022, eq. 6, written with $s = 1 + w$):

$$\tilde\varepsilon_\theta(z_t, y) = \varepsilon_\theta(z_t, \varnothing) + s\,\big(\varepsilon_\theta(z_t, y) - \varepsilon_\theta(z_t, \varnothing)\big).$$

$s = 0$ is the unconditional model, $s = 1$ the plain conditional one, $s > 1$ extrapolates towards what
distinguishes class $y$. `ddlib.guidance.GuidedModel` wraps the network with this rule, so the DDIM sampler is
unchanged. The sweep samples the same labels from the same noise at each $s$, decodes with $\mathcal D$, and scores
FID/KID against training images of the same classes, and **class consistency**: the fraction of samples a
separately trained classifier assigns to the requested class (its accuracy on real validation images is given
beside it — the ceiling of that proxy).
"""),
    code("""\
classifier, classifier_info = experiments.cached_classifier(ctx, data, val, steps=classifier_steps, seed=train_seed)
rows = experiments.guidance_table(ctx, ldm_run, vae_run, classifier, classifier_info, scales=guidance_scales,
                                  n=guidance_samples, num_steps=min(guidance_ddim_steps, latent_timesteps),
                                  reference=fid_ref, reference_label=fid_ref_label, batch_size=sample_batch,
                                  classes=data.labels_present)
ctx.table("guidance_sweep", rows, "Latent DDIM + classifier-free guidance: the guidance sweep",
          columns=["scale", "steps", "fid", "kid", "kid_std", "class_consistency", "classifier_val_acc", "sample_s"])
"""),
    code("""\
report.show(report.plot_lines(rows, "scale", "fid", ctx.figure("guidance_sweep", "FID (against training images "
            "of the same classes) against the guidance scale s."), title="guidance sweep: FID",
            xlabel="guidance scale s", ylabel="FID"))
report.show(report.plot_lines(rows, "scale", "class_consistency", ctx.figure("guidance_consistency", "Class "
            "consistency of guided samples against s (the classifier's validation accuracy is the ceiling)."),
            title="guidance sweep: class consistency", xlabel="guidance scale s", ylabel="class consistency"))
"""),
    md(r"""
## Samples per class

Rows are classes, all sampled at the same guidance scale with DDIM and decoded by the VAE.
"""),
    code("""\
classes = data.labels_present[:per_class_classes]
grids = experiments.per_class_samples(ctx, ldm_run, vae_run, classes=classes, per_class=per_class_samples,
                                      scale=per_class_scale, num_steps=min(guidance_ddim_steps, latent_timesteps))
report.show(report.save_image_rows(grids, ctx.figure("samples_per_class", f"Latent DDIM samples with classifier-free "
            f"guidance s = {per_class_scale:g}, one class per row."), row_labels=[data.class_names[c][:18] for c in classes]))
"""),
    md("## Sanity checks"),
    code("""\
import math

import torch

assert all(math.isfinite(r["loss"]) for run in (vae_run, ldm_run) for r in run.log()), "losses must be finite"
assert all(math.isfinite(r["fid"]) and 0 <= r["class_consistency"] <= 1 for r in rows)
assert all(g.dtype == torch.uint8 and len(g) == per_class_samples for g in grids)
assert not context.check_outputs(ctx.out, "03_latent_cfg"), context.check_outputs(ctx.out, "03_latent_cfg")
print("03: all checks passed")
"""),
]

# ----------------------------------------------------------------------------------------------------------
NB04 = [
    md(r"""
# 4. Noise schedules: linear against cosine

The schedule decides how fast signal is destroyed, and so which noise levels the model practices on. Nichol &
Dhariwal (2021) observed that with the linear schedule the last part of the forward process is nearly pure noise and
contributes little, and proposed a cosine schedule. The seed report used its own cosine formula; this notebook
compares all three at **equal training steps**, with everything else identical.
"""),
    code(COMMON + TRAIN + '''\
schedules = ["linear", "cosine", "seed-cosine"]
schedule_train_steps = None      # None: the same steps as notebook 01 (its linear run is reused)
schedule_fid_samples = 100
schedule_ddim_steps = 100
schedule_grid_samples = 8
''', tags=("parameters",)),
    code(SETUP.format(name="04_cosine_schedule") + '''\
configs = experiments.schedule_configs(
    schedules, beta_start=beta_start, beta_end=beta_end, dataset=dataset, data_limit=data_limit, preset=preset,
    unet=unet_overrides, timesteps=timesteps, steps=schedule_train_steps or train_steps, batch_size=batch_size, lr=lr,
    warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
'''),
    md(r"""
## Three schedules

* **linear** (Ho et al.): $\beta_t$ from $\beta_1$ to $\beta_T$ evenly; $\bar\alpha_t = \prod_s (1-\beta_s)$.
* **cosine** (Nichol & Dhariwal 2021, eq. 17): define $\bar\alpha$ directly,
  $$\bar\alpha_t = \frac{f(t)}{f(0)},\qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\Big),\qquad s = 0.008,$$
  with $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$ clipped at 0.999 so the last steps stay invertible. The offset $s$
  keeps $\beta$ from being vanishingly small near $t = 0$.
* **seed-cosine** (the seed report's formula): $\bar\alpha_t = \cos^2(\tfrac{\pi}{2}\,t/T)$ kept above a small
  $\epsilon = 10^{-4}$ — no offset and no clipping.

The cosine schedules fall linearly in the middle ($\log\mathrm{SNR}$ is close to linear in $t$) instead of
collapsing early, so fewer steps are wasted on near-pure noise.
"""),
    code('''\
report.show(report.plot_schedules({name: cfg.make_schedule() for name, cfg in configs.items()},
            ctx.figure("schedules_alpha_snr", f"ᾱ_t and log₁₀ SNR(t) of the linear, cosine (Nichol & Dhariwal eq. 17) "
            f"and seed-cosine schedules, T = {timesteps}.")))
'''),
    md(r"""
## Training at equal steps

Each schedule trains the same network from the same initial weights on the same batches for the same number of
steps. Note that the loss values are **not directly comparable** across schedules: the loss at a given $t$ depends on
how noisy $x_t$ is, and the schedules visit different noise levels — the cosine schedules spend more steps at
moderate noise, where predicting $\varepsilon$ is hardest. Compare the samples and FID/KID instead.
"""),
    code('''\
runs = {name: ctx.train(cfg) for name, cfg in configs.items()}
report.show(report.plot_loss_curves({name: run.log() for name, run in runs.items()}, ctx.figure("loss_schedules",
            "Training loss per schedule at equal steps (same data order, same initial weights)."),
            title="training loss by schedule"))
'''),
    md("## Quality at equal training steps"),
    code('''\
rows = experiments.schedule_comparison(ctx, runs, n=schedule_fid_samples, ddim_steps=min(schedule_ddim_steps, timesteps),
                                       reference=fid_reference, reference_count=fid_reference_count, batch_size=sample_batch,
                                       clip=clip_denoised)
ctx.table("schedules", rows, "Linear, cosine and seed-cosine schedules at equal training steps",
          columns=["schedule", "train_steps", "alpha_bar_last", "log10_snr_mid", "final_loss", "sampler", "fid", "kid",
                   "kid_std"])
'''),
    code('''\
grids = [experiments.sample_grid(ctx, run, n=schedule_grid_samples, pool=schedule_fid_samples, sampler="ddim",
                                 num_steps=min(schedule_ddim_steps, timesteps), batch_size=sample_batch,
                                 clip=clip_denoised)
         for run in runs.values()]
report.show(report.save_image_rows(grids, ctx.figure("samples_schedules", "DDIM samples (same initial noise) of the "
            "models trained with each schedule (rows)."), row_labels=list(runs)))
'''),
    md("## Sanity checks"),
    code('''\
import math

assert all(math.isfinite(r["loss"]) for run in runs.values() for r in run.log()), "losses must be finite"
assert all(math.isfinite(r["fid"]) for r in rows) and len(rows) == len(schedules)
assert not context.check_outputs(ctx.out, "04_cosine_schedule"), context.check_outputs(ctx.out, "04_cosine_schedule")
print("04: all checks passed")
'''),
]

# ----------------------------------------------------------------------------------------------------------
NB05 = [
    md(r"""
# Diffusion models on a budget: DDPM, DDIM, latent diffusion with guidance, and noise schedules
"""),
    code(COMMON, tags=("parameters",)),
    code('''\
from IPython.display import Markdown, display

from ddlib.lab import assemble, context

ctx = context.start(profile, "05_report", reports_dir=reports_dir, cache_dir=cache_dir, device="cpu")
display(Markdown(assemble.provenance_markdown(ctx.out, profile)))
'''),
    md(r"""
## 1. Published results beside this package's measurements (Table I)
"""),
    code("assemble.literature_table(ctx)"),
    md(r"""
## 2. Measured results (Table VI analogue)

One row per experiment of notebooks 01–04; the sections below give the full tables.
"""),
    code("assemble.summary_table(ctx)"),
    md(r"""
## 3. DDPM (notebook 01)

A small UNet trained with $L_\text{simple}$ (DDPM eq. 14) and sampled with Algorithm 2. The real-image row is the
FID that $n$ real images reach against the same reference — the floor at this sample count.
"""),
    code('display(assemble.show_table(ctx.out, "train_ddpm"), assemble.show_table(ctx.out, "ddpm"))'),
    md(r"""
## 4. DDIM: steps and η (notebook 02)

Same model, DDIM eq. 12 with $S$ steps and stochasticity $\eta$, equal sample counts and initial noise.
"""),
    code('display(assemble.show_table(ctx.out, "ddim_steps"), assemble.show_table(ctx.out, "fid_final"))'),
    md("## 5. Speed and memory: DDIM against DDPM (notebook 02)"),
    code('display(assemble.show_table(ctx.out, "speed_memory"), Markdown(assemble.claims_text(ctx.out)))'),
    md(r"""
## 6. Latent diffusion with classifier-free guidance (notebook 03)

A KL autoencoder maps images to latents; a class-conditional UNet is trained on the latents with label dropout, and
sampled with $\tilde\varepsilon = \varepsilon_\theta(z_t,\varnothing) + s\,\big(\varepsilon_\theta(z_t, y) - \varepsilon_\theta(z_t,\varnothing)\big)$.
"""),
    code('display(assemble.show_table(ctx.out, "vae"), assemble.show_table(ctx.out, "train_latent"),\n'
         '        assemble.show_table(ctx.out, "guidance_sweep"))'),
    md("## 7. Noise schedules (notebook 04)"),
    code('assemble.show_table(ctx.out, "schedules")'),
    md("## 8. Figures"),
    code("shown = assemble.show_figures(ctx.out)"),
    code('''\
assert (ctx.tables_dir / "literature.md").stat().st_size > 0 and (ctx.tables_dir / "summary.md").stat().st_size > 0
assert shown > 0, "the report must show the notebooks' figures"
''', tags=("remove_cell",)),
]


def main(argv: list[str]) -> int:
    targets = {"01_ddpm_cifar10": NB01, "02_ddim_cifar10": NB02, "03_latent_cfg": NB03, "04_cosine_schedule": NB04,
               "05_report": NB05}
    wanted = argv or list(targets)
    for name in wanted:
        path = HERE / f"{name}.ipynb"
        nbformat.write(notebook(targets[name], name), path)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
