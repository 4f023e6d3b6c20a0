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
# Same model, DDIM eq. 12 with $S$ steps and stochasticity $\eta$, equal sample counts and initial noise.

# %%
display(assemble.show_table(ctx.out, "ddim_steps"), assemble.show_table(ctx.out, "fid_final"))

# %% [markdown]
# ## 5. Speed and memory: DDIM against DDPM (notebook 02)

# %%
display(assemble.show_table(ctx.out, "speed_memory"), Markdown(assemble.claims_text(ctx.out)))

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
assemble.show_table(ctx.out, "schedules")

# %% [markdown]
# ## 8. The exact toy lab (notebook 00)
#
# A 2-D class-labelled Gaussian mixture whose perfect noise predictor $\varepsilon^*$ is known in closed form: the same
# samplers and guidance wrapper, first with $\varepsilon^*$ (sampler error alone), then with a small trained MLP.

# %%
display(assemble.show_table(ctx.out, "toy_samplers"), assemble.show_table(ctx.out, "toy_schedules"),
        assemble.show_table(ctx.out, "toy_mlp"), assemble.show_table(ctx.out, "toy_guidance"))

# %% [markdown]
# ## 9. Figures

# %%
shown = assemble.show_figures(ctx.out)

# %% tags=["remove_cell"]
assert (ctx.tables_dir / "literature.md").stat().st_size > 0 and (ctx.tables_dir / "summary.md").stat().st_size > 0
assert shown > 0, "the report must show the notebooks' figures"
