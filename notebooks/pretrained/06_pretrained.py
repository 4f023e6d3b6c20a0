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
# # 6. The real DDPM checkpoint under ddlib's samplers
#
# Song et al.'s Table 1 (DDIM, ICLR 2021) was measured on Ho et al.'s CIFAR-10 model, the one published as
# `google/ddpm-cifar10-32`. This notebook loads those weights into ddlib's UNet (`ddlib.from_diffusers`: the same
# ε̂ as diffusers computes, tested to 1e-5 in float32), samples them with ddlib's DDIM (η = 0) at S = 10, 20, 50,
# 100 steps and with DDPM's ancestral sampler at all T = 1000, and scores the samples against the original
# (lossless) CIFAR-10 training set, beside the published FIDs. Training budget plays no part: what differs
# between the rows is only the sampler. Run it with `python -m ddlib report --profile pretrained` (online, a GPU).

# %% tags=["parameters"]
profile = "pretrained"     # the profile these values come from (papermill passes the real one)
reports_dir = "reports"    # outputs go to <reports_dir>/<profile>/ (relative to the repository root)
cache_dir = None           # checkpoints and cached metrics; None: .cache/ddlib/report
device = "auto"            # "auto": CUDA if available, else CPU
torch_threads = None       # None: PyTorch's default
pretrained_repo = "google/ddpm-cifar10-32"   # a Hub repository (downloaded once) ...
pretrained_revision = None
pretrained_folder = None   # ... or a local save_pretrained folder (then pretrained_repo must be None)
reference = "original"     # "original": CIFAR-10 train through torchvision; "synthetic": toy images (dry run)
synthetic_reference_count = 64
ddim_steps = [10, 20, 50, 100]
ddim_samples = 50000       # Song et al. scored 50,000 samples
ddim_clip = False          # DDIM's code does not clamp x̂_0
ddpm_samples = 10000       # DDPM-1000 costs 10× DDIM-100: fewer samples (FID is biased upward at smaller n)
ddpm_clip = True           # Ho et al.'s sampler clamps x̂_0 to [-1, 1]
sample_batch = 1000
grid_samples = 64

# %%
from ddlib.grids import save_image_grid
from ddlib.lab import context, figures, pretrained
from ddlib.unet import count_parameters

ctx = context.start(profile, "06_pretrained", reports_dir=reports_dir, cache_dir=cache_dir, device=device,
                    torch_threads=torch_threads)
run = pretrained.converted_run(ctx, repo_id=pretrained_repo, folder=pretrained_folder, revision=pretrained_revision)
trained = run.load(ctx.device)
cfg, T = trained.model.config, len(trained.schedule)
print(f"profile {profile} on {ctx.hardware}; outputs in {ctx.out}")
print(f"converted {pretrained_repo or pretrained_folder} → {run.run_dir} ({'reused' if run.reused else 'converted now'}): "
      f"{count_parameters(trained.model):,} parameters, {cfg.num_heads} attention head(s), downsampling "
      f"{cfg.downsample_padding}, GroupNorm ε {cfg.norm_eps:g}; schedule {trained.config.schedule} "
      f"{trained.config.schedule_params}, T = {T}")

# %% [markdown]
# ## The reference
#
# Published CIFAR-10 FIDs compare against the original training images. The offline JPEG copy ddlib's other
# notebooks use differs from them by FID ≈ 26 on its own, so it is not used here.

# %%
if reference == "original":
    ref, ref_label = pretrained.original_cifar10_reference(ctx)
else:
    ref, ref_label = pretrained.synthetic_reference(ctx, synthetic_reference_count, cfg.image_size)
print(f"reference: {ref_label}")

# %% [markdown]
# ## DDIM (η = 0) and DDPM against the published FIDs
#
# Each row samples from the same seeded initial noise (image i from seed i), so the DDIM rows differ only in S.
# DDIM uses "leading" steps τ = {0, T/S, 2T/S, …} as Song et al.'s code does; DDPM is the ancestral sampler with
# σ²_t = β̃_t, which is DDIM's η = 1 at S = T (Table 1's η = 1.0 row; its σ̂ row, σ²_t = β_t, reads 3.17 at 1000).
# A published FID used 50,000 samples; a row with fewer is biased upward and says so in its n.

# %%
rows = []
settings = [("DDIM", s, 0.0, ddim_samples, ddim_clip) for s in ddim_steps] + [("DDPM", T, 1.0, ddpm_samples, ddpm_clip)]
for name, steps, eta, n, clip in settings:
    res = ctx.sample_and_score(run, n=n, sampler=name.lower(), num_steps=steps, eta=eta, reference=ref,
                               batch_size=sample_batch, clip=clip)
    rows.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, sampler=name,
                        steps=steps, eta=eta, clip=clip, fid=res["fid"], kid=res["kid"], kid_std=res["kid_std"],
                        published_fid=pretrained.published_fid(steps, eta) if T == 1000 else None, published_n=50000,
                        s_per_image=round(res["sample_s"] / res["n_samples"], 5)))
ctx.table("pretrained_fid", rows, f"The DDPM CIFAR-10 checkpoint under ddlib's samplers, beside {pretrained.PUBLISHED_SOURCE}",
          columns=["sampler", "steps", "eta", "fid", "published_fid", "kid", "kid_std", "s_per_image"],
          notes=[f"published_fid: {pretrained.PUBLISHED_SOURCE} (50,000 samples against the original CIFAR-10 "
                 "training set); fid: this run, n samples as in the provenance column."])

# %%
lines = [{"steps": r["steps"], "fid": r[col], "series": who} for r in rows if r["sampler"] == "DDIM"
         for col, who in (("fid", f"ddlib, n = {r['n_samples']}"), ("published_fid", "Song et al., n = 50000"))]
figures.show(figures.plot_lines(lines, "steps", "fid", ctx.figure("pretrained_fid_vs_steps", "FID of DDIM (η = 0) "
            "samples of the official checkpoint against S: this run and Song et al.'s Table 1."), group="series",
            group_label="", logx=True, title="DDIM on the DDPM checkpoint", xlabel="steps S", ylabel="FID"))

# %%
grid = ctx.samples(run, n=ddim_samples, sampler="ddim", num_steps=max(ddim_steps), eta=0.0, batch_size=sample_batch,
                   clip=ddim_clip)["images"][:grid_samples]
figures.show(save_image_grid(grid, ctx.figure("pretrained_samples", f"The first {len(grid)} DDIM (S = {max(ddim_steps)}, "
                                              "η = 0) samples of the official checkpoint."), scale=2))
