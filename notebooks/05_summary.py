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
# # Diffusion models on a budget: DDPM, DDIM, latent diffusion with guidance, and noise schedules

# %% tags=["parameters"]
profile = "quick"          # the profile these values come from (papermill passes the real one)
reports_dir = "reports"    # outputs go to <reports_dir>/<profile>/ (relative to the repository root)
cache_dir = None           # checkpoints and cached metrics; None: .cache/ddlib/report
device = "auto"            # "auto": CUDA if available, else CPU
torch_threads = None       # None: PyTorch's default

# %%
from IPython.display import Markdown, display

from ddlib.lab import assemble, context

ctx = context.start(profile, "05_summary", reports_dir=reports_dir, cache_dir=cache_dir, device="cpu")
display(Markdown(assemble.provenance_markdown(ctx.out, profile)))

# %% [markdown]
# ## 1. Published results beside this package's measurements (Table I)

# %%
assemble.literature_table(ctx)

# %% [markdown]
# ## 2. Measured results (Table VI analogue)
#
# One row per experiment of notebooks 01–04; the sections below give the full tables.

# %%
assemble.summary_table(ctx)

# %% [markdown]
# ## 3. DDPM (notebook 01)
#
# A small UNet trained with $L_\text{simple}$ (DDPM eq. 14) and sampled with Algorithm 2. The real-image row is the
# FID that $n$ real images reach against the same reference — the floor at this sample count.

# %%
display(assemble.show_table(ctx.out, "train_ddpm"), assemble.show_table(ctx.out, "ddpm"))

# %% [markdown]
# ## 4. DDIM: steps and η (notebook 02)
#
# Same model, DDIM eq. 12 with $S$ steps and stochasticity $\eta$, equal sample counts and initial noise; then the
# $\eta = 0$ clipping ablation (three conventions on the same $x_T$).

# %%
display(assemble.show_table(ctx.out, "ddim_steps"), assemble.show_table(ctx.out, "fid_final"),
        assemble.show_table(ctx.out, "clip_ablation"), Markdown(assemble.note_text(ctx.out, "clip_ablation_findings")))

# %% [markdown]
# ## 5. Speed and memory: DDIM against DDPM (notebook 02)

# %%
display(assemble.show_table(ctx.out, "speed_memory"), Markdown(assemble.claims_text(ctx.out)),
        assemble.show_table(ctx.out, "quality_vs_time"), Markdown(assemble.note_text(ctx.out, "quality_vs_time_findings")))

# %% [markdown]
# ## 6. Latent diffusion with classifier-free guidance (notebook 03)
#
# A KL autoencoder maps images to latents; a class-conditional UNet is trained on the latents with label dropout, and
# sampled with $\tilde\varepsilon = \varepsilon_\theta(z_t,\varnothing) + s\,\big(\varepsilon_\theta(z_t, y) - \varepsilon_\theta(z_t,\varnothing)\big)$.

# %%
display(assemble.show_table(ctx.out, "vae"), assemble.show_table(ctx.out, "train_latent"),
        assemble.show_table(ctx.out, "guidance_sweep"))

# %% [markdown]
# ## 7. Noise schedules (notebook 04)

# %%
display(assemble.show_table(ctx.out, "schedules_ddim"), assemble.show_table(ctx.out, "schedules"),
        assemble.show_table(ctx.out, "schedules_ddpm"))

# %% [markdown]
# ## 8. Errata: the seed report's equations and claims

# %%
assemble.errata()

# %% [markdown]
# ## 9. The exact toy lab (notebook 00)
#
# A 2-D class-labelled Gaussian mixture whose perfect noise predictor $\varepsilon^*$ is known in closed form: the same
# samplers and guidance wrapper, first with $\varepsilon^*$ (sampler error alone), then with a small trained MLP.

# %%
display(assemble.show_table(ctx.out, "toy_samplers"), assemble.show_table(ctx.out, "toy_schedules"),
        assemble.show_table(ctx.out, "toy_mlp"), assemble.show_table(ctx.out, "toy_guidance"))

# %% [markdown]
# ## 10. Figures

# %%
shown = assemble.show_figures(ctx.out)

# %% tags=["remove_cell"]
assert (ctx.tables_dir / "literature.md").stat().st_size > 0 and (ctx.tables_dir / "summary.md").stat().st_size > 0
assert shown > 0, "the report must show the notebooks' figures"

# %% [markdown] tags=["remove_cell"]
# ## Exercises
#
# As in notebook 01: write the function between the lines that say `YOUR CODE HERE`, run its **check yourself**
# cell; hidden tests, run with ddlib's metrics switched off, carry the points. This section stands alone (and is left
# out of report.html).

# %% nbgrader={"grade": false, "grade_id": "exercises_setup_05", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["remove_cell"]
import math

import numpy as np
import torch

# %% [markdown] tags=["remove_cell"]
# ### Exercise 5.1 — the Fréchet distance of two feature sets (3 points)
#
# FID (Heusel et al. 2017) fits a Gaussian to each set of features, rows are samples, and compares the two:
# $$d^2 = \lVert\mu_a - \mu_b\rVert^2 + \operatorname{Tr}\big(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2}\big),$$
# with the **unbiased** covariances (divide by $N - 1$). $\operatorname{Tr}(\Sigma_a\Sigma_b)^{1/2}$ is the sum of the
# square roots of the eigenvalues of $\Sigma_a\Sigma_b$ (real and $\ge 0$). Inputs are numpy arrays of shape $(N_a, d)$
# and $(N_b, d)$; return a float.

# %% nbgrader={"grade": false, "grade_id": "frechet_from_features", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["remove_cell"]
def frechet_from_features(feats_a, feats_b):
    """The Fréchet distance d² between Gaussians fitted to two feature sets (N_a, d) and (N_b, d)."""
    ### BEGIN SOLUTION
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))  # unbiased: divides by N − 1
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    eig = np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(eig).sum())
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "frechet_from_features_check", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["remove_cell"]
# check yourself: a set is at distance 0 from itself
_a = np.random.default_rng(0).normal(size=(50, 3))
assert abs(frechet_from_features(_a, _a)) < 1e-8, "d²(a, a) must be 0"
print("frechet_from_features: the checks you can see pass")

# %% nbgrader={"grade": true, "grade_id": "frechet_from_features_tests", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false} tags=["remove_cell"]
# hidden tests (3 points)
### BEGIN HIDDEN TESTS
# by hand, d = 1: a = (0, 1, 2) has mean 1 and unbiased variance 1; b = (0, 2, 4) has mean 2 and variance 4;
# in one dimension d² = (μ_a − μ_b)² + (σ_a − σ_b)² = 1 + 1 = 2 (a biased covariance would give 1 + 2/3)
_d = frechet_from_features(np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0], [4.0]]))
assert abs(_d - 2.0) < 1e-9, f"d² = 2 for (0, 1, 2) against (0, 2, 4), got {_d:.4f} (a covariance divided by N instead of N − 1?)"
# commuting covariances: the columns of H are centred and orthogonal, so a = H·diag(1, 2, 3) has Σ_a = 4/3·diag(1, 4, 9)
# and b = 2H + (1, 0, 0) has Σ_b = 4/3·diag(4, 4, 4): d² = 1 + 4/3·((1 − 2)² + 0 + (3 − 2)²) = 1 + 8/3
_H = np.array([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])
_d = frechet_from_features(_H * [1.0, 2.0, 3.0], 2 * _H + [1.0, 0.0, 0.0])
assert abs(_d - (1 + 8 / 3)) < 1e-9, f"d² = 1 + 8/3 for diagonal covariances, got {_d:.4f}"
# a shift by c moves only the means: d²(a, a + c) = |c|²; and d² is symmetric
_a = np.random.default_rng(1).normal(size=(40, 5))
_c = np.array([0.5, -1.0, 0.0, 2.0, 0.1])
assert abs(frechet_from_features(_a, _a + _c) - float((_c ** 2).sum())) < 1e-6, "d²(a, a + c) = |c|²"
_b = np.random.default_rng(2).normal(size=(30, 5)) * 1.5
assert abs(frechet_from_features(_a, _b) - frechet_from_features(_b, _a)) < 1e-6, "d² is symmetric"
### END HIDDEN TESTS

# %% [markdown] tags=["remove_cell"]
# ### Question 5.2 — correct the seed report (4 points, graded by hand)
#
# The student report this project reproduces (the "seed report") writes, among others, these six statements.
# **Four are wrong.** For each wrong one, say what is wrong, give the correct statement (paper and equation), and say
# what would go wrong in code that followed the report. (Exercises 1.1, 1.4, 2.1 and 4.2 help.)
#
# 1. The forward step: $q(x_t \mid x_{t-1}) = \mathcal{N}(x_t; \sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)$.
# 2. The training loss: $\mathcal{L}_\text{simple}(\theta) = \mathbb{E}_{t, x_0, \epsilon}\big[\lVert \epsilon - \epsilon_\theta(\sqrt{\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon, t)\rVert^2\big]$.
# 3. The DDIM variance: $\Sigma_t = \eta \cdot \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\cdot(1-\alpha_t)$, with $\eta = 0$ deterministic.
# 4. FID $= \lVert\mu_r - \mu_g\rVert_2^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2}\big)$.
# 5. "The cosine scheduler assigns more noise to earlier timesteps, encouraging the model to focus on learning how to
#    handle noisier, more degraded inputs."
# 6. "To avoid numerical instability a small constant ε was added. This modifies the definition of $\bar\alpha_t$ to
#    $\bar{\alpha}_t = \cos^2(\frac{\pi}{2}\cdot\frac{t}{T}) \,/\, \big(\cos^2(\frac{\pi}{2}\cdot\frac{t-1}{T}) + \epsilon\big)$."

# %% [markdown] nbgrader={"grade": true, "grade_id": "q5_seed_errata", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false} tags=["remove_cell"]
# ### BEGIN SOLUTION
# **Rubric (4 points: 1 per error, half for finding it without the correction or its consequence; minus half a
# point, at most once, for calling statement 1 or 4 wrong — both are right: DDPM eq. 2 and Heusel et al.'s FID).**
#
# 1. *L_simple* (statement 2) writes $\epsilon_\theta(\sqrt{\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)$: the signal coefficient is
#    $\sqrt{\bar\alpha_t}$ (DDPM eq. 14, from eq. 4). With $\sqrt{\alpha_t}\approx 1$ the network would train on inputs whose
#    variance exceeds 1 and which never match the $x_t$ it sees when sampling.
# 2. *DDIM variance* (statement 3) writes $\Sigma_t = \eta\cdot\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}(1-\alpha_t)$: the variance carries $\eta^2$,
#    $\sigma_t^2 = \eta^2\,\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\big(1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}\big)$ (DDIM eq. 16); and
#    $1-\alpha_t$ holds only between consecutive steps, with skipped steps it is $1-\bar\alpha_t/\bar\alpha_\text{prev}$. As written,
#    η = 0.5 gives σ = √0.5·√β̃ ≈ 0.71√β̃ instead of 0.5√β̃.
# 3. *"The cosine scheduler assigns more noise to earlier timesteps"* (statement 5) is backwards: ᾱ_t of the cosine schedule stays
#    higher than the linear one's early on (≈ 0.85 against 0.52 at T/4); it adds noise more slowly at first and more
#    evenly over t, because the linear schedule destroys information too fast (Nichol & Dhariwal §3.2, Fig. 3).
# 4. *The "adjusted" formula* (statement 6) $\bar\alpha_t = \cos^2(\frac\pi2\frac tT)/(\cos^2(\frac\pi2\frac{t-1}T)+\epsilon)$ is a ratio of
#    consecutive terms, i.e. a per-step $\alpha_t$ (so $\beta_t = 1$ minus it, Exercise 4.2), not the cumulative $\bar\alpha_t$ it is
#    labelled. Used as ᾱ_t it would not decrease to 0 (it is ≈ 1 for most t), so x_T would not be noise. It also drops
#    Nichol & Dhariwal's offset s and their clipping of β at 0.999, which are what actually keep the schedule stable.
# ### END SOLUTION
