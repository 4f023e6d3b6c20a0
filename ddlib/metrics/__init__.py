"""FID, KID and Inception Score with the standard network; cached reference statistics.

Numerics
    Features are the 2048-d pool features of the TF Inception-v3 "2015-12-05" network
    (:mod:`ddlib.metrics.inception`: torch-fidelity's TF1-style bilinear resize to 299, ``(x - 128) / 128``),
    extracted in batches on the given device. Statistics are float64 means and unbiased covariances
    (``ddof=1``). FID uses torchmetrics' formula, ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 sum sqrt(eig(S1 S2))``,
    in float64, through a symmetric eigendecomposition (:func:`frechet_distance`; tested equal to torchmetrics'
    ``_compute_fid`` and to scipy's ``sqrtm`` route). KID is torchmetrics' polynomial-kernel
    MMD (degree 3, gamma = 1/d, coef 1) over 100 random subsets of up to 1000 features, with a seeded
    generator. The Inception Score is the standard one (Salimans et al. 2016; torch-fidelity's code):
    softmax of the network's 1008-way ``logits_unbiased``, 10 splits after a seeded shuffle,
    ``exp(E_x KL(p(y|x) || p(y)))`` per split, mean and std over splits. Offline the network's head is
    not available (see :mod:`ddlib.metrics.inception`): :func:`inception_score` then raises
    :class:`InceptionScoreUnavailable`, and :func:`inception_score_cell` gives ``"n/a: <reason>"``.

Small-sample bias
    FID estimated from n samples is biased upwards by roughly c/n (Chong & Forsyth 2020): the same
    two distributions give a lower FID with more samples. Compare FIDs only at equal sample counts
    and against the same reference; every statistics file records its count.

Reference statistics
    :func:`reference_statistics` computes them once per (data set, split, count, preprocessing) and
    caches them under ``<cache>/fid/ref/`` (``<cache>``: ``$DDLIB_CACHE_DIR``, else
    ``ddlib.data.default_cache_dir()``) as ``<name>-<split>-<all|nCOUNT-seed0>.<prep8>.stats.npz``
    (mu, sigma, provenance) beside ``….features.npz`` (the features, so KID and re-splits are free).
    ``prep8`` is the first 8 hex digits of the sha1 of :data:`PREPROCESSING_ID`. A count below the
    split's size takes a seeded random subset (numpy ``default_rng(0).permutation``, first ``count``,
    sorted) — never the first ``count`` images, which are sorted by class.
"""

from ddlib.metrics.inception import PREPROCESSING_ID
from ddlib.metrics import evaluator, images, reference, stats  # noqa: F401  (submodules, for monkeypatching)
from ddlib.metrics.evaluator import FIDEvaluator
from ddlib.metrics.images import (
    IMAGE_EXTENSIONS, IS_UNAVAILABLE_REASON, as_uint8_images, compute_features, default_device, inception_score,
    inception_score_cell, inception_score_status, load_image_folder, load_images_npz,
)
from ddlib.metrics.reference import (
    Source, compute_fid, fid_kid, image_source, image_sources, reference_features, reference_paths, reference_statistics,
    subset_indices,
)
from ddlib.metrics.stats import (
    PREP_TAG, FIDStatistics, InceptionScoreUnavailable, fid, fid_from_features, frechet_distance,
    inception_score_from_logits, kid,
)

__all__ = [
    "FIDEvaluator", "FIDStatistics", "IMAGE_EXTENSIONS", "IS_UNAVAILABLE_REASON", "InceptionScoreUnavailable",
    "PREPROCESSING_ID", "PREP_TAG", "Source", "as_uint8_images", "compute_features", "compute_fid",
    "default_device", "fid", "fid_from_features", "fid_kid", "frechet_distance", "image_source", "image_sources",
    "inception_score", "inception_score_cell", "inception_score_from_logits", "inception_score_status", "kid",
    "load_image_folder", "load_images_npz", "reference_features", "reference_paths", "reference_statistics",
    "subset_indices",
]
