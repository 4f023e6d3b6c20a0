"""The report's uncertainty: cached generated features, FID/KID intervals, real-image floors, ranking columns.

Every FID/KID the lab reports comes with a 95 % bootstrap interval over the generated images
(:mod:`ddlib.metrics.uncertainty`; the reference held fixed), and every setting that a table ranks is
compared with the table's lowest-FID setting by a paired bootstrap of the difference (same per-image
seeds), so that a table says "resolved" or "not resolved at n = …" beside each row. The Inception
features of every scored image set are cached under ``<cache>/features/`` by the images' sha1, so the
bootstrap, the comparisons and later re-analyses never run the network twice.

:func:`table_view` is what :meth:`ddlib.lab.context.Context.table` calls: it adds the interval columns next
to ``fid``/``kid``, puts the sample count in the header when the column holds one n, and turns the
ranking and floor columns into notes under the table.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from ddlib.metrics import uncertainty as U

METHOD = f"bootstrap-basic-v1-B{U.N_BOOT}-level{U.LEVEL}-kidref{U.KID_MAX_REFERENCE}"


def features(ctx, images) -> tuple[np.ndarray, str]:
    """Inception features of uint8 ``images`` and their cache key (sha1 of the images; computed once)."""
    from ddlib.data import images_sha1
    from ddlib.lab.cache import forced
    from ddlib.metrics import PREP_TAG, compute_features

    key = f"{images_sha1(images)[:20]}.{PREP_TAG}"
    path = ctx.cache_root / "features" / f"{key}.npz"
    if path.is_file() and not forced(path):
        with np.load(path) as z:
            return z["features"], key
    t0 = time.perf_counter()
    feats = compute_features(images, device=ctx.device_str, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, features=feats, seconds=time.perf_counter() - t0)
    os.replace(tmp, path)
    return feats, key


def load_features(ctx, key: str) -> np.ndarray:
    """The cached features named by a key that :func:`features` returned."""
    with np.load(ctx.cache_root / "features" / f"{key}.npz") as z:
        return z["features"]


def _reference_key(ctx, reference: str, count: int | None) -> dict:
    refs = getattr(ctx, "_image_refs", {})
    return {"reference": reference, "reference_count": count,
            "reference_file": refs[reference][0].name if reference in refs else None}


def score_interval(ctx, images, reference: str, count: int | None = None, *, seed: int = 0) -> dict:
    """FID and KID of ``images`` against a reference with their 95 % intervals over the generated set (cached).

    Returns ``fid, fid_lo, fid_hi, kid, kid_lo, kid_hi, kid_std`` (``kid_std``: the spread over generated
    resamples), ``n_samples`` and ``features`` (the cache key of the images' features, for comparisons).
    """
    feats, fkey = features(ctx, images)
    return interval_from_features(ctx, fkey, reference, count, seed=seed, feats=feats)


def interval_from_features(ctx, fkey: str, reference: str, count: int | None = None, *, seed: int = 0,
                           feats: np.ndarray | None = None) -> dict:
    """:func:`score_interval` from cached features (``fkey``)."""

    def compute() -> dict:
        f = load_features(ctx, fkey) if feats is None else feats
        ref_feats, ref_stats = ctx._reference(reference, count)
        t0 = time.perf_counter()
        fi = U.fid_interval(f, ref_stats, seed=seed)
        ki = U.kid_interval(f, ref_feats, seed=seed)
        return {**_rounded(fi), **_rounded(ki), "kid_std": round(ki.std, 6), "n_samples": int(len(f)),
                "n_boot": fi.n_boot, "level": fi.level, "features": fkey, "interval_s": round(time.perf_counter() - t0, 2)}

    key = {"features": fkey, **_reference_key(ctx, reference, count), "method": METHOD, "seed": seed}
    return ctx.cached("interval", key, compute)


def _rounded(iv: U.Interval) -> dict:
    digits = 3 if iv.metric == "fid" else 6
    return {k: round(v, digits) for k, v in iv.columns().items()}


def interval_columns(res: dict) -> dict:
    """The row columns of a :func:`score_interval` result."""
    return {k: res[k] for k in ("fid", "fid_lo", "fid_hi", "kid", "kid_lo", "kid_hi", "kid_std", "features")}


def real_floor(ctx, dataset: str, n: int, *, seed: int, reference: str, reference_count: int | None) -> dict:
    """The real-image floor at ``n``: ``n`` held-out real images of ``dataset`` (the seeded random subset of
    :func:`ddlib.lab.experiments.real_score`) scored against the same reference, with the same intervals.

    FID is biased upwards at small n; a model's FID at n is to be read against this, not against 0.
    """
    import torch

    from ddlib.data import load_dataset

    def make() -> dict:
        data = load_dataset(dataset, progress=False)
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
        t0 = time.perf_counter()
        res = score_interval(ctx, data.images[idx], reference, reference_count, seed=seed)
        return {**res, "score_s": round(time.perf_counter() - t0, 1)}

    key = {"dataset": dataset, "n": n, "seed": seed, **_reference_key(ctx, reference, reference_count), "method": METHOD}
    return ctx.cached("real_floor", key, make)


def floor_columns(res: dict, dataset: str) -> dict:
    """Row columns that carry a floor beside a model's score: ``floor_fid``, ``floor_fid_lo``, ``floor_fid_hi``, …"""
    return {"floor_fid": res["fid"], "floor_fid_lo": res["fid_lo"], "floor_fid_hi": res["fid_hi"],
            "floor_kid": res["kid"], "floor_n": res["n_samples"], "floor_dataset": dataset}


# ---- ranking ----------------------------------------------------------------------------------------


def rank_rows(ctx, rows: Sequence[dict], labels: Sequence[str], reference: str, count: int | None, *,
              metric: str = "fid", seed: int = 0) -> list[dict]:
    """Compare every row with the lowest-``metric`` row (paired bootstrap over their cached features).

    Each row gains ``{metric}_vs_lowest`` (a short cell: "lowest", "worse by Δ [lo, hi]" or "not resolved:
    Δ [lo, hi]") and ``{metric}_ranking`` (the sentence of :func:`ddlib.metrics.uncertainty.compare`);
    the lowest row's ``{metric}_ranking`` is :func:`ddlib.metrics.uncertainty.leader_sentence` and its
    ``{metric}_lead_resolved`` says whether it beat every other row with a resolved difference. Rows need
    ``features`` (from :func:`score_interval`); rows of unequal n are compared unpaired. Returns ``rows``.
    """
    scored = [(r, lab) for r, lab in zip(rows, labels) if r.get("features") and r.get(metric) is not None]
    if len(scored) < 2:
        return list(rows)
    lead_row, lead_label = min(scored, key=lambda p: p[0][metric])
    comps = []
    for r, lab in scored:
        if r is lead_row:
            continue
        c = _cached_compare(ctx, lead_row["features"], r["features"], (lead_label, lab), reference, count, metric, seed)
        comps.append(c)
        d = c.delta
        cell = f"{_signed(-d.estimate)} [{_signed(-d.hi)}, {_signed(-d.lo)}]"
        r[f"{metric}_vs_lowest"] = f"worse by {cell}" if c.resolved else f"not resolved: {cell}"
        r[f"{metric}_ranking"] = c.sentence
    lead_row[f"{metric}_vs_lowest"] = "lowest"
    lead_row[f"{metric}_ranking"] = U.leader_sentence(lead_label, comps)
    lead_row[f"{metric}_lead_resolved"] = all(c.resolved for c in comps)  # "best" may be said only when True
    return list(rows)


def _signed(v: float) -> str:
    return f"{v:+.4g}"


def _cached_compare(ctx, fa: str, fb: str, labels, reference, count, metric: str, seed: int) -> U.Comparison:
    def compute() -> dict:
        a, b = load_features(ctx, fa), load_features(ctx, fb)
        ref_feats, ref_stats = ctx._reference(reference, count)
        c = U.compare(a, b, ref_stats if metric == "fid" else ref_feats, labels=labels, metric=metric, seed=seed)
        d = c.delta
        return {"estimate": d.estimate, "lo": d.lo, "hi": d.hi, "std": d.std, "n": d.n, "level": d.level,
                "n_boot": d.n_boot, "paired": c.paired}

    key = {"a": fa, "b": fb, **_reference_key(ctx, reference, count), "metric": metric, "method": METHOD, "seed": seed}
    r = ctx.cached("compare", key, compute)
    d = U.Interval(f"Δ{metric}", r["estimate"], r["lo"], r["hi"], r["std"], r["n"], r["level"], r["n_boot"])
    return U.Comparison(str(labels[0]), str(labels[1]), metric, d, bool(r["paired"]))


# ---- how a table shows all this ---------------------------------------------------------------------


def table_view(columns: Sequence[str], rows: Sequence[dict]) -> tuple[list[str], dict[str, str], list[str]]:
    """(columns, header names, notes) for a table's Markdown.

    ``fid``/``kid`` gain their ``_lo``/``_hi`` columns when the rows carry them (``kid_std`` then leaves the
    view; the CSV keeps it), ``fid_vs_lowest`` follows; a column whose rows share one n is headed
    ``fid (n = 32)``; the ranking sentence and the real-image floor become notes.
    """
    cols: list[str] = []
    has = lambda c: any(r.get(c) is not None for r in rows)  # noqa: E731
    for c in columns:
        if c == "kid_std" and has("kid_lo"):
            continue
        if c in cols:
            continue
        cols.append(c)
        if c in ("fid", "kid") and has(f"{c}_lo") and f"{c}_lo" not in columns:
            cols += [f"{c}_lo", f"{c}_hi"]
            if c == "fid" and has("fid_vs_lowest") and "fid_vs_lowest" not in columns:
                cols.append("fid_vs_lowest")
    headers = {}
    ns = {r.get("n_samples") for r in rows if r.get("fid") is not None or r.get("kid") is not None}
    if len(ns) == 1 and None not in ns and has("fid_lo"):
        n = ns.pop()
        for c in ("fid", "kid"):
            if c in cols:
                headers[c] = f"{c} (n = {n})"
    notes = []
    if has("fid_lo"):
        notes.append("[lo, hi] after FID and KID (CSV: fid_lo, fid_hi, kid_lo, kid_hi): 95 % bootstrap intervals over the scored images (generated or real), "
                     "the reference fixed (the reference's own sampling is not covered); FID's interval is for its mean at this n, "
                     "which is biased upwards: read it against the real-image floor at the same n (docs/statistics.md).")
    lead = [r["fid_ranking"] for r in rows if r.get("fid_vs_lowest") == "lowest" and r.get("fid_ranking")]
    if lead:
        notes.append("Ranking (paired bootstrap of the FID difference over the same image indices, i.e. the same "
                     "per-image seeds): " + lead[0])
    floors = {(r["floor_dataset"], r["floor_n"], r["floor_fid"], r["floor_fid_lo"], r["floor_fid_hi"]) for r in rows
              if r.get("floor_fid") is not None}
    for ds, n, f, lo, hi in sorted(floors, key=str):
        notes.append(f"Real-image floor at n = {n}: FID {f:.4g} [{lo:.4g}, {hi:.4g}] ({n} real images of {ds} "
                     "against the same reference).")
    return cols, headers, notes
