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
# # 2. DDIM on CIFAR-10: fewer steps, same model
#
# DDIM (Song, Meng & Ermon 2021) keeps DDPM's training objective but samples with a non-Markovian process that can
# skip steps. It needs **no retraining**: this notebook reuses the model of notebook 01 (same config, same cache
# entry). It measures sample quality against the number of steps $S$ and the stochasticity $\eta$, and checks the
# seed report's claims about DDIM's speed and memory against DDPM, measured in the same run.

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
ddim_steps = [10, 25, 100]
ddim_etas = [0.0, 1.0]
ddim_fid_samples = 64
final_fid_samples = 64   # the sweep's best setting scored again with this many samples (None: skip)
final_real_dataset = "cifar10:train"   # held-out real images scored like them: the FID floor at that count (None: skip)
consistency_samples = 8
ablation_steps = [25, 100]  # the deterministic-DDIM clipping ablation: S values (each in ddim_steps: the clipped cell reuses the sweep)
ablation_samples = 64      # samples per (convention, S), same per-image seeds
bench_batch = 4
bench_ddim_steps = 250
bench_repeats = 1

# %%
from ddlib.lab import context, experiments, figures
from IPython.display import display

ctx = context.start(profile, "02_ddim_cifar10", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
config = experiments.diffusion_config(
    dataset=dataset, data_limit=data_limit, preset=preset, unet=unet_overrides, schedule="linear",
    schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end), timesteps=timesteps,
    steps=train_steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
print(f"profile {profile} on {ctx.hardware}; outputs in {ctx.out}")
run = ctx.train(config)
print(f"model: run {run.key} ({'reused' if run.reused else 'trained now'}), {config.steps} steps")

# %% [markdown]
# ## The DDIM update (eq. 12)
#
# Given the model's noise estimate, DDIM first predicts $\hat x_0$ and then moves to an earlier time $\tau_{i-1}$
# of a sub-sequence $\tau$ of $S$ steps:
#
# $$x_{\tau_{i-1}} = \sqrt{\bar\alpha_{\tau_{i-1}}}\underbrace{\frac{x_{\tau_i} - \sqrt{1-\bar\alpha_{\tau_i}}\,\varepsilon_\theta(x_{\tau_i},\tau_i)}{\sqrt{\bar\alpha_{\tau_i}}}}_{\hat x_0}
# + \underbrace{\sqrt{1-\bar\alpha_{\tau_{i-1}}-\sigma_{\tau_i}^2}\ \varepsilon_\theta(x_{\tau_i},\tau_i)}_{\text{direction to } x_t}
# + \sigma_{\tau_i} z,$$
#
# $$\sigma_{\tau_i}(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_{\tau_{i-1}}}{1-\bar\alpha_{\tau_i}}}\sqrt{1-\frac{\bar\alpha_{\tau_i}}{\bar\alpha_{\tau_{i-1}}}}\quad\text{(eq. 16)}.$$
#
# **Why the marginals stay DDPM's.** DDIM replaces the Markov forward chain by a family of processes with
# $q_\sigma(x_{t-1}\mid x_t, x_0) = \mathcal N\big(\sqrt{\bar\alpha_{t-1}}\,x_0 + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,
# \tfrac{x_t - \sqrt{\bar\alpha_t}x_0}{\sqrt{1-\bar\alpha_t}},\ \sigma_t^2 I\big)$. If $x_t = \sqrt{\bar\alpha_t}x_0 +
# \sqrt{1-\bar\alpha_t}\,\varepsilon$, the fraction is $\varepsilon$, so $x_{t-1}$ has mean $\sqrt{\bar\alpha_{t-1}}x_0$ and
# variance $(1-\bar\alpha_{t-1}-\sigma_t^2)+\sigma_t^2 = 1-\bar\alpha_{t-1}$: every $q_\sigma(x_t\mid x_0)$ is DDPM's
# (Song et al., Lemma 1), so the training objective is the same and one trained $\varepsilon_\theta$ serves every
# $\sigma$, on any sub-sequence $\tau$. **What η interpolates:** $\sigma$ from 0 ($\eta = 0$: deterministic, an ODE-like
# map from $x_T$ to $x_0$) to the DDPM posterior's $\sqrt{\tilde\beta_t}$ ($\eta = 1$). With all $T$ steps, $\eta = 1$ is
# DDPM's ancestral sampler with $\sigma_t^2 = \tilde\beta_t$ (`variance="fixed_small"`) — with `clip_denoised` too,
# because `ddlib` then re-derives $\hat\varepsilon$ from the clamped $\hat x_0$, as GLIDE and diffusers'
# `use_clipped_model_output=True` do. (DDIM's released code never clips; diffusers' default clamps $\hat x_0$ but keeps
# the raw $\hat\varepsilon$ in the direction term, which breaks the identity.) Steps here use "leading" spacing,
# $\tau = \{0, k, 2k, \dots\}$ with $k = T/S$.
#
# The update in the paper's symbols, checked against the library's `ddim_step` on the same inputs:

# %%
import torch

from ddlib.samplers import ddim_step, ddpm_step

schedule = run.config.make_schedule()
g = torch.Generator().manual_seed(0)
x_t, eps_hat, z = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
t, t_prev, eta = (3 * timesteps) // 5, timesteps // 5, 0.5
abar_t, abar_prev = schedule.alphas_cumprod[t], schedule.alphas_cumprod[t_prev]
x0_hat = (x_t - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()                            # x̂_0
sigma = eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()    # σ(η), eq. 16
x_prev = abar_prev.sqrt() * x0_hat + (1 - abar_prev - sigma**2).sqrt() * eps_hat + sigma * z  # eq. 12
assert torch.allclose(x_prev, ddim_step(schedule, eps_hat, t, t_prev, x_t, eta=eta, noise=z))
# η = 1 and τ_{i−1} = t − 1: σ² = β̃_t, and the step is DDPM's, clipped or not
for clip in (False, True):
    assert torch.allclose(ddim_step(schedule, 3 * eps_hat, t, t - 1, x_t, eta=1.0, noise=z, clip=clip),
                          ddpm_step(schedule, 3 * eps_hat, t, x_t, noise=z, clip=clip))

# %% [markdown]
# ## Quality against steps and η
#
# Every setting scores the same number of samples from the same initial noise, against the same reference.

# %%
rows = experiments.ddim_sweep(ctx, run, steps=ddim_steps, etas=ddim_etas, n=ddim_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised,
                              real_dataset=final_real_dataset)
ctx.table("ddim_steps", rows, "DDIM: FID and KID against steps S and η",
          columns=["sampler", "steps", "eta", "fid", "kid", "kid_std", "s_per_image"])

# %%
floor_text = (f" Dashed: the real-image floor at n = {ddim_fid_samples} ({final_real_dataset}), band: its interval."
              if final_real_dataset else " No real-image floor in this profile (final_real_dataset is None).")
figures.show(figures.plot_lines(rows, "steps", "fid", ctx.figure("ddim_fid_vs_steps", f"FID of {ddim_fid_samples} DDIM "
            "samples against the number of steps S, one line per η (same model, same initial noise); bars: 95 % bootstrap "
            "intervals over the generated images." + floor_text), group="eta", group_label="η", logx=True,
            interval=("fid_lo", "fid_hi"), floor="floor_fid", title="DDIM: FID vs steps", xlabel="steps S", ylabel="FID"))
figures.show(figures.plot_lines(rows, "steps", "kid", ctx.figure("ddim_kid_vs_steps", f"KID of {ddim_fid_samples} DDIM "
            "samples against S, one line per η; bars: 95 % bootstrap intervals over the generated images." +
            floor_text.replace(", band: its interval", "")), group="eta", group_label="η", logx=True,
            interval=("kid_lo", "kid_hi"), floor="floor_kid", title="DDIM: KID vs steps", xlabel="steps S", ylabel="KID"))

# %% [markdown]
# ## The headline number: the leading settings, scored with more samples
#
# The sweep ranks settings at one small, equal sample count. FID at small $n$ is biased upwards (roughly by $c/n$),
# so the lowest-FID setting — and the settings the sweep could not tell from it (a paired bootstrap interval of the
# difference that holds 0) — are scored with `final_fid_samples` samples on the same seeds, beside DDPM ancestral
# sampling ($T$ steps, same seeds) and as many held-out real images scored the same way: the floor FID can reach at that
# count. When `final_fid_samples` equals the sweep's $n$ the scores are the sweep's own (nothing is resampled) and the
# table compares the leaders with DDPM at that $n$. This is the number to grade the model by.

# %%
final = experiments.final_fid(ctx, run, rows, n=final_fid_samples, reference=fid_reference,
                              reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised,
                              real_dataset=final_real_dataset, with_ddpm=True) if final_fid_samples else []
at_n = experiments.headline_scope(final_fid_samples, ddim_fid_samples)
(ctx.table("fid_final", final, f"Headline FID: the sweep's lowest-FID DDIM setting and those it did not resolve against, "
           f"{at_n}, with DDPM-{timesteps} beside them",
           columns=["model", "sampler", "steps", "eta", "train_steps", "fid", "kid", "kid_std", "chosen_from"])
 if final else "final_fid_samples is None in this profile: no headline FID")

# %% [markdown]
# ## Consistency: the same $x_T$, different numbers of steps
#
# With $\eta = 0$ the sample is a deterministic function of $x_T$: DDIM integrates an ODE, and for a well-trained model
# runs with different $S$ from the same noise give nearly the same image (DDIM §5.2), so $x_T$ works as a latent code.
# Each row below uses the same eight $x_T$; the caption gives each row's mean absolute difference from the last row
# (uint8 levels). Whether the rows agree is a test of the model: an under-trained network's ODE need not converge
# to the images its short runs produce.

# %%
images, labels = experiments.consistency_rows(ctx, run, steps=ddim_steps, n=consistency_samples, pool=ddim_fid_samples,
                                              batch_size=sample_batch, clip=clip_denoised)
gaps = experiments.distance_to_last(images)
figures.show(figures.save_image_rows(images, ctx.figure("samples_ddim", "DDIM (η = 0) samples from the same initial noise "
            f"with S steps (rows). Mean |difference| from the {labels[-1]} row, in uint8 levels: "
            + ", ".join(f"{l}: {g:g}" for l, g in zip(labels, gaps)) + "."), row_labels=labels))

# %%
trained = run.load(ctx.device)
traj = figures.record_trajectory(trained.model, trained.schedule, num=2, sampler="ddim", num_steps=min(50, timesteps),
                                frames=8, seed=0, clip=clip_denoised)
figures.show(figures.save_trajectory(traj, ctx.figure("trajectory_ddim", "DDIM (S = 50, η = 0) trajectory: x_t and the "
            "prediction x̂_0 at evenly spaced steps."), title="DDIM trajectory"))

# %% [markdown]
# ## The η = 0 pathology: which clipping convention?
#
# Earlier runs of this notebook showed deterministic DDIM getting *worse* with more steps (FID rising with $S$, grey,
# speckled samples at $S = 250$ and $1000$), and blamed "an under-trained network's ODE". At that time the step clamped
# $\hat x_0$ but kept the network's raw $\hat\varepsilon$ in the direction term. Three conventions for one $\eta = 0$
# step from $t$ to $t'$, with $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}$:
#
# - **(a) no clipping** (the DDIM paper's released `generalized_steps`):
#   $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}}\,\hat\varepsilon$;
# - **(b) clip $\hat x_0$, re-derive $\hat\varepsilon$** (`ddlib`'s `clip=True`; GLIDE; diffusers with
#   `use_clipped_model_output=True`): $\tilde x_0 = \operatorname{clip}(\hat x_0, -1, 1)$,
#   $\tilde\varepsilon = (x_t - \sqrt{\bar\alpha_t}\,\tilde x_0)/\sqrt{1-\bar\alpha_t}$,
#   $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\tilde x_0 + \sqrt{1-\bar\alpha_{t'}}\,\tilde\varepsilon$ — both terms describe one $x_0$;
# - **(c) clip $\hat x_0$, raw $\hat\varepsilon$** (the old convention; diffusers' `DDIMScheduler` default,
#   `clip_sample=True` with `use_clipped_model_output=False`): $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\tilde x_0 +
#   \sqrt{1-\bar\alpha_{t'}}\,\hat\varepsilon$.
#
# The two clipped conventions differ by where the clamped-off part of $\hat x_0$ goes. (b) moves it into the noise term,
# $\tilde\varepsilon = \hat\varepsilon + \sqrt{\bar\alpha_t}\,(\hat x_0 - \tilde x_0)/\sqrt{1-\bar\alpha_t}$, so $x_t =
# \sqrt{\bar\alpha_t}\,\tilde x_0 + \sqrt{1-\bar\alpha_t}\,\tilde\varepsilon$ still holds and the step is an exact DDIM step for
# that pair; (c) drops it from the state: $x^{(b)}_{t'} - x^{(c)}_{t'} = \sqrt{1-\bar\alpha_{t'}}\,\sqrt{\bar\alpha_t}\,
# (\hat x_0 - \tilde x_0)/\sqrt{1-\bar\alpha_t}$. Wherever the clamp acts, (c) shrinks $x_t$ towards 0 (grey) below what its
# noise level implies, once per step — a candidate cause of samples that get greyer with $S$; the measurement below
# decides. With $\eta = 0$, all $S$ and all three conventions start from the same per-image $x_T$ (seed $+\,i$), so every
# difference below is paired. (c) lives in the lab code (`experiments.ddim_step_raw_eps`), not in the core samplers; the
# cell checks it, and the difference above, against the equations.

# %%
x0_tilde = ((x_t - (1 - abar_t).sqrt() * eps_hat) / abar_t.sqrt()).clamp(-1, 1)              # clip(x̂_0)
x_prev_c = abar_prev.sqrt() * x0_tilde + (1 - abar_prev).sqrt() * eps_hat                        # (c): raw ε̂
eps_tilde = (x_t - abar_t.sqrt() * x0_tilde) / (1 - abar_t).sqrt()                               # (b): ε̂ re-derived
x_prev_b = abar_prev.sqrt() * x0_tilde + (1 - abar_prev).sqrt() * eps_tilde
assert torch.allclose(x_prev_c, experiments.ddim_step_raw_eps(schedule, eps_hat, t, t_prev, x_t))
assert torch.allclose(x_prev_b, ddim_step(schedule, eps_hat, t, t_prev, x_t, eta=0.0, clip=True))
assert torch.allclose(x_prev_b - x_prev_c, (1 - abar_prev).sqrt() * abar_t.sqrt() * (x0_hat - x0_tilde) / (1 - abar_t).sqrt())
print(f"fraction of x̂_0 values the clamp moved here: {float((x0_tilde != x0_hat).double().mean()):.2f}")

# %%
ablation = experiments.clip_ablation(ctx, run, steps=ablation_steps, n=ablation_samples, reference=fid_reference,
                                     reference_count=fid_reference_count, batch_size=sample_batch,
                                     real_dataset=final_real_dataset)
ctx.table("clip_ablation", ablation, f"η = 0 DDIM under three clipping conventions at S = "
          f"{' and '.join(map(str, ablation_steps))}, same "
          f"per-image seeds (ranked within each S)", columns=["steps", "convention", "fid", "kid", "sample_s"])

# %%
ablation_images = [experiments.convention_samples(ctx, run, conv, n=ablation_samples, num_steps=S,
                                                  batch_size=sample_batch)["images"][:consistency_samples]
                   for S in ablation_steps for conv in experiments.CLIP_CONVENTIONS]
ablation_labels = [f"S={S} {experiments.CLIP_CONVENTION_LABELS[c][:3]}" for S in ablation_steps
                   for c in experiments.CLIP_CONVENTIONS]
figures.show(figures.save_image_rows(ablation_images, ctx.figure("clip_ablation_samples", "The same x_T (columns) under "
            "η = 0 DDIM with (a) no clipping, (b) x̂₀ clipped and ε̂ re-derived (ddlib's clip=True), (c) x̂₀ clipped with "
            f"the raw ε̂ (the old convention), at S = {' and '.join(map(str, ablation_steps))} (rows)."), row_labels=ablation_labels))
ablation_sentences = experiments.clip_ablation_sentences(ctx, ablation, fid_reference, fid_reference_count)
ctx.note("clip_ablation_findings", "**What the ablation measured** (paired bootstrap, 95 % intervals, n = "
         f"{ablation_samples}). " + " ".join(ablation_sentences))

# %% [markdown]
# ## Speed and memory: DDIM against DDPM, measured in the same run
#
# The seed report claims a **4× speed-up at 250 steps** and **about 30 % lower peak memory** for DDIM. Both samplers
# are timed here on the same model, batch and hardware, each in a fresh process (alternating DDPM, DDIM, … so a
# busy machine slows both alike). *Memory*: on a GPU, `torch.cuda.max_memory_allocated` minus the weights; on a CPU,
# the process's peak resident set size during sampling (Linux `VmHWM`, reset just before sampling) minus its size just
# before — CPU tensors are invisible to `tracemalloc`, and `getrusage`'s peak cannot be reset (after `fork` it even
# holds the parent's size), so each measurement gets a fresh process.

# %%
bench_rows, claims = experiments.speed_memory(ctx, run, ddim_steps=min(bench_ddim_steps, timesteps),
                                              batch_size=bench_batch, repeats=bench_repeats)
ctx.table("speed_memory", bench_rows, "DDIM against DDPM: wall time and peak memory",
          columns=[c for c in ("sampler", "steps", "batch_size", "repeats", "wall_s_each", "ms_per_step", "peak_rss_mb",
                               "sampling_rss_mb", "cuda_peak_mb", "cuda_sampling_mb") if c in bench_rows[0]])

# %%
figures.show(figures.plot_bars(bench_rows, "sampler", ["wall_s", claims["memory_key"]], ctx.figure("speed_memory",
                    f"Wall time (median of {bench_repeats}) and sampling memory of one batch of {bench_batch}, DDPM against DDIM."),
                    ylabels=["seconds per batch", "MB added by sampling"], title="DDPM vs DDIM: time and memory"))
ctx.note("speed_memory_claims", "**What we found.** " + claims["text"])

# %% [markdown]
# ## Quality against wall time
#
# The speed-up holds **by construction**: DDIM and DDPM evaluate the same network once per step on the same batch, so a
# DDIM run of $S$ steps costs about $S/T$ of DDPM's time — 4× fewer steps give about 4× less time, whatever the model.
# What the timing cannot say is what those skipped steps cost in quality. The figure puts every setting of the sweep and
# DDPM-$T$ (same per-image seeds, same $n$) on one plane: FID with its interval against the measured seconds per sample
# (the time each sample set took when it was made, on this run's hardware). A setting is on the **Pareto front** when no
# other setting is both faster and lower in FID. Each DDIM setting is compared with DDPM-$T$ by a paired bootstrap of the
# FID difference (`fid_vs_ddpm`): that, not the speed-up, is the price of the speed. (The benchmark above times
# `bench_ddim_steps`; the plane shows the sweep's own $S$, whose timing comes from the same kind of run.)

# %%
pareto = experiments.quality_vs_time(ctx, run, rows, n=ddim_fid_samples, reference=fid_reference,
                                     reference_count=fid_reference_count, batch_size=sample_batch, clip=clip_denoised)
ctx.table("quality_vs_time", pareto, f"Quality against wall time: every DDIM setting of the sweep and DDPM-{timesteps}, "
          f"same per-image seeds, n = {ddim_fid_samples}", columns=["setting", "fid", "kid", "s_per_image", "pareto",
                                                                 "fid_vs_ddpm"])

# %%
figures.show(figures.plot_pareto(pareto, "s_per_image", "fid", ctx.figure("quality_vs_time", f"FID of {ddim_fid_samples} "
            f"samples (95 % intervals) against measured seconds per sample on {ctx.hardware} (batch {sample_batch}), every "
            f"DDIM (S, η) of the sweep and DDPM-{timesteps} on the same per-image seeds; ringed and joined: the Pareto "
            "front." + floor_text), label="setting", interval=("fid_lo", "fid_hi"), floor="floor_fid",
            title="Quality against wall time", xlabel="seconds per sample (log scale)", ylabel="FID"))
quality_cost = [r["fid_vs_ddpm_sentence"] for r in pareto if r["fid_vs_ddpm_sentence"]]
ctx.note("quality_vs_time_findings", "**The price of the speed-up** (paired bootstrap against DDPM-"
         f"{timesteps}, n = {ddim_fid_samples}). " + " ".join(quality_cost))

# %% [markdown]
# ## Sanity checks

# %%
import math

import torch

assert len(rows) == len(ddim_steps) * len(ddim_etas) and all(math.isfinite(r["fid"]) for r in rows)
assert all(img.dtype == torch.uint8 for img in images)
assert claims["speedup"] > 0 and all(r["wall_s"] > 0 for r in bench_rows)
assert len(ablation) == 3 * len(ablation_steps) and all(math.isfinite(r["fid"]) for r in ablation)
assert len(pareto) == len(rows) + 1 and any(r["pareto"] for r in pareto)
assert not context.check_outputs(ctx.out, "02_ddim_cifar10"), context.check_outputs(ctx.out, "02_ddim_cifar10")
print("02: all checks passed")

# %% [markdown]
# ## What this notebook showed
#
# - One trained ε-model serves every DDIM sampler: $S$ and $\eta$ were varied without retraining, on the same per-image
#   $x_T$, and the DDIM step was checked against its equation, with the $\eta = 1$, $S = T$ identity to DDPM's step
#   holding with clipping on (because `ddlib` re-derives $\hat\varepsilon$ from the clipped $\hat x_0$).
# - Which settings the data can tell apart: every ranking below is a paired bootstrap interval at the $n$ it states,
#   and "not resolved" is a result, not a failure.
# - The clipping ablation separates the three conventions on the same $x_T$; its sentences below say, per $S$, which
#   convention the intervals resolve, and whether FID rises with $S$ under each.
# - DDIM's speed-up is a ratio of step counts; the quality it costs is the paired FID difference from DDPM-$T$.
#
# **What it cannot show at this budget.** The model is a tiny UNet trained for minutes on a CPU and each setting is
# scored on tens of samples: FIDs sit far above the real-image floor and most differences between settings are not
# resolved at this $n$, so the sweep cannot show the fine trade-offs of DDIM's Table 1, and the timing is of one
# CPU. The `quick` ablation stops at $S = 100$, short of the $S = 250$ and $1000$ where the grey samples were seen; the
# `gpu` and `paper` profiles reach further. The measured sentences:

# %%
lead_sweep = [r["fid_ranking"] for r in rows if r.get("fid_vs_lowest") == "lowest"]
lead_final = [r["fid_ranking"] for r in final if r.get("fid_vs_lowest") == "lowest"]
for line in [f"Sweep (n = {ddim_fid_samples}): " + (lead_sweep[0] if lead_sweep else "n/a: fewer than two scored settings"),
             (f"Headline, {at_n}: " + (lead_final[0] if lead_final else "n/a: fewer than two scored rows"))
             if final else "Headline: n/a (final_fid_samples is None in this profile)",
             *(f"Clipping ablation: {s}" for s in ablation_sentences),
             f"Consistency: mean |difference| from the {labels[-1]} row, uint8 levels: "
             + ", ".join(f"{l}: {g:g}" for l, g in zip(labels, gaps)),
             "Speed: " + claims["text"],
             *(f"Quality cost: {s}" for s in quality_cost)]:
    print("-", line)

# %% [markdown]
# ## Exercises
#
# As in notebook 01: write each function between the lines that say `YOUR CODE HERE`, run its **check yourself**
# cell; hidden tests, run with ddlib's own samplers switched off, carry the points. This section stands alone: run
# its first cell, then any exercise. Steps are 0-indexed, $t \in \{0, \dots, T-1\}$, $\bar\alpha_{-1} = 1$.

# %% nbgrader={"grade": false, "grade_id": "exercises_setup_02", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import numpy as np
import torch

# %% [markdown]
# ### Exercise 2.1 — one DDIM step with $\eta$ (3 points)
#
# Song et al. (2021), eq. 12, from $t$ to an earlier $t_\text{prev}$ (write $\bar\alpha_\text{prev}$; it is $1$ for the
# final step to the clean sample), with the noise level of their eq. 16:
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}},\qquad
# \sigma(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_\text{prev}}{1-\bar\alpha_t}}\,\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_\text{prev}}},$$
# $$x_\text{prev} = \sqrt{\bar\alpha_\text{prev}}\,\hat x_0 + \sqrt{1-\bar\alpha_\text{prev}-\sigma^2}\;\hat\varepsilon + \sigma z .$$
# `alpha_bar_t` and `alpha_bar_prev` are Python floats, `z` the standard normal noise to use.

# %% nbgrader={"grade": false, "grade_id": "ddim_reverse_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ddim_reverse_step(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, eta, z):
    """x_prev from x_t and ε̂ by one DDIM step (eq. 12) with σ(η) of eq. 16; η = 0 is deterministic."""
    ### BEGIN SOLUTION
    x0_hat = (x_t - math.sqrt(1 - alpha_bar_t) * eps_hat) / math.sqrt(alpha_bar_t)
    sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * math.sqrt(1 - alpha_bar_t / alpha_bar_prev)
    direction = math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0))  # the "direction pointing to x_t"
    return math.sqrt(alpha_bar_prev) * x0_hat + direction * eps_hat + sigma * z
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "ddim_reverse_step_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself: the last step (ᾱ_prev = 1) returns the predicted clean image x̂_0
_x, _e = torch.tensor([1.4]), torch.tensor([1.0])
assert torch.allclose(ddim_reverse_step(_x, _e, 0.64, 1.0, 0.0, torch.zeros(1)), torch.tensor([1.0])), \
    "ᾱ_prev = 1 must give x̂_0 = (1.4 − 0.6·1)/0.8 = 1"
print("ddim_reverse_step: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "ddim_reverse_step_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# hidden tests (3 points)
### BEGIN HIDDEN TESTS
_zero = torch.zeros(2, dtype=torch.float64)
_z = torch.tensor([1.0, -0.5], dtype=torch.float64)
# η = 0, by hand: ᾱ_t = 0.36, ᾱ_prev = 0.64, x_0 = 1, ε = 0.5 → x_t = 0.6 + 0.4 = 1, x_prev = 0.8 + 0.6·0.5 = 1.1
_x, _e = torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
assert torch.allclose(ddim_reverse_step(_x, _e, 0.36, 0.64, 0.0, _z), torch.full((2,), 1.1, dtype=torch.float64), atol=1e-9), \
    "η = 0: x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̂, with no noise"
# η = 1 between consecutive steps is DDPM's posterior: σ² = β̃_t. For β = (0.1, 0.2): ᾱ = (0.9, 0.72), β̃_1 = 1/14
_x, _e = torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
for _eta in (1.0, 0.5):
    _sig = (ddim_reverse_step(_x, _e, 0.72, 0.9, _eta, _z) - ddim_reverse_step(_x, _e, 0.72, 0.9, _eta, _zero)) / _z
    assert torch.allclose(_sig, torch.full((2,), _eta * math.sqrt(1 / 14), dtype=torch.float64), atol=1e-9), \
        f"σ(η = {_eta}) must be η·√β̃_t = {_eta * math.sqrt(1 / 14):.4f} here, got {float(_sig[0]):.4f} (η where η² belongs?)"
# ... and its mean is the posterior mean μ̃_t(x_t, x̂_0), here from Bayes' rule
_x0 = (_x - math.sqrt(0.28) * _e) / math.sqrt(0.72)
_v = 1 / (1 / 0.1 + 0.8 / 0.2)
_m = _v * (math.sqrt(0.9) * _x0 / 0.1 + math.sqrt(0.8) * _x / 0.2)
assert torch.allclose(ddim_reverse_step(_x, _e, 0.72, 0.9, 1.0, _zero), _m, atol=1e-9), \
    "η = 1 between consecutive steps must give DDPM's posterior mean"
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2.2 — DDIM timestep spacings (2 points)
#
# The $S$ timesteps a DDIM sampler visits, as a list of ints in **descending** order, 0-indexed, with the meanings of
# `ddlib.samplers.ddim_timesteps`:
#
# - `"leading"`: $0, k, 2k, \dots, (S-1)k$ with $k = \lfloor T/S \rfloor$ (the DDIM paper);
# - `"trailing"`: $\operatorname{round}(T - iT/S) - 1$ for $i = 0, \dots, S-1$, so the first step starts at $T-1$ (Lin et al. 2024);
# - `"linspace"`: $S$ values rounded from an even grid over $[0, T-1]$, both ends included.
#
# Drop duplicates (rounding can make them when $S$ is close to $T$).

# %% nbgrader={"grade": false, "grade_id": "ddim_spacing", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ddim_spacing(T, S, spacing):
    """The S timesteps of a DDIM sampler for T training steps, descending; spacing: leading | trailing | linspace."""
    ### BEGIN SOLUTION
    if spacing == "leading":
        ts = [i * (T // S) for i in range(S)]
    elif spacing == "trailing":
        ts = [round(T - i * T / S) - 1 for i in range(S)]
    elif spacing == "linspace":
        ts = [round(i * (T - 1) / (S - 1)) if S > 1 else 0 for i in range(S)]
    else:
        raise ValueError(f"unknown spacing {spacing!r}")
    return sorted({int(v) for v in ts}, reverse=True)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "ddim_spacing_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself
assert ddim_spacing(1000, 10, "leading") == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
assert ddim_spacing(1000, 10, "trailing")[0] == 999, "trailing starts at the last training step, T − 1"
print("ddim_spacing: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "ddim_spacing_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# hidden tests (2 points)
### BEGIN HIDDEN TESTS
# by hand: T = 10, S = 3 → leading k = 3; trailing round(10, 6.67, 3.33) − 1; linspace over [0, 9] with S = 4
assert list(ddim_spacing(10, 3, "leading")) == [6, 3, 0], "leading, T = 10, S = 3"
assert list(ddim_spacing(10, 3, "trailing")) == [9, 6, 2], "trailing, T = 10, S = 3: round(T − iT/S) − 1"
assert list(ddim_spacing(10, 4, "linspace")) == [9, 6, 3, 0], "linspace, T = 10, S = 4"
assert list(ddim_spacing(1000, 10, "trailing")) == [999 - 100 * i for i in range(10)], "trailing, T = 1000, S = 10"
assert list(ddim_spacing(1000, 10, "linspace")) == [999 - 111 * i for i in range(10)], "linspace, T = 1000, S = 10"
for _spacing in ("leading", "trailing", "linspace"):
    for _S in (1, 7, 50, 1000):
        _ts = [int(v) for v in ddim_spacing(1000, _S, _spacing)]
        assert len(_ts) == _S and all(a > b for a, b in zip(_ts, _ts[1:])), f"{_spacing}, S = {_S}: S distinct steps, descending"
        assert 0 <= _ts[-1] and _ts[0] <= 999, f"{_spacing}, S = {_S}: every step must lie in 0..T−1"
    assert [int(v) for v in ddim_spacing(1000, 1000, _spacing)] == list(range(999, -1, -1)), f"{_spacing}: S = T visits every step"
### END HIDDEN TESTS

# %% [markdown]
# ### Question 2.3 — predict before you run (1 point, graded by hand)
#
# Two DDIM runs start from the **same** $x_T$ with the same model, 10 steps each. (a) With $\eta = 0$, do they end at
# the same image? (b) With $\eta = 1$? (c) With $\eta = 1$ and $S = T$ steps, which sampler is DDIM then? Answer, then
# run the cell below (a toy "model" stands in for the network).

# %% [markdown] nbgrader={"grade": true, "grade_id": "q2_predict_eta", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# **Rubric (1 point, a third each).** (a) Yes: with η = 0, σ = 0 and every step is a deterministic function of
# x_t, so the whole sampler is a deterministic map x_T ↦ x_0 (this is what makes DDIM latents invertible).
# (b) No: with η = 1 each step adds σ z with fresh noise, so runs differ unless the noise is seeded identically.
# (c) DDPM ancestral sampling with σ_t² = β̃_t (Song et al. §4.1; the η = 1, t_prev = t − 1 case of eq. 16).
# ### END SOLUTION

# %%
from ddlib.samplers import ddim_sample
from ddlib.schedules import make_schedule

_toy = lambda x, t: 0.5 * x  # a stand-in ε-model
_s, _xT = make_schedule("linear", 100), torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
for _eta in (0.0, 1.0):
    _a, _b = (ddim_sample(_toy, _s, _xT.shape, num_steps=10, eta=_eta, x_T=_xT, progress=False) for _ in range(2))
    print(f"η = {_eta}: same result twice? {torch.equal(_a, _b)}")
