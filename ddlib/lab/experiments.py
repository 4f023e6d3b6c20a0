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
            c = compare_rows(ctx, hi, lo, (f"{conv} at S={steps[-1]}", f"S={steps[0]}"), reference, reference_count)
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


def schedule_comparison(ctx, runs: dict, *, n: int, ddim_steps: int, reference: str, reference_count: int | None,
                        batch_size: int, seed: int = 0, clip: bool = False) -> list[dict]:
    """One row per schedule: ᾱ at the last step, final loss, FID/KID (intervals) of DDIM samples at equal training
    steps, same per-image seeds; each compared with the lowest-FID schedule (:func:`ddlib.lab.intervals.rank_rows`)."""
    ref_label = ctx.reference_label(reference, reference_count)
    rows = []
    for name, run in runs.items():
        s = run.config.make_schedule()
        res = scored(ctx, run, n=n, sampler="ddim", num_steps=ddim_steps, eta=0.0, reference=reference,
                     reference_count=reference_count, batch_size=batch_size, seed=seed, clip=clip)
        log = run.log()
        tail = [r["loss"] for r in log[-max(1, len(log) // 10):]]
        T = len(s)
        rows.append(ctx.row(wall_s=res["wall_s"], n_samples=res["n_samples"], reference=ref_label, schedule=name,
                            train_steps=run.config.steps, alpha_bar_last=float(s.alphas_cumprod[-1]),
                            log10_snr_mid=round(math.log10(float(s.snr[T // 2])), 3),
                            final_loss=round(sum(tail) / len(tail), 5) if tail else None,
                            sampler=_sampler_label(f"DDIM-{ddim_steps} η=0", clip), **interval_columns(res),
                            train_s=run.wall_s))
    return rank_rows(ctx, rows, [f"{r['schedule']}" for r in rows], reference, reference_count)


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


def vae_table(ctx, vae_run, images: torch.Tensor, dataset_label: str, *, reference: str | None = None,
              reference_label: str | None = None) -> tuple[list[dict], list[torch.Tensor]]:
    """PSNR/SSIM of the VAE's reconstructions of ``images`` and of the bicubic baseline at the same factor.

    With a ``reference`` (a name for :meth:`ddlib.lab.context.Context.score`) each row also gets FID/KID of its
    images against it, and a first row scores the real ``images`` themselves: the floor at this sample count.
    The reconstructions' FID is a heuristic reference for latent models decoded by this VAE, not a bound (their
    samples are not reconstructions); compare it only at matched n. ``reference`` in each row's provenance names
    the FID reference (``reference_label``), ``images`` the images scored (``dataset_label``).
    Returns the rows and ``[originals, VAE reconstructions, bicubic]`` of the first 8 images for a figure.
    """
    from ddlib.latent import bicubic_reconstruction, image_quality, reconstruct
    from ddlib.vae import load_vae

    vae = load_vae(vae_run.run_dir, device=ctx.device)
    cfg = vae.config
    t0 = time.perf_counter()
    recon = reconstruct(vae, images)
    seconds = time.perf_counter() - t0
    bicubic = bicubic_reconstruction(images, cfg.factor)
    q_vae, q_bic = image_quality(images, recon), image_quality(images, bicubic)
    latent = "×".join(map(str, cfg.latent_shape))
    ref = reference_label if reference is not None else dataset_label
    rows = [ctx.row(wall_s=seconds, n_samples=len(images), reference=ref, images=dataset_label, method=f"VAE {vae_run.config.preset} (f={cfg.factor})",
                    latent_shape=latent, scale_factor=round(vae.scale_factor, 4), train_steps=vae_run.config.steps,
                    psnr_db=round(q_vae["psnr"], 2), ssim=round(q_vae["ssim"], 4), train_s=vae_run.wall_s),
            ctx.row(wall_s=None, n_samples=len(images), reference=ref, images=dataset_label, method=f"bicubic ↓{cfg.factor} ↑{cfg.factor} (baseline)",
                    latent_shape=f"3×{cfg.image_size // cfg.factor}×{cfg.image_size // cfg.factor}", scale_factor=None,
                    train_steps=None, psnr_db=round(q_bic["psnr"], 2), ssim=round(q_bic["ssim"], 4), train_s=None)]
    if reference is not None:
        real = ctx.row(wall_s=None, n_samples=len(images), reference=ref, images=dataset_label, method="real images (no model)",
                       latent_shape=None, scale_factor=None, train_steps=None, psnr_db=None, ssim=None, train_s=None)
        rows.insert(0, real)
        from ddlib.data import images_sha1

        key = {"vae": vae_run.key, "images": images_sha1(images), "reference": reference_label,
               "method": INTERVAL_METHOD}
        scores = ctx.cached("vae_fid", key, lambda: {"scores": [score_interval(ctx, x, reference)
                                                                for x in (images, recon, bicubic)]})
        for row, score in zip(rows, scores["scores"]):
            row.update(**interval_columns(score), fid_reference=reference_label)
        rank_rows(ctx, rows[1:], ["VAE reconstructions", "bicubic"], reference, None)  # paired: the same images
    k = min(8, len(images))
    return rows, [images[:k], recon[:k], bicubic[:k]]


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
    return clf, {"val_accuracy": round(acc, 4), "train_s": round(seconds, 1), "steps": steps}


def guidance_table(ctx, ldm_run, vae_run, classifier, classifier_info: dict, *, scales: Sequence[float], n: int,
                   num_steps: int, reference: str, reference_label: str, batch_size: int, classes: Sequence[int],
                   seed: int = 0) -> list[dict]:
    """The classifier-free guidance sweep (:func:`ddlib.lab.sweep.guidance_sweep`): FID, KID (intervals), class
    consistency per scale s; every scale compared with the lowest-FID one on the same seeds and labels.

    ``classes``: the labels the model was trained on (``data.labels_present``); the samples cycle through them.
    """
    from ddlib.lab.sweep import guidance_sweep
    from ddlib.train import load_trained
    from ddlib.vae import load_vae

    key = {"ldm": ldm_run.key, "vae": vae_run.key, "classifier": classifier_info, "scales": [float(s) for s in scales],
           "n": n, "num_steps": num_steps, "reference": reference_label, "seed": seed, "classes": list(classes),
           "intervals": INTERVAL_METHOD}

    def sweep() -> dict:
        trained = load_trained(ldm_run.run_dir, device=ctx.device)
        vae = load_vae(vae_run.run_dir, device=ctx.device)
        recs = guidance_sweep(trained.model, trained.schedule, list(scales), n, classifier, num_steps=num_steps,
                              seed=seed, batch_size=batch_size, decode=vae.decode, classes=list(classes),
                              metrics=lambda images: {**ctx.score(images, reference),
                                                      **score_interval(ctx, images, reference)})
        return {"records": recs, "hardware": ctx.hardware}

    res = ctx.cached("guidance_sweep", key, sweep)
    rows = []
    for r in res["records"]:
        rows.append(ctx.row(wall_s=r["sample_seconds"] + r.get("score_s", 0.0), n_samples=r["n"], reference=reference_label,
                            dataset=ldm_run.config.dataset, scale=r["scale"], steps=num_steps,
                            **interval_columns(r), class_consistency=round(r["class_consistency"], 4),
                            classifier_val_acc=classifier_info["val_accuracy"], sample_s=r["sample_seconds"]))
    return rank_rows(ctx, rows, [f"s={r['scale']:g}" for r in rows], reference, None)


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
