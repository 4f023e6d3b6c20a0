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
# # 3. Latent diffusion with classifier-free guidance on Tiny-ImageNet-100
#
# Two ideas that made diffusion practical at scale. **Latent diffusion** (Rombach et al. 2022) first trains an
# autoencoder that compresses an image into a small latent $z$, then runs the diffusion model on $z$: every sampling
# step becomes far cheaper, and the decoder restores the pixels once at the end. **Classifier-free guidance** (Ho &
# Salimans 2022) trains one class-conditional network that also knows the unconditional case, and at sampling time
# pushes the prediction away from the unconditional one — trading diversity for fidelity with a single knob $s$.
#
# The data is Tiny-ImageNet-100 (64×64; the offline stand-in for the seed report's ImageNet-100 at 128×128); on a
# CPU the profile keeps the first classes only. Everything is cached: the VAE, its latents, the diffusion model, the
# classifier and the sweep.

# %% tags=["parameters"]
profile = "quick"          # the profile these values come from (papermill passes the real one)
reports_dir = "reports"    # outputs go to <reports_dir>/<profile>/ (relative to the repository root)
cache_dir = None           # checkpoints and cached metrics; None: .cache/ddlib/report
device = "auto"            # "auto": CUDA if available, else CPU
torch_threads = None       # None: PyTorch's default
# data: the first classes of Tiny-ImageNet-100 (data_limit = 500 images per class) and their validation images
latent_dataset = "tiny-imagenet-100:train"
latent_data_limit = 5000
latent_reference = "tiny-imagenet-100:val"
latent_reference_limit = 128
guidance_reference_count = 500   # FID/KID reference: this many training images of the same classes (None: all)
# the KL autoencoder (ddlib.vae)
vae_preset = "test"
vae_overrides = {}
vae_steps = 800
vae_batch_size = 16
vae_lr = 0.0005
# the class-conditional latent diffusion model
latent_preset = "tiny"
latent_unet_overrides = {}
latent_timesteps = 1000
beta_start = 0.0001
beta_end = 0.02
latent_train_steps = 2500
latent_batch_size = 64
latent_lr = 0.0005
p_uncond = 0.1
warmup_steps = 100
ema_decay = 0.995
train_seed = 0
# the classifier that scores class consistency, and the guidance sweep
classifier_steps = 200
guidance_scales = [0.0, 1.0, 3.0, 5.0]
guidance_samples = 128
guidance_ddim_steps = 50
per_class_classes = 10
per_class_samples = 2
per_class_scales = [0.0, 1.0, 3.0, 5.0]   # the per-class figure: the same x_T per (class, sample) at each s
sample_batch = 64

# %%
from ddlib.lab import context, experiments, figures
from IPython.display import display
from ddlib.data import load_dataset

ctx = context.start(profile, "03_latent_cfg", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                     torch_threads=torch_threads)
data = load_dataset(latent_dataset, limit=latent_data_limit, progress=False)
val = load_dataset(latent_reference, limit=latent_reference_limit, progress=False)
print(f"train: {data.name}, {len(data)} images of {len(data.labels_present)} classes, {data.image_size}×{data.image_size}; "
      f"validation: {len(val)} images of {len(val.labels_present)} classes")

# %% [markdown]
# ## The autoencoder
#
# The encoder $\mathcal E$ maps $x$ to a diagonal Gaussian $q(z\mid x) = \mathcal N(\mu, \sigma^2)$ over a latent $f$
# times smaller per side; the decoder $\mathcal D$ maps back. Training minimises (LDM's KL-regularised autoencoder,
# without its perceptual and adversarial terms)
#
# $$L = \lVert x - \mathcal D(z)\rVert_1 + w_\text{KL}\,\mathrm{KL}\big(q(z\mid x)\,\Vert\,\mathcal N(0, I)\big),\qquad
# z = \mu + \sigma\odot\varepsilon,\quad w_\text{KL} = 10^{-6}.$$
#
# The tiny KL weight keeps the latent nearly deterministic but well scaled; the diffusion model then sees
# $z = \lambda\,\mu$ with the **latent scale factor** $\lambda = 1/\operatorname{std}(\mu)$ (LDM §4.3.2 and its code's
# `scale_factor`), so its inputs have unit variance like the $[-1, 1]$ pixels the schedule was designed for: with
# $\operatorname{std}(z) \ne 1$ the same $\bar\alpha_t$ would mean a different signal-to-noise ratio. (In these notebooks
# $s$ is reserved for the guidance scale.) A useful autoencoder
# must reconstruct better than the trivial one that just shrinks the image by $f$ and enlarges it again (bicubic).
# That comparison is not at equal storage: the latent keeps $c\cdot\frac{H}{f}\cdot\frac{W}{f}$ numbers per image, the
# shrunk image $3\cdot\frac{H}{f}\cdot\frac{W}{f}$, so with $c = 4$ the latent holds $4/3$ as many. The table adds a
# third row, bicubic through the square size $h$ whose $3h^2$ is closest to the latent's count, and a
# `values_per_image` column, so the VAE is also read against a baseline that keeps (almost) as many numbers.

# %%
vae_config = experiments.vae_train_config(dataset=latent_dataset, data_limit=latent_data_limit, preset=vae_preset,
                                          overrides=vae_overrides, steps=vae_steps, batch_size=vae_batch_size, lr=vae_lr,
                                          warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed)
vae_run = experiments.train_vae_cached(ctx, vae_config, data)
fid_ref, fid_ref_label = experiments.training_reference(ctx, data, guidance_reference_count)
vae_rows, recon_rows = experiments.vae_table(ctx, vae_run, val.images, f"{latent_reference} ({len(val)} images)",
                                             reference=fid_ref, reference_label=fid_ref_label)
figures.show(figures.save_image_rows(recon_rows, ctx.figure("vae_reconstructions", "Validation images (top), their VAE "
                    "reconstructions D(E(x)), the bicubic down/up-sampling baseline at the same factor, and bicubic through "
                    "the size that keeps about as many values per image as the latent (bottom)."),
                    row_labels=["original", "VAE", "bicubic ↓f", "bicubic ≈ values"]))
ctx.table("vae", vae_rows, "The VAE: reconstruction quality on validation images",
          columns=["method", "latent_shape", "values_per_image", "scale_factor", "train_steps", "psnr_db", "ssim", "fid",
                   "kid", "train_s"],
          notes=[f"FID/KID of the {len(val)} validation images, their reconstructions and the bicubic baselines against "
                 f"{fid_ref_label}. The reconstructions' FID is a heuristic reference for latent models decoded by this "
                 "VAE, not a bound (their samples are not reconstructions), and compares with them only at matched n "
                 f"(here n = {len(val)}; the guidance sweep uses n = {guidance_samples}); the real images' FID is the "
                 "floor at this sample count.", experiments.values_sentence(vae_rows)])
print(experiments.values_sentence(vae_rows))

# %% [markdown]
# ## Latent diffusion with label dropout
#
# The latent UNet is trained exactly like the pixel model of notebook 01 (DDPM eq. 14), on $z$ instead of $x$, and
# conditioned on the class $y$ through a learned embedding added to the timestep embedding. With probability
# $p_\text{uncond}$ the label is replaced by a *null* class $\varnothing$, so the same network also learns
# $\varepsilon_\theta(z_t, \varnothing)$, the unconditional model.

# %%
latent_config = experiments.diffusion_config(
    dataset=latent_dataset, data_limit=latent_data_limit, preset=latent_preset, unet=latent_unet_overrides,
    schedule="linear", schedule_params=experiments.schedule_params_for("linear", beta_start, beta_end),
    timesteps=latent_timesteps, steps=latent_train_steps, batch_size=latent_batch_size, lr=latent_lr,
    warmup_steps=warmup_steps, ema_decay=ema_decay, seed=train_seed, class_conditional=True, p_uncond=p_uncond,
    hflip=False)
ldm_run = experiments.train_latent_cached(ctx, latent_config, vae_run)
figures.show(figures.plot_loss_curves({"latent diffusion": ldm_run.log(), "VAE (L1 + KL)": vae_run.log()},
                    ctx.figure("loss_latent", "Training loss of the VAE (L1 + w_KL·KL) and of the class-conditional latent "
                    "diffusion model (‖ε − ε_θ‖², DDPM eq. 14): two different losses on one log axis."),
                    title="latent model training", ylabel="training loss (latent UNet: ‖ε − ε_θ‖²; VAE: L1 + w_KL·KL)"))
ctx.table("train_latent", [experiments.train_row(ctx, vae_run, "VAE"), experiments.train_row(ctx, ldm_run, "latent UNet")],
          "Latent diffusion training runs (notebook 03)")

# %% [markdown]
# ## Classifier-free guidance
#
# At sampling time the two predictions are combined (Ho & Salimans 2022, eq. 6, written with $s = 1 + w$):
#
# $$\tilde\varepsilon_\theta(z_t, y) = \varepsilon_\theta(z_t, \varnothing) + s\,\big(\varepsilon_\theta(z_t, y) - \varepsilon_\theta(z_t, \varnothing)\big).$$
#
# $s = 0$ is the unconditional model, $s = 1$ the plain conditional one, $s > 1$ extrapolates towards what
# distinguishes class $y$. `ddlib.guidance.GuidedModel` wraps the network with this rule, so the DDIM sampler is
# unchanged. The sweep samples the same labels from the same noise at each $s$, decodes with $\mathcal D$, and scores
# FID/KID against training images of the same classes, and **class consistency**: the fraction of samples a
# separately trained classifier assigns to the requested class. Its accuracy on real validation images is given
# beside it as a reference point, not a ceiling: guidance pushes samples towards what is most typical of the class,
# which a classifier recognises more easily than real images, so guided samples can score above it.
# Consistency is a proportion over $n$ samples, so it carries a Wilson 95 % interval; because sample $i$ has the same
# $x_T$ and label at every $s$, each $s$ is compared with $s = 0$ **paired** (the same indices resampled). FID carries
# its bootstrap interval and is read against the real-image floor at the same $n$: held-out validation images of the
# same classes against the same reference.
#
# Why this works: by Bayes' rule $\nabla\log p(z_t\mid y) - \nabla\log p(z_t) = \nabla\log p(y\mid z_t)$, and an
# ε-prediction is a scaled score, $\varepsilon = -\sqrt{1-\bar\alpha_t}\,\nabla\log p$. So
# $\tilde\varepsilon = \varepsilon_\varnothing - s\sqrt{1-\bar\alpha_t}\,\nabla\log p(y\mid z_t)$: guidance adds the
# gradient of an **implicit classifier** $p(y\mid z_t)$ with weight $s$, i.e. it samples (approximately) from
# $p(z_t)\,p(y\mid z_t)^{s}$. Notebook 00 checks this identity exactly on a toy mixture. The combination in the
# paper's symbols, against the library's wrapper:

# %%
import torch

from ddlib.guidance import GuidedModel
from ddlib.train import load_trained

latent_net = load_trained(ldm_run.run_dir, device="cpu").model
z_t = torch.randn((2,) + (latent_net.config.in_channels, latent_net.config.image_size, latent_net.config.image_size),
                  generator=torch.Generator().manual_seed(0))
t, y, null = torch.tensor([500, 100]) % latent_timesteps, torch.tensor([0, 1]), torch.full((2,), latent_net.config.num_classes)
with torch.no_grad():
    eps_y, eps_null = latent_net(z_t, t, y), latent_net(z_t, t, null)         # ε_θ(z_t, y), ε_θ(z_t, ∅)
    s = max(guidance_scales)
    eps_guided = eps_null + s * (eps_y - eps_null)              # ε̃ = ε_∅ + s (ε_y − ε_∅)
    assert torch.allclose(eps_guided, GuidedModel(latent_net, s)(z_t, t, y), atol=1e-5)

# %%
held = experiments.held_out(latent_reference, data.labels_present)   # all validation images of the trained classes
print(f"held out: {len(held.images)} images of {held.name}")
classifier, classifier_info = experiments.cached_classifier(ctx, data, held, steps=classifier_steps, seed=train_seed)
floor = experiments.guidance_floor(ctx, held.images, held.labels, data.labels_present, guidance_samples,
                                   reference=fid_ref, dataset=latent_reference, seed=train_seed)  # real images at the sweep's n
rows = experiments.guidance_table(ctx, ldm_run, vae_run, classifier, classifier_info, scales=guidance_scales,
                                  n=guidance_samples, num_steps=min(guidance_ddim_steps, latent_timesteps),
                                  reference=fid_ref, reference_label=fid_ref_label, batch_size=sample_batch,
                                  classes=data.labels_present, floor=floor)
ctx.table("guidance_sweep", rows, "Latent DDIM + classifier-free guidance: the guidance sweep",
          columns=["scale", "steps", "fid", "kid", "kid_std", "class_consistency", "class_consistency_lo",
                   "class_consistency_hi", "consistency_vs_lowest_scale", "classifier_val_acc", "sample_s"],
          notes=["class consistency [lo, hi]: Wilson 95 % interval over the n samples (each sample its own x_T); "
                 "consistency_vs_lowest_scale: the paired difference from the lowest s over the same sample indices "
                 "(95 % bootstrap), resolved when it excludes 0.",
                 f"classifier_val_acc: accuracy on {classifier_info['val_n']} real validation images, Wilson 95 % "
                 f"[{classifier_info['val_lo']:.3f}, {classifier_info['val_hi']:.3f}]."]
                + ([floor["reason"]] if floor.get("fid") is None else []))

# %%
K = len(data.labels_present)
figures.show(figures.plot_intervals(rows, "scale", "fid", ctx.figure("guidance_sweep", f"FID of n = {guidance_samples} "
            "samples (against training images of the same classes) against the guidance scale s, with 95 % bootstrap "
            "intervals; the band is the real-image floor: as many held-out validation images of the same classes "
            "against the same reference" + ("" if floor.get("fid") is not None else f" ({floor.get('reason')})") + "."),
            lo="fid_lo", hi="fid_hi", label="guided samples (95 % bootstrap)",
            bands=[(f"real-image floor (n = {guidance_samples})", floor.get("fid"), floor.get("fid_lo"), floor.get("fid_hi"))],
            title="guidance sweep: FID", xlabel="guidance scale s", ylabel=f"FID (n = {guidance_samples})"))
figures.show(figures.plot_intervals(rows, "scale", "class_consistency", ctx.figure("guidance_consistency", "Class "
            f"consistency of n = {guidance_samples} guided samples against s, Wilson 95 % intervals; the band is the "
            f"classifier's accuracy on {classifier_info['val_n']} real validation images with its Wilson interval (a "
            f"reference point, not a ceiling), the dashed line chance 1/K = 1/{K}."),
            lo="class_consistency_lo", hi="class_consistency_hi",
            bands=[(f"classifier on real val. images (n = {classifier_info['val_n']})", classifier_info["val_accuracy"],
                    classifier_info["val_lo"], classifier_info["val_hi"])], lines=[(f"chance 1/K = 1/{K}", 1 / K)],
            title="guidance sweep: class consistency", xlabel="guidance scale s", ylabel="class consistency",
            ylim=(0, 1.02), label=f"guided samples (n = {guidance_samples}, Wilson 95 %)"))
for sentence in experiments.guidance_summary(rows):
    print(sentence)

# %% [markdown]
# ## What guidance does to one image
#
# Rows are classes; the columns are grouped by the guidance scale $s$. Within a row, sample $j$ of every group starts
# from the same $x_T$ (DDIM with $\eta = 0$ is then deterministic), so the groups differ only through $s$: $s = 0$ is
# the unconditional model (the label is ignored), $s = 1$ the conditional one, larger $s$ pushes the same start
# towards what the model finds most typical of the class.

# %%
classes = data.labels_present[:per_class_classes]
scale_grids = experiments.per_class_scale_grid(ctx, ldm_run, vae_run, classes=classes, per_class=per_class_samples,
                                               scales=per_class_scales,
                                               num_steps=min(guidance_ddim_steps, latent_timesteps))
figures.show(figures.save_scale_grid(scale_grids, ctx.figure("guidance_per_class", "Latent DDIM samples, one class per "
            f"row, at guidance s = {', '.join(f'{s:g}' for s in per_class_scales)} (column groups); sample j of a row "
            "starts from the same x_T in every group."), row_labels=[data.class_names[c][:18] for c in classes]))

# %% [markdown]
# ## Sanity checks

# %%
import math

import torch

assert all(math.isfinite(r["loss"]) for run in (vae_run, ldm_run) for r in run.log()), "losses must be finite"
assert all(math.isfinite(r["fid"]) and 0 <= r["class_consistency"] <= 1 for r in rows)
assert all(g.dtype == torch.uint8 and len(g) == per_class_samples for gs in scale_grids.values() for g in gs)
assert not context.check_outputs(ctx.out, "03_latent_cfg"), context.check_outputs(ctx.out, "03_latent_cfg")
print("03: all checks passed")

# %% [markdown]
# ## What this notebook showed
#
# A KL autoencoder compresses each image to a small latent, a class-conditional UNet trained with label dropout
# samples in that latent space, and one knob $s$ moves its samples between the unconditional model ($s = 0$) and
# increasingly class-typical images. The cell below prints what this run measured: the VAE against bicubic baselines
# (including one that keeps about as many numbers per image), the FID ranking of the scales at the sweep's $n$ with
# the real-image floor at that $n$, and the paired change in class consistency from $s = 0$.
#
# What it cannot show at this CPU budget: FID at a few hundred samples is biased upwards and its intervals are wide,
# so scales often stay "not resolved" against each other; the classifier is small and weak, so consistency measures
# agreement with *it*, not with a human; the models are tiny and briefly trained, so the absolute numbers say little
# about latent diffusion at scale (the paper profile is sized for that).

# %%
print("VAE:", experiments.values_sentence(vae_rows))
for r in vae_rows:
    if r.get("fid_ranking") and r.get("fid_vs_lowest") == "lowest":
        print(f"VAE table (n = {r['n_samples']}): {r['fid_ranking']}")
print(f"Real-image floor of the VAE table at n = {vae_rows[0]['n_samples']}: FID {vae_rows[0]['fid']:.4g} "
      f"[{vae_rows[0]['fid_lo']:.4g}, {vae_rows[0]['fid_hi']:.4g}]" if vae_rows[0].get("fid") is not None
      else "VAE table: no FID reference (n/a)")
for sentence in experiments.guidance_summary(rows):
    print(sentence)
if floor.get("fid") is None:
    print("Guidance floor:", floor["reason"])

# %% [markdown]
# ## Exercises
#
# As in notebook 01: write the function between the lines that say `YOUR CODE HERE`, run its **check yourself**
# cell; hidden tests, run with ddlib's guidance switched off, carry the points. This section stands alone.

# %% nbgrader={"grade": false, "grade_id": "exercises_setup_03", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import numpy as np
import torch

# %% [markdown]
# ### Exercise 3.1 — classifier-free guidance (2 points)
#
# Ho & Salimans (2022), eq. 6: $\tilde\varepsilon = (1+w)\,\varepsilon_\theta(z_t, c) - w\,\varepsilon_\theta(z_t, \varnothing)$.
# With the guidance scale $s = 1 + w$ used in this notebook, $\tilde\varepsilon = \varepsilon_u + s\,(\varepsilon_c - \varepsilon_u)$:
# $w = 0$ ($s = 1$) is plain conditional sampling and $w = -1$ ($s = 0$) unconditional sampling.

# %% nbgrader={"grade": false, "grade_id": "cfg_eps", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cfg_eps(eps_cond, eps_uncond, w):
    """The guided noise prediction ε̃ from ε_c = ε_θ(z_t, c), ε_u = ε_θ(z_t, ∅) and the guidance weight w (s = 1 + w)."""
    ### BEGIN SOLUTION
    return (1 + w) * eps_cond - w * eps_uncond
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "cfg_eps_check", "locked": true, "schema_version": 3, "solution": false, "task": false}
# check yourself
_c, _u = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
assert torch.allclose(cfg_eps(_c, _u, 2.0), torch.tensor([3.0, 4.0])), "w = 2: 3·ε_c − 2·ε_u"
print("cfg_eps: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "cfg_eps_tests", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# hidden tests (2 points)
### BEGIN HIDDEN TESTS
_g = torch.Generator().manual_seed(3)
_c, _u = torch.randn(2, 3, 4, 4, generator=_g), torch.randn(2, 3, 4, 4, generator=_g)
assert torch.allclose(cfg_eps(_c, _u, 0.0), _c), "w = 0 (s = 1) must give the conditional prediction ε_c (ε_c and ε_u swapped?)"
assert torch.allclose(cfg_eps(_c, _u, -1.0), _u, atol=1e-6), "w = −1 (s = 0) must give the unconditional prediction ε_u"
for _w in (0.5, 3.0, 7.5):
    assert torch.allclose(cfg_eps(_c, _u, _w), _u + (1 + _w) * (_c - _u), atol=1e-5), f"w = {_w}: ε_u + (1 + w)(ε_c − ε_u)"
assert torch.allclose(cfg_eps(torch.tensor([1.0]), torch.tensor([0.0]), 2.0), torch.tensor([3.0])), "w = 2, ε_c = 1, ε_u = 0 → 3"
### END HIDDEN TESTS
