"""Cached reference statistics of data set splits, and resolving FID inputs of every kind."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ddlib.data import images_sha1, load_image_folder
from ddlib.device import hardware_string
from ddlib.errors import DDLibError, open_npz, remove_stale_tmp
from ddlib.files import atomic_open
from ddlib.metrics.inception import PREPROCESSING_ID, fid_cache_dir, load_extractor
from ddlib.metrics import images as _images
from ddlib.metrics.images import as_uint8_images, default_device, load_images_npz
from ddlib.metrics.stats import PREP_TAG, FIDStatistics, fid, kid


def _slug(spec: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")
    return s if len(s) <= 48 else f"{s[:32]}-{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


def _normalize_spec(spec: str) -> str:
    return spec if ":" in spec else f"{spec}:train"


def reference_paths(spec: str, count: int | None = None, cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(stats, features) cache files for a reference: ``<fid cache>/ref/<slug>-<all|nCOUNT-seed0>.<prep8>.*.npz``."""
    root = Path(cache_dir) / "fid" if cache_dir else fid_cache_dir()
    stem = f"{_slug(_normalize_spec(spec))}-{'all' if count is None else f'n{count}-seed0'}.{PREP_TAG}"
    return root / "ref" / f"{stem}.stats.npz", root / "ref" / f"{stem}.features.npz"


def subset_indices(total: int, count: int, seed: int = 0) -> np.ndarray:
    """The deterministic subset used for ``count`` < split size: sorted first ``count`` of a seeded permutation."""
    return np.sort(np.random.default_rng(seed).permutation(total)[:count])


def _provenance(**kw) -> dict:
    return {"preprocessing": PREPROCESSING_ID, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch": torch.__version__, "host_cpus": os.cpu_count(), "platform": platform.platform(), **kw}


_IMAGE_SHA1: dict[tuple, tuple[str, int, str]] = {}


def _reference_images(spec: str, count: int | None, data_dir, cache_dir, progress: bool):
    """(uint8 images, split size, source description) of a reference; pixels cached by ddlib.data."""
    from ddlib.data import load_dataset

    ds = load_dataset(spec, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    images, total = ds.images, len(ds.images)
    if count is not None:
        if count > total:
            raise DDLibError(f"{spec} has {total} images, fewer than the {count} asked for; ask for at most {total}")
        images = images[torch.from_numpy(subset_indices(total, count))]
    images = as_uint8_images(images, spec)
    _IMAGE_SHA1[(spec, count, str(data_dir), str(cache_dir))] = (images_sha1(images), total, str(getattr(ds, "source", "")))
    return images, total, str(getattr(ds, "source", ""))


def _current_sha1(spec: str, count: int | None, data_dir, cache_dir, progress: bool) -> str | None:
    """sha1 of the reference images as the data loads now; None when the data is not available here."""
    key = (spec, count, str(data_dir), str(cache_dir))
    if key not in _IMAGE_SHA1:
        try:
            _reference_images(spec, count, data_dir, cache_dir, progress)
        except DDLibError:
            return None
    return _IMAGE_SHA1[key][0]


_TOTALS: dict[tuple, int] = {}


def _resolve_count(spec: str, count: int | None, data_dir, cache_dir, progress: bool) -> int | None:
    """``None`` (the whole split) when ``count`` is None or covers the split; else ``count``."""
    if count is None:
        return None
    key = (spec, str(data_dir), str(cache_dir))
    if key not in _TOTALS:
        from ddlib.data import load_dataset

        try:
            _TOTALS[key] = len(load_dataset(spec, data_dir=data_dir, cache_dir=cache_dir, progress=progress).images)
        except DDLibError:
            return count  # data not here: use whatever cache file exists under this count
    return None if count >= _TOTALS[key] else count


def reference_features(spec: str, *, count: int | None = None, data_dir=None, cache_dir=None, device=None,
                       batch_size: int | None = None, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Features (N, 2048) and provenance of a data set split, cached (see the module docstring).

    A cached file is used when its images' sha1 matches the data as it loads now (or when the data is
    not available here); otherwise (e.g. original instead of JPEG CIFAR-10) it is recomputed.
    """
    spec = _normalize_spec(spec)
    count = _resolve_count(spec, count, data_dir, cache_dir, progress)
    _, fpath = reference_paths(spec, count, cache_dir)
    cached = _read_cached(fpath, lambda z: (z["features"], json.loads(str(z["provenance"]))))
    if cached is not None:
        feats, prov = cached
        sha = _current_sha1(spec, count, data_dir, cache_dir, progress)
        if prov.get("preprocessing") == PREPROCESSING_ID and sha in (None, prov.get("images_sha1")):
            return feats, prov
    images, total, source = _reference_images(spec, count, data_dir, cache_dir, progress)
    device = torch.device(device or default_device())
    t0 = time.perf_counter()
    feats = _images.compute_features(images, device=device, batch_size=batch_size, progress=progress,
                                     desc=f"FID features {spec}")
    prov = _provenance(dataset=spec, split=spec.split(":", 1)[1], count=len(images), split_size=total,
                       subset="all" if count is None else "random: numpy default_rng(0).permutation, first count, sorted",
                       images_sha1=images_sha1(images), image_shape=list(images.shape[1:]), source=source,
                       weights=load_extractor(device).weights, seconds=round(time.perf_counter() - t0, 1),
                       hardware=hardware_string(device))
    _save_features(fpath, feats, prov)
    return feats, prov


def _read_cached(path: Path, read):
    """``read(npz)`` of a cache file, or None when it is missing or damaged (a damaged one is deleted and rebuilt)."""
    if not path.is_file():
        return None
    remove_stale_tmp(path.parent, f".{path.name}.pid*.tmp")  # left by runs killed while writing this file
    try:
        with open_npz(path, "it will be rebuilt") as z:
            return read(z)
    except (DDLibError, KeyError, ValueError) as err:
        warnings.warn(f"rebuilding the damaged cache file {path}: {err}", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def _save_features(path: Path, feats: np.ndarray, prov: dict) -> None:
    with atomic_open(path) as f:
        np.savez(f, features=np.asarray(feats, dtype=np.float32), provenance=np.array(json.dumps(prov, sort_keys=True)))


def reference_statistics(spec: str, *, count: int | None = None, data_dir=None, cache_dir=None, device=None,
                         batch_size: int | None = None, progress: bool = True) -> FIDStatistics:
    """FID statistics of a data set split (``"cifar10:test"``), computed once and cached with provenance.

    ``count=None`` (or a count covering the split) uses the whole split; otherwise a seeded random subset
    of ``count`` images. Checked
    against the data as in :func:`reference_features`.
    """
    spec = _normalize_spec(spec)
    count = _resolve_count(spec, count, data_dir, cache_dir, progress)
    spath, _ = reference_paths(spec, count, cache_dir)
    st = _load_stats_or_none(spath) if spath.is_file() else None
    if st is not None:
        if _current_sha1(spec, count, data_dir, cache_dir, progress) in (None, st.provenance.get("images_sha1")):
            return st
    feats, prov = reference_features(spec, count=count, data_dir=data_dir, cache_dir=cache_dir, device=device,
                                     batch_size=batch_size, progress=progress)
    stats = FIDStatistics.from_features(feats, prov)
    stats.save(spath)
    return stats


def _load_stats_or_none(path: Path) -> FIDStatistics | None:
    """Cached statistics, or None (the file deleted, to be rebuilt) when they cannot be used."""
    try:
        return FIDStatistics.load(path)
    except DDLibError as err:
        warnings.warn(f"rebuilding the cache file {path}: {err}", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


@dataclass(frozen=True)
class Source:
    """What :func:`image_source` resolved: statistics, plus the features when they are known (for KID)."""

    description: str
    stats: FIDStatistics
    features: np.ndarray | None = None

    @classmethod
    def from_features(cls, features: np.ndarray, description: str, provenance: dict | None = None) -> "Source":
        """A set known by its Inception features (N, 2048): its statistics, with the features kept for KID."""
        return cls(description, FIDStatistics.from_features(features, provenance), features)


def _looks_like_spec(s: str) -> bool:
    from ddlib.data import KNOWN_SPLITS

    return s.split(":", 1)[0] in KNOWN_SPLITS or (":" in s and not Path(s).exists())


def _prepare(src, *, limit, data_dir, progress, name):
    """First pass: read and validate one input without running the network."""
    if isinstance(src, FIDStatistics):
        return Source(f"{name}: statistics of {src.n} images", src)
    if isinstance(src, (str, os.PathLike)):
        s, path = str(src), Path(src)
        if path.is_dir():
            images = load_image_folder(path)
            desc = f"{name}: folder {path} ({len(images)} images, {images.shape[3]}x{images.shape[2]})"
        elif path.is_file() and path.suffix == ".npz":
            with open_npz(path, "write it again (`python -m ddlib sample` or `python -m ddlib stats`)") as z:
                is_stats = {"mu", "sigma"} <= set(z.files)
            if is_stats:
                st = FIDStatistics.load(path)
                origin = st.provenance.get("dataset") or st.provenance.get("source", "unknown source")
                return Source(f"{name}: statistics {path} ({st.n} images, {origin})", st)
            images = load_images_npz(path)
            desc = f"{name}: {path} ({len(images)} images)"
        elif _looks_like_spec(s):
            spec = _normalize_spec(s)
            limit = _resolve_count(spec, limit, data_dir, None, progress)
            if _current_sha1(spec, limit, data_dir, None, progress) is None and not reference_paths(spec, limit)[1].is_file():
                _reference_images(spec, limit, data_dir, None, progress)  # raises the data set's own clear error
            return spec
        else:
            raise DDLibError(f"{name} {s!r} is not a folder, an .npz file, or a data set spec like cifar10:test; check the path")
    else:
        images = as_uint8_images(src, name)
        desc = f"{name}: {len(images)} images in memory"
    if limit is not None and limit < len(images):
        images = images[torch.from_numpy(subset_indices(len(images), limit))]
        desc += f", random subset of {limit}"
    if len(images) < 2:
        raise DDLibError(f"{name} has {len(images)} image(s); FID needs at least 2 (thousands for a meaningful value)")
    return images, desc


def image_sources(srcs, names=None, *, limit: int | None = None, device=None, batch_size: int | None = None,
                  progress: bool = True, data_dir=None) -> list[Source]:
    """Resolve FID inputs, each a :class:`FIDStatistics`, a uint8 image batch, a folder of images, an ``.npz``
    of images or of statistics, or a data set spec such as ``cifar10:train`` (statistics cached; ``limit``
    takes a seeded random subset). All inputs are read and validated before the network runs."""
    names = names or [f"input {i + 1}" for i in range(len(srcs))]
    prepared = [_prepare(s, limit=limit, data_dir=data_dir, progress=progress, name=n) for s, n in zip(srcs, names)]
    out = []
    for p, name in zip(prepared, names):
        if isinstance(p, Source):
            out.append(p)
        elif isinstance(p, str):
            feats, prov = reference_features(p, count=limit, data_dir=data_dir, device=device, batch_size=batch_size,
                                             progress=progress)
            st = reference_statistics(p, count=limit, data_dir=data_dir, device=device, progress=progress)
            subset = "whole split" if prov.get("subset") == "all" else "seeded random subset"
            out.append(Source(f"{name}: {prov['dataset']} ({prov['count']} images, {subset}; {prov.get('source', '')})",
                              st, feats))
        else:
            images, desc = p
            feats = _images.compute_features(images, device=device, batch_size=batch_size, progress=progress,
                                             desc=f"FID features {name}")
            prov = _provenance(source=desc, count=len(images), images_sha1=images_sha1(images), image_shape=list(images.shape[1:]))
            out.append(Source(desc, FIDStatistics.from_features(feats, prov), feats))
    return out


def image_source(src, *, name: str = "input", **kw) -> Source:
    """One input, as :func:`image_sources`."""
    return image_sources([src], [name], **kw)[0]


def fid_kid(a: Source, b: Source, *, with_kid: bool = True, kid_subset_size: int = 1000) -> dict:
    """FID of ``a`` against the reference ``b``, and KID where both carry features: the one scoring path.

    Returns ``{"fid", "n", "reference_n"}`` plus ``"kid_mean"``/``"kid_std"`` (over 100 subsets of
    ``min(kid_subset_size, n, reference_n)``) when ``with_kid`` and both sides have features. The features
    of either side, when known, let :func:`~ddlib.metrics.stats.fid` take the exact small-n route.
    """
    out = {"fid": fid(a.stats, b.stats, features_a=a.features, features_b=b.features),
           "n": int(a.stats.n), "reference_n": int(b.stats.n)}
    if with_kid and a.features is not None and b.features is not None:
        out["kid_mean"], out["kid_std"] = kid(a.features, b.features, subset_size=kid_subset_size)
    return out


def compute_fid(a, b, **kw) -> float:
    """FID between two inputs of any kind :func:`image_source` takes (keyword arguments go to it)."""
    return fid_kid(*image_sources([a, b], ["A", "B"], **kw), with_kid=False)["fid"]
