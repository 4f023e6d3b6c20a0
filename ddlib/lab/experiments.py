"""The report's experiments as functions: each notebook cell calls one of these and shows what it returns.

Every function takes the notebook's :class:`ddlib.lab.context.Context` (output folder, device, cache,
provenance), does its work through the cached steps of :mod:`ddlib.lab.cache`, writes its table or figure
and returns rows or paths. Numbers carry provenance: profile, hardware, wall time, sample counts and
the FID reference (see :meth:`ddlib.lab.context.Context.row`).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Sequence

import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets

from ddlib.lab.intervals import (
    METHOD as INTERVAL_METHOD, floor_columns, interval_columns, rank_rows, real_floor, score_interval,
)
from ddlib.train import TrainConfig


def diffusion_config(*, dataset: str, data_limit: int | None, preset: str, unet: dict | None = None,
                     schedule: str = "linear", schedule_params: dict | None = None, timesteps: int = 1000,
                     steps: int, batch_size: int, lr: float, warmup_steps: int, ema_decay: float, seed: int = 0,
                     class_conditional: bool = False, p_uncond: float = 0.1, hflip: bool = True,
                     log_points: int = 100) -> TrainConfig:
    """A :class:`TrainConfig` from notebook literals; logs ~``log_points`` times and checkpoints 4 times per run."""
    return TrainConfig(dataset=dataset, data_limit=data_limit, preset=preset, unet=dict(unet or {}),
                       class_conditional=class_conditional, p_uncond=p_uncond, hflip=hflip, schedule=schedule,
                       schedule_params=dict(schedule_params or {}), num_train_timesteps=timesteps, steps=steps,
                       batch_size=batch_size, lr=lr, warmup_steps=min(warmup_steps, max(steps - 1, 0)),
                       ema_decay=ema_decay, seed=seed, log_every=max(1, steps // log_points),
                       checkpoint_every=max(1, math.ceil(steps / 4)))


def schedule_configs(kinds: Sequence[str], *, beta_start: float = 1e-4, beta_end: float = 0.02, **common) -> dict:
    """One :func:`diffusion_config` per schedule kind, identical otherwise (``common``: its other arguments)."""
    return {k: diffusion_config(schedule=k, schedule_params=schedule_params_for(k, beta_start, beta_end), **common)
            for k in kinds}


def schedule_params_for(kind: str, beta_start: float = 1e-4, beta_end: float = 0.02) -> dict:
    """The parameters the report uses for each schedule kind (linear: the profile's β range)."""
    return {"beta_start": beta_start, "beta_end": beta_end} if kind == "linear" else {}


def train_row(ctx, run, label: str) -> dict:
    """A table row describing a training run (steps, batch, final loss, wall time)."""
    log = run.log()
    tail = [r["loss"] for r in log[-max(1, len(log) // 10):]]
    return ctx.row(wall_s=run.wall_s, n_samples=None, reference=None, run=label, preset=run.config.preset,
                   steps=run.config.steps, batch_size=run.config.batch_size,
                   final_loss=round(sum(tail) / len(tail), 5) if tail else None, reused=run.reused)


# --------------------------------------------------------------------------------------------------
# 01: DDPM


def _sampler_label(name: str, clip: bool) -> str:
    """How a table names a sampler: with clip, x̂₀ was clamped to [-1, 1] at every step."""
    return f"{name}, x̂₀ clipped" if clip else name


def real_score(ctx, dataset: str, n: int, *, seed: int, reference: str, reference_count: int | None) -> dict:
    """FID/KID of ``n`` real images of ``dataset`` (a seeded random subset) against the reference, cached: the
    floor a model's score at this n is to be read against (FID is biased upwards at small n, :mod:`ddlib.metrics`)."""
    from ddlib.data import load_dataset

    def real() -> dict:
        data = load_dataset(dataset, progress=False)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
        return ctx.score(data.images[idx], reference, reference_count)

    return ctx.cached("real_score", {"dataset": dataset, "n": n, "seed": seed, "reference": reference,
                                     "reference_count": reference_count}, real)


def scored(ctx, run, *, reference: str, reference_count: int | None, inception_score: bool = False, **sample) -> dict:
    """:meth:`~ddlib.lab.context.Context.sample_and_score` with FID/KID intervals over the generated set.

    ``sample``: the arguments of :meth:`~ddlib.lab.context.Context.samples` (n, sampler, num_steps, eta, seed,
    batch_size, clip, …). The result's fid/kid/kid_std are those of :func:`ddlib.lab.intervals.score_interval`
    (KID: every generated image against the reference, its spread over generated resamples), with
    fid_lo/fid_hi/kid_lo/kid_hi and ``features`` (the key of the samples' cached Inception features).
    """
    res = ctx.sample_and_score(run, reference=reference, reference_count=reference_count,
                               inception_score=inception_score, **sample)
    images = ctx.samples(run, **sample)["images"]
    return {**res, **interval_columns(score_interval(ctx, images, reference, reference_count))}


def _floor_row(ctx, real_dataset: str, n: int, *, seed: int, reference: str, reference_count: int | None,
               ref_label: str, **blank) -> dict:
    r = real_floor(ctx, real_dataset, n, seed=seed, reference=reference, reference_count=reference_count)
    return ctx.row(wall_s=r["score_s"], n_samples=r["n_samples"], reference=ref_label, dataset=real_dataset,
                   **{k: v for k, v in blank.items() if k not in ("fid", "kid")}, **interval_columns(r))


def ddpm_table(ctx, run, *, n: int, reference: str, reference_count: int | None, batch_size: int, seed: int = 0,
               real_dataset: str | None = None, clip: bool = False) -> list[dict]:
    """DDPM ancestral samples' FID/KID (and the IS cell), plus the same metrics for ``n`` real images.

    The real-image row is the floor FID can reach at this sample count against this reference: FID is
    biased upwards at small n (see :mod:`ddlib.metrics`), so compare a model's FID with it, not with 0.
    """
    ref_label = ctx.reference_label(reference, reference_count)
    res = scored(ctx, run, n=n, sampler="ddpm", reference=reference, reference_count=reference_count,
                 batch_size=batch_size, seed=seed, inception_score=True, clip=clip)
    is_cell = res.get("inception_score")
    trained_steps = run.config.steps
    rows = [ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, dataset=run.config.dataset,
                    model=f"{run.config.preset} UNet",
                    sampler=_sampler_label("DDPM ancestral", clip), steps=run.config.num_train_timesteps,
                    train_steps=trained_steps,
                    **interval_columns(res), inception_score=is_cell,
                    sample_s=res["sample_s"], train_s=run.wall_s)]
    if real_dataset:
        rows.append(_floor_row(ctx, real_dataset, n, seed=seed, reference=reference, reference_count=reference_count,
                               ref_label=ref_label, model=f"real images ({real_dataset}, random {n})", sampler="—",
                               steps=None, train_steps=None, inception_score=None, sample_s=None, train_s=None))
    return rows


def sample_grid(ctx, run, *, n: int, pool: int | None = None, sampler: str = "ddpm", num_steps: int = 50,
                eta: float = 0.0, seed: int = 0, batch_size: int = 100, clip: bool = False) -> torch.Tensor:
    """The first ``n`` of ``pool`` (default ``n``) cached samples: pass the scored set's size as ``pool`` to
    show images of the very set that was scored (and sample nothing twice)."""
    pool = max(pool or n, n)
    return ctx.samples(run, n=pool, sampler=sampler, num_steps=num_steps, eta=eta, seed=seed,
                       batch_size=batch_size, clip=clip)["images"][:n]


# --------------------------------------------------------------------------------------------------
# 02: DDIM


def ddim_sweep(ctx, run, *, steps: Sequence[int], etas: Sequence[float], n: int, reference: str,
               reference_count: int | None, batch_size: int, seed: int = 0, clip: bool = False,
               real_dataset: str | None = None) -> list[dict]:
    """FID/KID (with intervals) of DDIM samples for every (S, η), same model, same n, same per-image seeds.

    Every row is compared with the lowest-FID row by a paired bootstrap (``fid_vs_lowest``, ``fid_ranking``:
    :func:`ddlib.lab.intervals.rank_rows`). With ``real_dataset``, each row carries the real-image floor at n.
    """
    ref_label = ctx.reference_label(reference, reference_count)
    floor = {}
    if real_dataset:
        fl = real_floor(ctx, real_dataset, n, seed=seed, reference=reference, reference_count=reference_count)
        floor = floor_columns(fl, real_dataset)
    rows = []
    for eta in etas:
        for s in steps:
            res = scored(ctx, run, n=n, sampler="ddim", num_steps=int(s), eta=float(eta), reference=reference,
                         reference_count=reference_count, batch_size=batch_size, seed=seed, clip=clip)
            rows.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label,
                                dataset=run.config.dataset, sampler=_sampler_label("DDIM", clip),
                                steps=int(s), eta=float(eta), **interval_columns(res),
                                sample_s=res["sample_s"], s_per_image=round(res["sample_s"] / n, 3), **floor))
    return rank_rows(ctx, rows, [f"S={r['steps']}, η={r['eta']:g}" for r in rows], reference, reference_count)


def final_fid(ctx, run, sweep_rows: Sequence[dict], *, n: int, reference: str, reference_count: int | None,
              batch_size: int, seed: int = 0, clip: bool = False, real_dataset: str | None = None,
              contenders: int = 2, with_ddpm: bool = False) -> list[dict]:
    """The headline FID: the sweep's lowest-FID (S, η) and the settings it did not resolve against, rescored at ``n``.

    FID is biased upwards at small n (:mod:`ddlib.metrics`), so the sweep ranks settings at its small, equal n; the
    lowest one, with up to ``contenders`` settings whose paired difference from it was not resolved there
    (``fid_vs_lowest`` of :func:`ddim_sweep`), is scored again with ``n`` samples on the same per-image seeds and
    compared once more at that n (``fid_vs_lowest``, ``fid_ranking``); ``with_ddpm`` adds DDPM ancestral sampling
    (T steps, same seeds) to that comparison. With ``real_dataset``, a last row scores ``n``
    real images of it (seeded subset) against the same reference: the floor at this n (use held-out images).
    """
    ranked = sorted((r for r in sweep_rows if r.get("fid") is not None), key=lambda r: r["fid"])
    best, n_sweep = ranked[0], ranked[0]["n_samples"]
    tied = [r for r in ranked[1:] if str(r.get("fid_vs_lowest", "")).startswith("not resolved")]
    ref_label = ctx.reference_label(reference, reference_count)
    rows = []
    for r in [best, *tied[:max(contenders, 0)]]:
        res = scored(ctx, run, n=n, sampler="ddim", num_steps=int(r["steps"]), eta=float(r["eta"]), reference=reference,
                     reference_count=reference_count, batch_size=batch_size, seed=seed, clip=clip)
        chosen = (f"lowest FID of {len(sweep_rows)} settings at n={n_sweep}" + (
                  f", not resolved there against {len(tied)} other(s)" if tied else ", resolved against all")
                  if r is best else f"not resolved against the lowest at n={n_sweep}")
        rows.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label,
                            dataset=run.config.dataset, model=f"{run.config.preset} UNet",
                            sampler=_sampler_label("DDIM", clip), steps=int(r["steps"]), eta=float(r["eta"]),
                            train_steps=run.config.steps, **interval_columns(res), chosen_from=chosen,
                            sample_s=res["sample_s"]))
    labels = [f"S={r['steps']}, η={r['eta']:g}" for r in rows]
    if with_ddpm:
        T = run.config.num_train_timesteps
        res = scored(ctx, run, n=n, sampler="ddpm", reference=reference, reference_count=reference_count,
                     batch_size=batch_size, seed=seed, clip=clip)
        rows.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label,
                            dataset=run.config.dataset, model=f"{run.config.preset} UNet",
                            sampler=_sampler_label("DDPM ancestral", clip), steps=T, eta=None,
                            train_steps=run.config.steps, **interval_columns(res), chosen_from="DDPM beside them",
                            sample_s=res["sample_s"]))
        labels.append(f"DDPM-{T}")
    rank_rows(ctx, rows, labels, reference, reference_count)
    if real_dataset:
        rows.append(_floor_row(ctx, real_dataset, n, seed=seed, reference=reference, reference_count=reference_count,
                               ref_label=ref_label, model=f"real images ({real_dataset})", sampler="—", steps=None,
                               eta=None, train_steps=None, chosen_from="the floor at this n", sample_s=None))
    return rows


def headline_scope(n: int, n_sweep: int) -> str:
    """How the headline names its sample count: "rescored" only when it differs from the sweep's (at equal n the
    scores are the sweep's own cached ones, nothing is resampled)."""
    return f"at the sweep's n = {n}" if n == n_sweep else f"rescored at n = {n} (the sweep used n = {n_sweep})"


def consistency_rows(ctx, run, *, steps: Sequence[int], n: int, pool: int | None = None, seed: int = 0,
                     batch_size: int = 100, clip: bool = False) -> tuple[list[torch.Tensor], list[str]]:
    """DDIM (η = 0) samples from the same x_T with each S: rows of images and their labels (DDIM §5.2).

    ``pool``/``batch_size``: those of the sweep's sample sets, whose first ``n`` images are shown.
    """
    rows = [sample_grid(ctx, run, n=n, pool=pool, sampler="ddim", num_steps=int(s), eta=0.0, seed=seed,
                        batch_size=batch_size, clip=clip) for s in steps]
    return rows, [f"S={s}" for s in steps]


def distance_to_last(rows: Sequence[torch.Tensor]) -> list[float]:
    """Mean absolute difference, in uint8 levels, between each row of images and the last row.

    For DDIM (η = 0) rows sampled from the same x_T with growing S, this says how close the sampler is to
    the converged ODE solution: it falls towards 0 for a well-trained model (DDIM §5.2).
    """
    last = rows[-1].float()
    return [round(float((r.float() - last).abs().mean()), 2) for r in rows]


def speed_memory(ctx, run, *, ddim_steps: int, batch_size: int, repeats: int, seed: int = 0) -> tuple[list[dict], dict]:
    """Wall time and peak memory of DDPM (T steps) and DDIM (``ddim_steps``, η = 0), each in fresh processes.

    Cached per (run, settings, hardware): a different machine measures again.
    """
    from ddlib.lab.sampling_cost import METHOD_VERSION, check_claims, compare_samplers

    T = run.config.num_train_timesteps
    configs = [{"label": f"DDPM-{T}", "sampler": "ddpm"},
               {"label": f"DDIM-{ddim_steps}", "sampler": "ddim", "num_steps": int(ddim_steps), "eta": 0.0}]
    key = {"run": run.key, "configs": configs, "batch_size": batch_size, "repeats": repeats, "seed": seed,
           "hardware": ctx.hardware, "device": str(ctx.device), "method": METHOD_VERSION}

    def measure() -> dict:
        return {"rows": compare_samplers(run.run_dir, configs, batch_size=batch_size, repeats=repeats,
                                         device=str(ctx.device), seed=seed)}

    res = ctx.cached("speed_memory", key, measure)
    rows = []
    for r in res["rows"]:
        extra = {k: r[k] for k in ("peak_rss_mb", "sampling_rss_mb", "cuda_peak_mb", "cuda_sampling_mb") if k in r}
        rows.append(ctx.row(wall_s=r["wall_s"], n_samples=batch_size, reference=None, sampler=r["label"], steps=r["steps"],
                            batch_size=batch_size, repeats=repeats, wall_s_each=r["wall_s_each"],
                            ms_per_step=round(1000 * r["s_per_step"], 2), **extra))
    claims = check_claims(res["rows"], configs[0]["label"], configs[1]["label"])
    return rows, claims


# ---- 02: the η = 0 clipping ablation (issue 13, claim 2) ---------------------------------------------

CLIP_CONVENTIONS = ("none", "x0, eps re-derived", "x0, raw eps")
CLIP_CONVENTION_LABELS = {"none": "(a) no clipping", "x0, eps re-derived": "(b) clip x̂₀, ε̂ re-derived",
                          "x0, raw eps": "(c) clip x̂₀, raw ε̂"}


def ddim_step_raw_eps(s, eps: torch.Tensor, t: int, t_prev: int, x_t: torch.Tensor) -> torch.Tensor:
    """The old clipping convention of a deterministic (η = 0) DDIM step: x̂₀ clamped, ε̂ used as predicted.

    x̂₀ = clip((x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, −1, 1) and x_{t'} = √ᾱ_{t'} x̂₀ + √(1−ᾱ_{t'}) ε̂, built from the core's
    pieces (``NoiseSchedule.predict_x0``, ``alpha_bar``; ᾱ_{-1} = 1). The first term then describes the clamped
    x̂₀ while the direction term still points from the unclamped one: the two terms disagree about x₀ wherever
    the clamp acted. This is diffusers' ``DDIMScheduler`` with ``clip_sample=True`` and the default
    ``use_clipped_model_output=False``; ``ddlib.samplers.ddim_update(clip=True)`` re-derives ε̂ instead. Lab code,
    kept out of the core samplers: it exists only for the ablation.
    """
    tb = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=x_t.device)
    x0 = s.predict_x0(eps, tb, x_t).clamp(-1.0, 1.0)
    abar_prev = float(s.alpha_bar(int(t_prev)))
    return math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * eps


@torch.no_grad()
def sample_raw_eps(model, schedule, n: int, *, num_steps: int, seed: int = 0, batch_size: int = 64,
                   spacing: str = "leading") -> torch.Tensor:
    """``n`` uint8 images by η = 0 DDIM with :func:`ddim_step_raw_eps`, image i from the x_T of seed + i exactly as
    :func:`ddlib.generate.generate` draws it (so the three conventions of the ablation start from the same x_T)."""
    from ddlib.data import to_uint8
    from ddlib.generate import initial_noise
    from ddlib.samplers import ddim_timesteps

    cfg = model.config
    device = next(model.parameters()).device
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    ts = ddim_timesteps(len(schedule), num_steps, spacing)
    s = schedule.to(device)
    out = []
    for start in range(0, n, batch_size):
        x = initial_noise(shape, list(range(seed + start, seed + min(start + batch_size, n))), device)  # x_T
        for t, t_prev in zip(ts, ts[1:] + [-1]):
            eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=device)).to(x.dtype)
            x = ddim_step_raw_eps(s, eps, t, t_prev, x)
        out.append(to_uint8(x).cpu())
    return torch.cat(out)


def convention_samples(ctx, run, convention: str, *, n: int, num_steps: int, seed: int = 0,
                       batch_size: int = 64) -> dict:
    """η = 0 DDIM samples under one clipping ``convention`` (:data:`CLIP_CONVENTIONS`), cached:
    ``{"images", "sample_s"}``. (a) and (b) are the library's ``clip=False`` / ``clip=True`` sample sets (the sweep's
    own cells); (c) is :func:`sample_raw_eps`."""
    if convention not in CLIP_CONVENTIONS:
        raise ValueError(f"unknown clipping convention {convention!r}; choose one of {CLIP_CONVENTIONS}")
    if convention != "x0, raw eps":
        s = ctx.samples(run, n=n, sampler="ddim", num_steps=num_steps, eta=0.0, seed=seed, batch_size=batch_size,
                        clip=convention != "none")
        return {"images": s["images"], "sample_s": s["sample_s"]}
    key = {"run": run.key, "n": n, "sampler": "ddim", "num_steps": num_steps, "eta": 0.0, "seed": seed,
           "batch_size": batch_size, "clip": convention}
    timing = {}

    def make():
        trained = run.load(ctx.device)
        t0 = time.perf_counter()
        images = sample_raw_eps(trained.model, trained.schedule, n, num_steps=num_steps, seed=seed, batch_size=batch_size)
        timing["sample_s"] = time.perf_counter() - t0
        return images

    images = ctx.cached_images("samples_raw_eps", key, make)
    info = ctx.cached("sample_time_raw_eps", key, lambda: {"sample_s": round(timing.get("sample_s", float("nan")), 2)})
    return {"images": images, "sample_s": info["sample_s"]}


def clip_ablation(ctx, run, *, steps: Sequence[int], n: int, reference: str, reference_count: int | None,
                  batch_size: int, seed: int = 0, real_dataset: str | None = None) -> list[dict]:
    """FID/KID (intervals) of η = 0 DDIM under the three clipping conventions at each S, same per-image seeds.

    Within each S the three rows are ranked by a paired bootstrap (:func:`ddlib.lab.intervals.rank_rows`:
    ``fid_vs_lowest``, ``fid_ranking``); with ``real_dataset`` every row carries the real-image floor at n.
    """
    ref_label = ctx.reference_label(reference, reference_count)
    floor = {}
    if real_dataset:
        floor = floor_columns(real_floor(ctx, real_dataset, n, seed=seed, reference=reference,
                                         reference_count=reference_count), real_dataset)
    rows = []
    for S in steps:
        group = []
        for conv in CLIP_CONVENTIONS:
            smp = convention_samples(ctx, run, conv, n=n, num_steps=int(S), seed=seed, batch_size=batch_size)
            res = score_interval(ctx, smp["images"], reference, reference_count)
            group.append(ctx.row(wall_s=smp["sample_s"], n_samples=res["n_samples"], reference=ref_label,
                                 dataset=run.config.dataset, steps=int(S), eta=0.0, convention=CLIP_CONVENTION_LABELS[conv],
                                 **interval_columns(res), sample_s=smp["sample_s"], **floor))
        rows += rank_rows(ctx, group, [f"{r['convention']} at S={S}" for r in group], reference, reference_count)
    return rows


def compare_rows(ctx, a: dict, b: dict, labels: tuple[str, str], reference: str, reference_count: int | None,
                 *, metric: str = "fid"):
    """The paired comparison of two scored rows (:func:`ddlib.metrics.uncertainty.compare` over their cached
    features; same n → paired): its ``.sentence`` says "A is better than B by Δ [lo, hi]" or "not resolved"."""
    from ddlib.lab.intervals import _cached_compare

    return _cached_compare(ctx, a["features"], b["features"], labels, reference, reference_count, metric, 0)


def clip_ablation_sentences(ctx, rows: Sequence[dict], reference: str, reference_count: int | None) -> list[str]:
    """What the ablation measured, in sentences generated from its paired intervals: per S, the conventions'
    ranking; per convention, the smallest S against the largest (does FID rise with S?)."""
    out = []
    steps = sorted({r["steps"] for r in rows})
    for S in steps:
        lead = [r for r in rows if r["steps"] == S and r.get("fid_vs_lowest") == "lowest"]
        if lead:
            out.append(f"At S = {S}: {lead[0]['fid_ranking']}")
    if len(steps) > 1:
        for conv in CLIP_CONVENTION_LABELS.values():
            lo, hi = ([r for r in rows if r["steps"] == S and r["convention"] == conv][0] for S in (steps[0], steps[-1]))
            c = compare_rows(ctx, hi, lo, (f"{conv} at S={steps[-1]}", f"{conv} at S={steps[0]}"), reference, reference_count)
            out.append(c.sentence)
    return out


# ---- 02: quality against wall time ------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, loss) pairs, whether each is on the lower-left Pareto front: no other point is at most as costly
    and at most as lossy with one of the two strictly smaller."""
    return [not any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in points) for c, l in points]


def _vs_cell(d, resolved: bool) -> str:
    """A table cell for a paired Δ = FID(A) − FID(B) read as B against A: "higher by 12.3 [4.1, 20.5]",
    "lower by …" (both resolved), or "not resolved: +1.2 [−3.4, +5.6]" (B − A with its interval)."""
    est, lo, hi = -d.estimate, -d.hi, -d.lo  # B − A
    if not resolved:
        return f"not resolved: {est:+.4g} [{lo:+.4g}, {hi:+.4g}]"
    return f"higher by {est:.4g} [{lo:.4g}, {hi:.4g}]" if est > 0 else f"lower by {-est:.4g} [{-hi:.4g}, {-lo:.4g}]"


def quality_vs_time(ctx, run, sweep_rows: Sequence[dict], *, n: int, reference: str, reference_count: int | None,
                    batch_size: int, seed: int = 0, clip: bool = False) -> list[dict]:
    """FID (interval) against measured seconds per sample for every DDIM (S, η) of the sweep and DDPM-T on the same
    per-image seeds and n. Rows gain ``setting``, ``s_per_image``, ``pareto`` and ``fid_vs_ddpm`` (the paired
    difference from DDPM-T: "DDIM costs Δ [lo, hi]" is read from it), and ``fid_vs_ddpm_sentence``.
    Seconds per sample are those measured when each sample set was made (on this run's hardware, batch ``batch_size``).
    """
    T = run.config.num_train_timesteps
    ref_label = ctx.reference_label(reference, reference_count)
    res = scored(ctx, run, n=n, sampler="ddpm", reference=reference, reference_count=reference_count,
                 batch_size=batch_size, seed=seed, clip=clip)
    ddpm = ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, dataset=run.config.dataset,
                   setting=f"DDPM-{T}", sampler=_sampler_label("DDPM ancestral", clip), steps=T, eta=None,
                   **interval_columns(res), sample_s=res["sample_s"], s_per_image=round(res["sample_s"] / n, 4))
    rows = []
    for r in sweep_rows:
        if r.get("fid") is None:
            continue
        row = {k: v for k, v in r.items() if k not in ("fid_vs_lowest", "fid_ranking", "fid_lead_resolved")}
        row.update(setting=f"DDIM S={r['steps']}, η={r['eta']:g}", s_per_image=round(r["sample_s"] / r["n_samples"], 4))
        c = compare_rows(ctx, ddpm, row, (f"DDPM-{T}", row["setting"]), reference, reference_count)
        row["fid_vs_ddpm"] = _vs_cell(c.delta, c.resolved)
        row["fid_vs_ddpm_sentence"] = c.sentence
        rows.append(row)
    ddpm.update(fid_vs_ddpm="—", fid_vs_ddpm_sentence="")
    rows.append(ddpm)
    for row, on in zip(rows, pareto_front([(r["s_per_image"], r["fid"]) for r in rows])):
        row["pareto"] = on
    return rows


# --------------------------------------------------------------------------------------------------
# 04: schedules


def schedule_columns(name: str, run) -> dict:
    """A schedule's table columns: name, training steps, ᾱ at the last step, log₁₀ SNR at T/2, final training loss
    (the mean of the last tenth of the log)."""
    s = run.config.make_schedule()
    log = run.log()
    tail = [r["loss"] for r in log[-max(1, len(log) // 10):]]
    return {"schedule": name, "train_steps": run.config.steps, "alpha_bar_last": float(s.alphas_cumprod[-1]),
            "log10_snr_mid": round(math.log10(float(s.snr[len(s) // 2])), 3),
            "final_loss": round(sum(tail) / len(tail), 5) if tail else None}


def t_grid(T: int, points: int) -> list[int]:
    """``points`` timesteps evenly spaced over {0, …, T − 1}, both ends included (rounded, duplicates dropped)."""
    if points < 2:
        return [0]
    return sorted({int(round(i * (T - 1) / (points - 1))) for i in range(points)})


@torch.no_grad()
def loss_per_t(model, schedule, x0: torch.Tensor, noise: torch.Tensor, timesteps: Sequence[int], *,
               batch_size: int = 64, device=None) -> torch.Tensor:
    """Per-image ε-prediction loss ‖ε − ε_θ(x_t, t)‖² (mean over pixels, DDPM eq. 14) at each t: float64 (len(t), n).

    x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε with the same ε (``noise``, one per image) at every t, so rows are paired
    across t, and across models called with the same ``x0`` and ``noise``. ``x0`` in [-1, 1], (n, C, H, W).
    """
    device = x0.device if device is None else device
    out = torch.empty(len(timesteps), len(x0), dtype=torch.float64)
    for i, t in enumerate(timesteps):
        for a in range(0, len(x0), batch_size):
            x, eps = x0[a:a + batch_size].to(device), noise[a:a + batch_size].to(device)
            tt = torch.full((len(x),), int(t), dtype=torch.long, device=device)
            x_t = schedule.to(device).add_noise(x, eps, tt)  # √ᾱ_t x_0 + √(1 − ᾱ_t) ε
            eps_hat = model(x_t, tt).double()
            out[i, a:a + len(x)] = ((eps.double() - eps_hat) ** 2).flatten(1).mean(1).cpu()
    return out


def mean_interval(values: torch.Tensor, level_z: float = 1.96) -> tuple[float, float, float]:
    """Mean of per-image values and its normal 95 % interval over images (mean ± 1.96 s/√n)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    m = float(v.mean())
    half = level_z * float(v.std(unbiased=True)) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return m, m - half, m + half


def loss_per_t_summary(losses: torch.Tensor, timesteps: Sequence[int], schedule) -> dict:
    """Per t: mean loss over images with its 95 % interval, and log₁₀ SNR(t); and the uniform-over-t mean (each
    image's loss averaged over the t points, then the mean and interval over images: what training averages)."""
    per_t = [mean_interval(losses[i]) for i in range(len(timesteps))]
    u = mean_interval(torch.as_tensor(losses, dtype=torch.float64).mean(0))
    snr = schedule.snr
    return {"t": [int(t) for t in timesteps], "log10_snr": [math.log10(float(snr[t])) for t in timesteps],
            "mean": [p[0] for p in per_t], "lo": [p[1] for p in per_t], "hi": [p[2] for p in per_t],
            "uniform_t_mean": u[0], "uniform_t_lo": u[1], "uniform_t_hi": u[2], "n_images": int(losses.shape[1])}


def heldout_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """ε for n images, image i drawn from its own generator seeded ``seed + i`` (so a prefix is a smaller set's ε)."""
    n, rest = shape[0], tuple(shape[1:])
    return torch.stack([torch.randn(rest, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)])


def schedule_loss_per_t(ctx, runs: dict, *, heldout: str, n_images: int, t_points: int, seed: int = 0,
                        batch_size: int = 64) -> dict[str, dict]:
    """:func:`loss_per_t` of each trained run on the same ``n_images`` held-out images (a seeded random subset of
    ``heldout``) with the same ε per image, at ``t_points`` evenly spaced t (:func:`t_grid`); cached per run.

    Returns schedule → :func:`loss_per_t_summary` (plus ``loss_s``, the seconds it took when it ran).
    """
    from ddlib.data import load_dataset, to_model_range

    out = {}
    for name, run in runs.items():
        T = run.config.num_train_timesteps
        ts = t_grid(T, t_points)
        key = {"run": run.key, "heldout": heldout, "n_images": n_images, "t": ts, "seed": seed,
               "method": "loss-per-t-v1"}

        def compute(run=run, ts=ts) -> dict:
            data = load_dataset(heldout, progress=False)
            idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n_images]
            x0 = to_model_range(data.images[idx])
            noise = heldout_noise(x0.shape, seed)
            trained = run.load(ctx.device)
            t0 = time.perf_counter()
            losses = loss_per_t(trained.model, trained.schedule, x0, noise, ts, batch_size=batch_size,
                                device=ctx.device)
            return {**loss_per_t_summary(losses, ts, trained.schedule), "loss_s": round(time.perf_counter() - t0, 1),
                    "hardware": ctx.hardware}

        out[name] = ctx.cached("loss_per_t", key, compute)
    return out


def loss_findings(losses: dict, schedules: dict, threshold: float = 0.01) -> list[str]:
    """Sentences about :func:`schedule_loss_per_t` results (``schedules``: name → NoiseSchedule): per schedule, the
    loss at the first t against the last (a difference is called only where the 95 % intervals do not overlap), the
    uniform-over-t mean, and the mean over the measured t with ᾱ_t < ``threshold`` against the rest."""
    out = []
    for name, r in losses.items():
        lo_first, hi_first, lo_last, hi_last = r["lo"][0], r["hi"][0], r["lo"][-1], r["hi"][-1]
        if lo_first > hi_last:
            verdict = "higher at low noise"
        elif lo_last > hi_first:
            verdict = "higher near pure noise"
        else:
            verdict = "not resolved between the two ends (intervals overlap)"
        abar = schedules[name].alphas_cumprod
        low = [m for t, m in zip(r["t"], r["mean"]) if float(abar[t]) < threshold]
        rest = [m for t, m in zip(r["t"], r["mean"]) if float(abar[t]) >= threshold]
        split = (f"over the measured t with ᾱ_t < {threshold:g} ({len(low)} of {len(r['t'])}) the mean loss is "
                 f"{sum(low) / len(low):.4g}, over the rest {sum(rest) / len(rest):.4g}" if low and rest else
                 f"{'all' if low else 'none'} of the measured t have ᾱ_t < {threshold:g}")
        out.append(f"{name}: loss {r['mean'][0]:.4g} [{lo_first:.4g}, {hi_first:.4g}] at t = {r['t'][0]} and "
                   f"{r['mean'][-1]:.4g} [{lo_last:.4g}, {hi_last:.4g}] at t = {r['t'][-1]}: {verdict}; mean over t "
                   f"{r['uniform_t_mean']:.4g} [{r['uniform_t_lo']:.4g}, {r['uniform_t_hi']:.4g}] (n = "
                   f"{r['n_images']} images); {split}.")
    return out


def _compare_rows(ctx, rows: Sequence[dict], labels: Sequence[str], reference: str, count: int | None) -> dict:
    """:func:`rank_rows` on copies of ``rows``: {"sentence", "lead", "resolved", "cells"} (the rows stay as they are)."""
    copies = rank_rows(ctx, [dict(r) for r in rows], labels, reference, count)
    lead = next((lab for r, lab in zip(copies, labels) if r.get("fid_vs_lowest") == "lowest"), None)
    if lead is None:
        return {"sentence": "n/a: fewer than two scored settings", "lead": None, "resolved": False,
                "cells": [None] * len(rows)}
    lead_row = next(r for r in copies if r.get("fid_vs_lowest") == "lowest")
    return {"sentence": lead_row["fid_ranking"], "lead": lead, "resolved": bool(lead_row.get("fid_lead_resolved")),
            "cells": [r.get("fid_vs_lowest") for r in copies]}


def schedule_samplers(ctx, runs: dict, *, n: int, ddim_steps: int, ddpm_n: int, reference: str,
                      reference_count: int | None, batch_size: int, seed: int = 0, clip: bool = False,
                      real_dataset: str | None = None, default_eta: float = 0.0, losses: dict | None = None) -> dict:
    """The schedules under DDIM-S at η = 0 and η = 1 (``n`` samples), under each one's better η, and under DDPM-T
    (``ddpm_n`` samples); every comparison paired (same per-image seeds) and generated by :func:`rank_rows`.

    Per schedule the η whose FID is lower with a resolved paired difference is chosen; where the difference is not
    resolved, ``default_eta`` is used and the row says so (``chosen_from``). Returns ``{"ddim", "best", "ddpm"}``
    (rows; ``best`` ranked across schedules, ``ddpm`` too) and ``"sentences"``: ``eta_choice`` (schedule → sentence),
    ``ddim`` (η → sentence across schedules), ``best`` and ``ddpm`` (sentences across schedules).
    With ``real_dataset`` the rows carry the real-image floor at their n; ``losses``
    (:func:`schedule_loss_per_t`) adds the uniform-over-t mean loss to the ``best`` rows.
    """
    ref_label = ctx.reference_label(reference, reference_count)

    def floor(k: int) -> dict:
        if not real_dataset:
            return {}
        return floor_columns(real_floor(ctx, real_dataset, k, seed=seed, reference=reference,
                                        reference_count=reference_count), real_dataset)

    fl_n, fl_ddpm = floor(n), floor(ddpm_n)
    ddim, by_eta = [], {}
    for name, run in runs.items():
        for eta in (0.0, 1.0):
            res = scored(ctx, run, n=n, sampler="ddim", num_steps=int(ddim_steps), eta=eta, reference=reference,
                         reference_count=reference_count, batch_size=batch_size, seed=seed, clip=clip)
            row = ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, schedule=name,
                          sampler=_sampler_label(f"DDIM-{ddim_steps}", clip), steps=int(ddim_steps), eta=eta,
                          **interval_columns(res), sample_s=res["sample_s"], **fl_n)
            ddim.append(row)
            by_eta.setdefault(eta, []).append(row)
    sentences = {"eta_choice": {}, "ddim": {}}
    best = []
    for name, run in runs.items():
        pair = [r for r in ddim if r["schedule"] == name]
        c = _compare_rows(ctx, pair, [f"{name}, η={r['eta']:g}" for r in pair], reference, reference_count)
        for r, cell in zip(pair, c["cells"]):
            r["eta_vs_other"] = cell
        if c["resolved"]:
            pick = next(r for r, cell in zip(pair, c["cells"]) if cell == "lowest")
            why = f"η={pick['eta']:g}: resolved against the other η at n={n}"
        else:
            pick = next(r for r in pair if r["eta"] == default_eta)
            why = f"η={default_eta:g} (the stated default): η=0 vs η=1 not resolved at n={n}"
        sentences["eta_choice"][name] = c["sentence"]
        loss = (losses or {}).get(name) or {}
        best.append(ctx.row(wall_s=pick["wall_s"], n_samples=pick["n_samples"], reference=ref_label,
                            **schedule_columns(name, run),
                            loss_uniform_t=None if not loss else round(loss["uniform_t_mean"], 5),
                            sampler=pick["sampler"], eta=pick["eta"], chosen_from=why,
                            **interval_columns(pick), train_s=run.wall_s, **fl_n))
    for eta, rows in by_eta.items():
        sentences["ddim"][eta] = _compare_rows(ctx, rows, [r["schedule"] for r in rows], reference,
                                               reference_count)["sentence"]
    rank_rows(ctx, best, [f"{r['schedule']} (η={r['eta']:g})" for r in best], reference, reference_count)
    sentences["best"] = next((r["fid_ranking"] for r in best if r.get("fid_vs_lowest") == "lowest"),
                             "n/a: fewer than two schedules")
    ddpm = []
    for name, run in runs.items():
        T = run.config.num_train_timesteps
        res = scored(ctx, run, n=ddpm_n, sampler="ddpm", reference=reference, reference_count=reference_count,
                     batch_size=batch_size, seed=seed, clip=clip)
        ddpm.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, schedule=name,
                            sampler=_sampler_label(f"DDPM-{T}", clip), steps=T, **interval_columns(res),
                            sample_s=res["sample_s"], **fl_ddpm))
    rank_rows(ctx, ddpm, [r["schedule"] for r in ddpm], reference, reference_count)
    sentences["ddpm"] = next((r["fid_ranking"] for r in ddpm if r.get("fid_vs_lowest") == "lowest"),
                             "n/a: fewer than two schedules")
    return {"ddim": ddim, "best": best, "ddpm": ddpm, "sentences": sentences}


# --------------------------------------------------------------------------------------------------
# 03: latent diffusion with classifier-free guidance


def vae_train_config(*, dataset: str, data_limit: int | None, preset: str, overrides: dict | None, steps: int,
                     batch_size: int, lr: float, warmup_steps: int, ema_decay: float, seed: int = 0,
                     scale_images: int = 1024, log_points: int = 100):
    """A :class:`ddlib.train_vae.VAETrainConfig` from notebook literals (LDM's L1 + 1e-6·KL objective)."""
    from ddlib.train_vae import VAETrainConfig

    return VAETrainConfig(dataset=dataset, data_limit=data_limit, preset=preset, vae=dict(overrides or {}), steps=steps,
                          batch_size=batch_size, lr=lr, warmup_steps=min(warmup_steps, max(steps - 1, 0)),
                          ema_decay=ema_decay, seed=seed, scale_images=scale_images,
                          log_every=max(1, steps // log_points), checkpoint_every=max(1, math.ceil(steps / 4)))


def train_vae_cached(ctx, config, data=None):
    """The VAE run of ``config`` (cached like a diffusion run; :func:`ddlib.train_vae.train_vae`)."""
    from ddlib.train_vae import train_vae

    return ctx.train(config, data=data, train_fn=train_vae)


def train_latent_cached(ctx, config, vae_run):
    """The latent diffusion run of ``config`` on the latents of ``vae_run`` (cached; keyed by both)."""
    from ddlib.data import default_cache_dir
    from ddlib.latent import train_latent_diffusion

    def train_fn(cfg, out_dir, data=None, **kw):
        return train_latent_diffusion(cfg, vae_run.run_dir, out_dir, cache_dir=default_cache_dir() / "latents", **kw)

    return ctx.train(config, train_fn=train_fn, extra_key={"vae_run": vae_run.key})


def training_reference(ctx, data, count: int | None) -> tuple[str, str]:
    """Register the training images of ``data`` (a seeded random subset of ``count``; ``None``: all) as a FID
    reference. Returns ``(name, label)``: ``name`` for :meth:`ddlib.lab.context.Context.score`, ``label`` for tables.
    """
    from ddlib.metrics import subset_indices

    images = data.images
    name = f"{data.name}, {len(data.labels_present)} classes"
    if count is not None and count < len(images):
        images = images[torch.from_numpy(subset_indices(len(images), count))]
        name += ", random subset (seed 0)"
    return name, ctx.image_reference(images, name)


def equal_values_side(values: int, channels: int = 3) -> int:
    """The side h of the square ``channels``×h×h image whose number of values is closest to ``values`` (ties: the
    smaller h): the bicubic size that stores as many numbers per image as a latent of ``values`` numbers."""
    h = max(1, math.isqrt(max(values, 1) // channels))
    return min((h, h + 1), key=lambda k: (abs(channels * k * k - values), k))


def bicubic_to_size(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images bicubically (antialiased) shrunk to ``side``×``side`` and enlarged back to their size."""
    import torch.nn.functional as F

    from ddlib.data import to_model_range, to_uint8

    x = to_model_range(images)
    small = F.interpolate(x, size=(side, side), mode="bicubic", antialias=True)
    return to_uint8(F.interpolate(small, size=x.shape[-2:], mode="bicubic", antialias=True))


def vae_table(ctx, vae_run, images: torch.Tensor, dataset_label: str, *, reference: str | None = None,
              reference_label: str | None = None) -> tuple[list[dict], list[torch.Tensor]]:
    """PSNR/SSIM of the VAE's reconstructions of ``images`` and of two bicubic baselines.

    The baselines: bicubic down by the VAE's factor f and up again (3×(H/f)×(W/f) values per image), and bicubic
    through the square size whose 3·h·w is closest to the latent's c×(H/f)×(W/f) values (:func:`equal_values_side`),
    so the VAE is also compared at an (almost) equal number of values per image; ``values_per_image`` says how many.
    With a ``reference`` (a name for :meth:`ddlib.lab.context.Context.score`) each row also gets FID/KID of its
    images against it, and a first row scores the real ``images`` themselves: the floor at this sample count
    (every other row carries it as ``floor_*`` columns, a note under the table).
    The reconstructions' FID is a heuristic reference for latent models decoded by this VAE, not a bound (their
    samples are not reconstructions); compare it only at matched n. ``reference`` in each row's provenance names
    the FID reference (``reference_label``), ``images`` the images scored (``dataset_label``).
    Returns the rows and ``[originals, VAE reconstructions, bicubic ↓f, bicubic equal values]`` of the first 8
    images for a figure.
    """
    from ddlib.latent import bicubic_reconstruction, image_quality, reconstruct
    from ddlib.vae import load_vae

    vae = load_vae(vae_run.run_dir, device=ctx.device)
    cfg = vae.config
    t0 = time.perf_counter()
    recon = reconstruct(vae, images)
    seconds = time.perf_counter() - t0
    bicubic = bicubic_reconstruction(images, cfg.factor)
    latent_values = math.prod(cfg.latent_shape)
    side = equal_values_side(latent_values, images.shape[1])
    equal = bicubic_to_size(images, side)
    q_vae, q_bic, q_eq = image_quality(images, recon), image_quality(images, bicubic), image_quality(images, equal)
    latent = "×".join(map(str, cfg.latent_shape))
    ref = reference_label if reference is not None else dataset_label
    c, small = images.shape[1], cfg.image_size // cfg.factor
    common = dict(n_samples=len(images), reference=ref, images=dataset_label)
    rows = [ctx.row(wall_s=seconds, **common, method=f"VAE {vae_run.config.preset} (f={cfg.factor})",
                    latent_shape=latent, values_per_image=latent_values, scale_factor=round(vae.scale_factor, 4),
                    train_steps=vae_run.config.steps, psnr_db=round(q_vae["psnr"], 2), ssim=round(q_vae["ssim"], 4),
                    train_s=vae_run.wall_s),
            ctx.row(wall_s=None, **common, method=f"bicubic ↓{cfg.factor} ↑{cfg.factor} (baseline)",
                    latent_shape=f"{c}×{small}×{small}", values_per_image=c * small * small, scale_factor=None,
                    train_steps=None, psnr_db=round(q_bic["psnr"], 2), ssim=round(q_bic["ssim"], 4), train_s=None),
            ctx.row(wall_s=None, **common, method=f"bicubic via {side}×{side} (≈ the latent's values)",
                    latent_shape=f"{c}×{side}×{side}", values_per_image=c * side * side, scale_factor=None,
                    train_steps=None, psnr_db=round(q_eq["psnr"], 2), ssim=round(q_eq["ssim"], 4), train_s=None)]
    if reference is not None:
        real = ctx.row(wall_s=None, **common, method="real images (no model)", latent_shape=None,
                       values_per_image=None, scale_factor=None, train_steps=None, psnr_db=None, ssim=None, train_s=None)
        rows.insert(0, real)
        from ddlib.data import images_sha1

        key = {"vae": vae_run.key, "images": images_sha1(images), "reference": reference_label,
               "method": INTERVAL_METHOD, "sets": ["real", "vae", "bicubic", f"bicubic-{side}"]}
        scores = ctx.cached("vae_fid", key, lambda: {"scores": [score_interval(ctx, x, reference)
                                                                for x in (images, recon, bicubic, equal)]})
        for row, score in zip(rows, scores["scores"]):
            row.update(**interval_columns(score), fid_reference=reference_label)
        floor = floor_columns(scores["scores"][0], dataset_label)
        for row in rows[1:]:
            row.update(floor)
        rank_rows(ctx, rows[1:], ["VAE reconstructions", f"bicubic ↓{cfg.factor}", f"bicubic via {side}×{side}"],
                  reference, None)  # paired: the same images
    k = min(8, len(images))
    return rows, [images[:k], recon[:k], bicubic[:k], equal[:k]]


def values_sentence(vae_rows: Sequence[dict]) -> str:
    """How many values per image the VAE latent and each bicubic baseline keep, and their ratios (generated)."""
    model = [r for r in vae_rows if r.get("method", "").startswith("VAE") and r.get("values_per_image")]
    base = [r for r in vae_rows if r.get("method", "").startswith("bicubic") and r.get("values_per_image")]
    if not model:
        return "n/a: no VAE row"
    v = model[0]["values_per_image"]
    parts = [f"{r['method'].split(' (')[0]} keeps {r['values_per_image']} (latent/baseline = "
             f"{v / r['values_per_image']:.2f})" for r in base]
    return f"The VAE latent ({model[0]['latent_shape']}) keeps {v} values per image; " + "; ".join(parts) + "."


def cached_classifier(ctx, train_data, val_data, *, steps: int, batch_size: int = 64, width: int = 32, seed: int = 0):
    """A :class:`ddlib.metrics.classifier.SmallCNN` trained on ``train_data`` (cached weights) and its accuracy on ``val_data``."""
    import hashlib

    from ddlib.checkpoint import config_hash, load_checkpoint, save_checkpoint
    from ddlib.metrics.classifier import SmallCNN, class_consistency, train_classifier

    digest = hashlib.sha1(train_data.images.numpy().tobytes())
    digest.update(train_data.labels.numpy().tobytes())
    key = config_hash({"data": digest.hexdigest(), "steps": steps, "batch_size": batch_size, "width": width, "seed": seed})
    path = ctx.cache_root / "models" / f"classifier-{key}.pt"
    from ddlib.lab.cache import forced

    t0 = time.perf_counter()
    if path.is_file() and not forced(path):
        state = load_checkpoint(path)
        clf = SmallCNN(state["num_classes"], state["in_channels"], width)
        clf.load_state_dict(state["model"])
        clf = clf.to(ctx.device).eval()
        seconds = state["train_s"]
    else:
        clf = train_classifier(train_data, steps, batch_size=batch_size, width=width, seed=seed, device=ctx.device)
        seconds = time.perf_counter() - t0
        save_checkpoint({"kind": "classifier", "num_classes": clf.num_classes, "in_channels": clf.in_channels,
                         "model": clf.state_dict(), "train_s": seconds}, path)
    acc = class_consistency(clf, val_data.images, val_data.labels)
    n_val = len(val_data.images)
    _, lo, hi = wilson_interval(round(acc * n_val), n_val)
    return clf, {"val_accuracy": round(acc, 4), "val_lo": round(lo, 4), "val_hi": round(hi, 4), "val_n": n_val,
                 "train_s": round(seconds, 1), "steps": steps}


def guidance_table(ctx, ldm_run, vae_run, classifier, classifier_info: dict, *, scales: Sequence[float], n: int,
                   num_steps: int, reference: str, reference_label: str, batch_size: int, classes: Sequence[int],
                   seed: int = 0, floor: dict | None = None) -> list[dict]:
    """The classifier-free guidance sweep (:func:`ddlib.lab.sweep.guidance_sweep`): FID, KID (intervals), class
    consistency per scale s; every scale compared with the lowest-FID one on the same seeds and labels.

    ``classes``: the labels the model was trained on (``data.labels_present``); the samples cycle through them.
    Class consistency carries a Wilson 95 % interval over the n samples (``class_consistency_lo/hi``) and, for
    every s other than the lowest scale (s = 0, unguided), a paired comparison with it over the same sample
    indices (same x_T and label): ``consistency_vs_lowest_scale`` (a cell) and ``consistency_comparison``
    (a sentence; :func:`paired_proportion_difference`). ``floor``: :func:`guidance_floor`'s result, whose
    columns every row carries (a note under the table).
    """
    from ddlib.lab.sweep import guidance_sweep
    from ddlib.train import load_trained
    from ddlib.vae import load_vae

    key = {"ldm": ldm_run.key, "vae": vae_run.key, "classifier": classifier_info, "scales": [float(s) for s in scales],
           "n": n, "num_steps": num_steps, "reference": reference_label, "seed": seed, "classes": list(classes),
           "intervals": INTERVAL_METHOD, "per_sample": 1}

    def sweep() -> dict:
        trained = load_trained(ldm_run.run_dir, device=ctx.device)
        vae = load_vae(vae_run.run_dir, device=ctx.device)
        recs = guidance_sweep(trained.model, trained.schedule, list(scales), n, classifier, num_steps=num_steps,
                              seed=seed, batch_size=batch_size, decode=vae.decode, classes=list(classes),
                              metrics=lambda images: {**ctx.score(images, reference),
                                                      **score_interval(ctx, images, reference)})
        return {"records": recs, "hardware": ctx.hardware}

    res = ctx.cached("guidance_sweep", key, sweep)
    floor_cols = floor_columns(floor, floor["dataset"]) if floor and floor.get("fid") is not None else {}
    recs = res["records"]
    base = min(recs, key=lambda r: r["scale"])
    rows = []
    for r in recs:
        k = sum(r["correct"])
        _, lo, hi = wilson_interval(k, len(r["correct"]))
        cmp = {}
        if r is not base:
            d = paired_proportion_difference(base["correct"], r["correct"], seed=seed)
            word = "resolved" if d["resolved"] else "not resolved"
            cmp = {"consistency_vs_lowest_scale": f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}], {word}",
                   "consistency_comparison": (
                       f"s = {r['scale']:g} against s = {base['scale']:g}: class consistency {r['class_consistency']:.3f} "
                       f"against {base['class_consistency']:.3f}, paired difference {d['delta']:+.3f} "
                       f"[{d['lo']:+.3f}, {d['hi']:+.3f}] (95 % paired bootstrap over the same {d['n']} sample indices: "
                       f"same x_T, same label), {word} at n = {d['n']}.")}
        rows.append(ctx.row(wall_s=r["sample_seconds"] + r.get("score_s", 0.0), n_samples=r["n"], reference=reference_label,
                            dataset=ldm_run.config.dataset, scale=r["scale"], steps=num_steps,
                            **interval_columns(r), class_consistency=round(r["class_consistency"], 4),
                            class_consistency_lo=round(lo, 4), class_consistency_hi=round(hi, 4), **cmp,
                            classifier_val_acc=classifier_info["val_accuracy"],
                            classifier_val_lo=classifier_info.get("val_lo"), classifier_val_hi=classifier_info.get("val_hi"),
                            classifier_val_n=classifier_info.get("val_n"), sample_s=r["sample_seconds"], **floor_cols))
    return rank_rows(ctx, rows, [f"s={r['scale']:g}" for r in rows], reference, None)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """``(k/n, lo, hi)``: the Wilson score interval for a binomial proportion (Wilson 1927).

    The p whose score test at ``level`` accepts k successes in n: the roots of
    (k/n − p)² = z² p (1 − p) / n. Unlike k/n ± z·se it stays in [0, 1] and does not collapse at k = 0 or n.
    """
    from statistics import NormalDist

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (the roots are 0 and 1 there)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return p, lo, hi


def paired_proportion_difference(a: Sequence[bool], b: Sequence[bool], *, seed: int = 0) -> dict:
    """Mean of ``b − a`` over paired binary outcomes (sample i of both sets from the same x_T and label) with the
    lab's 95 % basic bootstrap interval over the n indices (the resampling counts of
    :func:`ddlib.metrics.uncertainty.bootstrap_counts`); ``resolved`` when the interval excludes 0."""
    import numpy as np

    from ddlib.metrics import uncertainty as U

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 1:
        raise ValueError(f"need two paired 1-D outcome lists of equal length, got {a.shape} and {b.shape}")
    d = b - a
    reps = U.bootstrap_counts(len(d), seed=seed) @ d / len(d)
    iv = U._basic_interval("Δconsistency", float(d.mean()), reps, len(d), U.LEVEL)
    lo, hi = (iv.lo, iv.hi) if math.isfinite(iv.lo) else (float(d.mean()), float(d.mean()))
    return {"delta": float(d.mean()), "lo": lo, "hi": hi, "n": len(d), "level": U.LEVEL,
            "resolved": bool(lo > 0 or hi < 0)}


def held_out(dataset: str, classes: Sequence[int]):
    """Every image of ``dataset`` (e.g. the validation split) whose label is in ``classes`` — the held-out images of
    the classes a model was trained on — as ``.images``, ``.labels``, ``.name``. Unlike a ``limit``, which keeps the
    first images of the canonical (class-sorted) order and so may cover only some of the classes, this keeps all
    of them for every class the model knows (the classifier's accuracy and the guidance floor are read on these)."""
    from types import SimpleNamespace

    from ddlib.data import load_dataset

    data = load_dataset(dataset, progress=False)
    keep = torch.isin(data.labels, torch.tensor(list(classes)))
    return SimpleNamespace(images=data.images[keep], labels=data.labels[keep], name=f"{dataset}, {len(classes)} classes")


def guidance_floor(ctx, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int], n: int, *, reference: str,
                   dataset: str, seed: int = 0) -> dict:
    """The real-image floor of the guidance sweep: ``n`` held-out real images (a seeded random subset of ``images``
    whose label is in ``classes``) scored against the sweep's reference with the same intervals.

    Returns :func:`ddlib.lab.intervals.score_interval`'s columns plus ``dataset``; with fewer than ``n`` such
    images, ``fid`` is None and ``reason`` says why (the floor must be read at the sweep's n).
    """
    keep = torch.isin(torch.as_tensor(labels), torch.tensor(list(classes)))
    pool = images[keep]
    label = f"{dataset}, same classes"
    if len(pool) < n:
        return {"fid": None, "dataset": label, "n_samples": n,
                "reason": f"n/a: only {len(pool)} held-out images of these classes, fewer than the sweep's n = {n}"}
    idx = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
    return {**score_interval(ctx, pool[idx], reference), "dataset": label}


def guidance_summary(rows: Sequence[dict]) -> list[str]:
    """The measured sentences of the guidance sweep, for the notebook's closing discussion (generated, never typed)."""
    out = []
    lead = [r for r in rows if r.get("fid_vs_lowest") == "lowest" and r.get("fid_ranking")]
    if lead:
        out.append("FID: " + lead[0]["fid_ranking"])
    if rows and rows[0].get("floor_fid") is not None:
        r = rows[0]
        out.append(f"Real-image floor at n = {r['floor_n']}: FID {r['floor_fid']:.4g} [{r['floor_fid_lo']:.4g}, "
                   f"{r['floor_fid_hi']:.4g}] (held-out {r['floor_dataset']}, against the same reference).")
    for r in rows:
        if r.get("consistency_comparison"):
            out.append("Class consistency: " + r["consistency_comparison"])
    if rows and rows[0].get("classifier_val_n"):
        r = rows[0]
        out.append(f"Classifier accuracy on {r['classifier_val_n']} real validation images: {r['classifier_val_acc']:.3f} "
                   f"[{r['classifier_val_lo']:.3f}, {r['classifier_val_hi']:.3f}] (Wilson 95 %).")
    return out


def per_class_scale_grid(ctx, ldm_run, vae_run, *, classes: Sequence[int], per_class: int, scales: Sequence[float],
                         num_steps: int, seed: int = 0) -> dict[float, list[torch.Tensor]]:
    """:func:`per_class_samples` at every scale in ``scales``: ``{s: [images of class c, ...]}``.

    The labels, seeds and batch are the same at every s, so sample j of class c starts from the same x_T (and the
    same per-step noise) at each scale: the columns of one class differ only through s.
    """
    return {float(s): per_class_samples(ctx, ldm_run, vae_run, classes=classes, per_class=per_class, scale=float(s),
                                        num_steps=num_steps, seed=seed) for s in scales}


def per_class_samples(ctx, ldm_run, vae_run, *, classes: Sequence[int], per_class: int, scale: float, num_steps: int,
                      seed: int = 0) -> list[torch.Tensor]:
    """``per_class`` guided samples of each class in ``classes`` (one uint8 tensor per class; cached)."""
    from ddlib.generate import generate
    from ddlib.train import load_trained
    from ddlib.vae import load_vae

    def make():
        trained = load_trained(ldm_run.run_dir, device=ctx.device)
        vae = load_vae(vae_run.run_dir, device=ctx.device)
        labels = torch.tensor([c for c in classes for _ in range(per_class)])
        return generate(trained.model, trained.schedule, len(labels), num_steps=num_steps, labels=labels, guidance=scale,
                        seed=seed, batch_size=len(labels), decode=vae.decode, progress=False)[0]

    key = {"ldm": ldm_run.key, "vae": vae_run.key, "classes": list(classes), "per_class": per_class, "scale": scale,
           "num_steps": num_steps, "seed": seed}
    images = ctx.cached_images("per_class", key, make)
    return [images[i * per_class:(i + 1) * per_class] for i in range(len(classes))]
