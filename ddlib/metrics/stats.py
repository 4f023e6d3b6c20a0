"""Statistics and the metrics' numerics: FID from (mu, sigma) or features, KID, IS from logits. No network here."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddlib.errors import DDLibError, open_npz
from ddlib.files import atomic_open
from ddlib.metrics.inception import PREPROCESSING_ID

PREP_TAG = hashlib.sha1(PREPROCESSING_ID.encode()).hexdigest()[:8]


class InceptionScoreUnavailable(DDLibError):
    """The standard network's 1008-way head is not available (offline weights); IS cannot be computed."""


@dataclass(frozen=True)
class FIDStatistics:
    """Gaussian statistics of Inception features: ``mu`` (d,), ``sigma`` (d, d), float64; ``n`` images.

    ``provenance``: dataset/source, split, count, subset rule, ``preprocessing`` (must equal
    :data:`PREPROCESSING_ID` to be compared with anything this library computes), weights, created, ….
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_features(cls, features: np.ndarray, provenance: dict | None = None) -> FIDStatistics:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise DDLibError(f"FID needs at least 2 images per set, got {len(f) if f.ndim == 2 else f.shape}; add images")
        prov = {"preprocessing": PREPROCESSING_ID, **(provenance or {})}
        return cls(f.mean(axis=0), np.cov(f, rowvar=False), len(f), prov)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_open(path) as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n),
                     provenance=np.array(json.dumps(self.provenance, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, preprocessing: str | None = PREPROCESSING_ID) -> FIDStatistics:
        """Load and check; ``preprocessing=None`` skips the check (for inspection only)."""
        with open_npz(path, "recompute them with `python -m ddlib stats` (a cached reference: delete the file)") as z:
            if not {"mu", "sigma"} <= set(z.files):
                raise DDLibError(f"{path} holds no FID statistics (arrays mu and sigma); "
                                 "make it with `python -m ddlib stats`")
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
            prov = json.loads(str(z["provenance"])) if "provenance" in z.files else {}
            n = int(z["n"]) if "n" in z.files else int(prov.get("count", 0))
        got = prov.get("preprocessing")
        if preprocessing is not None and got != preprocessing:
            raise DDLibError(f"{path} was computed with preprocessing {got or 'unknown (no provenance)'!r}, not "
                             f"{preprocessing!r}; recompute it with `python -m ddlib stats`")
        if mu.shape != (len(mu),) or sigma.shape != (len(mu), len(mu)):
            raise DDLibError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match; recompute it")
        check_finite_stats(mu, sigma, str(path))
        return cls(mu, sigma, n, prov)


def check_finite_stats(mu, sigma, what: str) -> None:
    """Refuse statistics holding NaN or ±inf: a FID of them would be ``nan``, silently."""
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DDLibError(f"the FID statistics of {what} hold NaN or inf values; recompute them from finite images/features")


_SQRT_CACHE: dict[str, torch.Tensor] = {}


def _sqrt_psd(sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a covariance (eigenvalues clipped at 0); the last 4 are kept in memory."""
    key = hashlib.sha1(sigma.numpy().tobytes()).hexdigest()
    if key not in _SQRT_CACHE:
        w, v = torch.linalg.eigh(sigma)
        _SQRT_CACHE[key] = (v * w.clamp(min=0).sqrt()) @ v.T
        while len(_SQRT_CACHE) > 4:
            _SQRT_CACHE.pop(next(iter(_SQRT_CACHE)))
    return _SQRT_CACHE[key]


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64.

    ``tr sqrt(S1 S2)`` is the sum of the square roots of the eigenvalues of ``S1 S2`` — torchmetrics'
    formula — computed as the same eigenvalues of the symmetric ``S2^½ S1 S2^½`` (``eigvalsh``), which is
    exact, stable for rank-deficient covariances (fewer images than 2048) and, with ``S2^½`` of a
    reference cached, several times faster than a general ``eigvals`` or scipy's ``sqrtm`` on a CPU.
    Pass the reference second.
    """
    check_finite_stats(np.asarray(mu1), np.asarray(sigma1), "the first set")
    check_finite_stats(np.asarray(mu2), np.asarray(sigma2), "the second set")
    t = [torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (mu1, sigma1, mu2, sigma2)]
    if t[0].shape != t[2].shape or t[1].shape != t[3].shape:
        raise DDLibError(f"cannot compare statistics of {tuple(t[0].shape)}- and {tuple(t[2].shape)}-d features")
    m1, s1, m2, s2 = t
    r = _sqrt_psd(s2)
    m = r @ s1 @ r
    ev = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0)
    return float((m1 - m2).square().sum() + s1.trace() + s2.trace() - 2 * ev.sqrt().sum())


def fid(a: FIDStatistics, b: FIDStatistics, *, features_a=None, features_b=None) -> float:
    """FID between two statistics of the same preprocessing.

    When the features behind one side are given and there are fewer of them than dimensions (a few
    hundred samples against 2048-d features), ``tr sqrt(S_a S_b)`` is taken exactly from the small
    ``n × n`` matrix ``C_b S_a C_b^T / (n_b - 1)`` (``C_b``: centred features), whose non-zero eigenvalues are
    those of ``S_a S_b`` — the same value in a fraction of the time.
    """
    pa, pb = a.provenance.get("preprocessing"), b.provenance.get("preprocessing")
    if pa != pb:
        raise DDLibError(f"cannot compare statistics made with different preprocessing ({pa!r} vs {pb!r}); recompute one")
    if a.mu.shape != b.mu.shape:
        raise DDLibError(f"cannot compare statistics of {a.mu.shape[0]}- and {b.mu.shape[0]}-d features")
    check_finite_stats(a.mu, a.sigma, "A")
    check_finite_stats(b.mu, b.sigma, "B")
    options = [(len(f), st_other, f) for f, st_other in ((features_b, a), (features_a, b)) if f is not None]
    options = [o for o in options if o[0] < len(a.mu)]
    if not options:
        return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    n, other, f = min(options, key=lambda o: o[0])
    c = torch.as_tensor(np.asarray(f), dtype=torch.float64)
    c = c - c.mean(dim=0)
    m = c @ torch.as_tensor(other.sigma, dtype=torch.float64) @ c.T / (n - 1)
    trace_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float(np.square(a.mu - b.mu).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt)


def fid_from_features(fa: np.ndarray, fb: np.ndarray) -> float:
    """FID between two sets of features."""
    return fid(FIDStatistics.from_features(fa), FIDStatistics.from_features(fb), features_a=fa, features_b=fb)


def kid(fa: np.ndarray, fb: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets), torchmetrics' ``poly_mmd``; subsets of ``min(subset_size, na, nb)``."""
    from torchmetrics.image.kid import poly_mmd

    a, b = torch.as_tensor(np.asarray(fa), dtype=torch.float64), torch.as_tensor(np.asarray(fb), dtype=torch.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise DDLibError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}; add images")
    g = torch.Generator().manual_seed(seed)
    scores = torch.stack([poly_mmd(a[torch.randperm(len(a), generator=g)[:m]], b[torch.randperm(len(b), generator=g)[:m]],
                                   degree, gamma, coef) for _ in range(subsets)])
    return float(scores.mean()), float(scores.std(unbiased=False))


def inception_score_from_logits(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> tuple[float, float]:
    """Standard IS from (N, K) logits: mean and std over ``splits`` of ``exp(mean KL(p(y|x) || p(y)))``."""
    x = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits).double().cpu()
    if x.dim() != 2 or len(x) < splits:
        raise DDLibError(f"IS needs (N, K) logits with N >= splits={splits}, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InceptionScoreUnavailable("the classifier returned non-finite logits (the offline FID weights have no "
                                        "1008-way head: their logits are NaN)")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(len(x))]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    n, scores = len(x), []
    for i in range(splits):
        sl = slice(i * n // splits, (i + 1) * n // splits)
        q = p[sl].mean(dim=0, keepdim=True)
        scores.append(float((p[sl] * (log_p[sl] - q.log())).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
