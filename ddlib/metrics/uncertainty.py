"""Uncertainty of FID and KID over the generated samples, paired differences, and sentences that rank settings.

What the intervals cover
    Every interval here is a bootstrap over the **generated** images' cached Inception features: the
    generated set is resampled with replacement (``n`` of ``n``), the reference is held fixed. The
    interval therefore says how much the score would move with another draw of ``n`` generated images
    from the same model and sampler (the seeds' luck). It does **not** cover

    - the reference's own sampling (another draw of reference images would move FID/KID a little;
      the reference is one fixed set, identical for every row it scores);
    - FID's small-sample bias: FID estimated from ``n`` images is biased upwards (roughly c/n), and the
      bias differs between models. The FID interval covers the *estimator's mean at this n*, E[FID_n] —
      not the FID of infinitely many samples. Read it against the real-image floor at the same n
      (held-out real images scored the same way), never against 0. KID is unbiased, so its interval
      covers the population MMD² (up to the reference's sampling).

Intervals are "basic" bootstrap intervals centred on the estimate: with replicates θ*_b and their mean
θ̄*, ``[θ̂ − q_{1−α/2}(θ* − θ̄*), θ̂ − q_{α/2}(θ* − θ̄*)]``. The bootstrap's own small-sample shift of FID
(resampling duplicates images) cancels in θ* − θ̄*, so the interval is placed around θ̂, which estimates
E[FID_n] (percentile intervals would sit one bias too high).

FID on a resample
    A resample is a vector of counts ``w`` (multinomial, ``Σ w = n``); its mean and covariance are the
    weighted moments ``μ_w = Σ w_i g_i / n``, ``Σ_w = Σ w_i (g_i − μ_w)(g_i − μ_w)ᵀ / (n − 1)`` (exactly
    ``np.cov`` of the resampled rows). ``tr √(Σ_w Σ_r)`` is the sum of square roots of the eigenvalues of
    the symmetric ``Σ_r^½ Σ_w Σ_r^½``; with ``H = (G − μ_r) Σ_r^½`` precomputed once these are the
    non-zero eigenvalues of the ``n × n`` matrix ``√w_i √w_j (h_i − h̄_w)ᵀ(h_j − h̄_w) / (n − 1)``, built from
    the Gram matrix ``H Hᵀ`` in O(n²) — so a replicate costs one symmetric eigendecomposition of
    ``min(n, d)`` rows, not a 2048-d ``sqrtm``. Above ``EXACT_MAX_N`` generated images (a headline of 5 000 or
    50 000 samples) the replicates are linearised instead (the delta method: FID(w) ≈ FID + Σ (w_i − 1) a_i
    with a_i the influence of image i, from one d × d eigendecomposition), exact to first order in 1/n.

KID on a resample
    KID is the unbiased MMD² with the polynomial kernel ``k(x, y) = (xᵀy / d + 1)³`` (torchmetrics'
    defaults). With counts ``w`` the generated–generated term averages ``k(g_i, g_j)`` over pairs of
    *different original images* (``Σ_{i≠j} w_i w_j K_ij / Σ_{i≠j} w_i w_j``: a duplicated image is not
    paired with itself), the cross term is ``Σ w_i c_i / n`` with ``c_i`` the mean kernel of ``g_i`` against
    the reference, and the reference term is fixed. With ``w = 1`` this is the ordinary unbiased estimate.
    The spread is over generated sets only (the old KID ``± std`` over subsets drew only reference subsets
    once every generated image fitted in one subset).

Paired differences
    Two settings scored on the same per-image seeds (image i of each starts from the same x_T) are
    resampled *jointly*: one count vector for both, so the difference's interval is narrowed by the
    pairing. Sets of different sizes are resampled independently (:func:`difference`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ddlib.errors import DDLibError

LEVEL = 0.95
N_BOOT = 200
KID_MAX_REFERENCE = 2000
KID_MAX_GENERATED = 5000
EXACT_MAX_N = 2048


@dataclass(frozen=True)
class Interval:
    """A score with its bootstrap interval: ``estimate`` in ``[lo, hi]`` at ``level``; ``std`` of the replicates."""

    metric: str
    estimate: float
    lo: float
    hi: float
    std: float
    n: int
    level: float = LEVEL
    n_boot: int = N_BOOT

    def cell(self, digits: int = 4) -> str:
        """``"123.4 [118.2, 129.9]"``: the estimate and its interval, ``digits`` significant digits."""
        return f"{_fmt(self.estimate, digits)} [{_fmt(self.lo, digits)}, {_fmt(self.hi, digits)}]"

    def columns(self, prefix: str | None = None) -> dict:
        """``{fid, fid_lo, fid_hi}`` (or ``prefix`` in place of the metric name) for a table row."""
        p = prefix or self.metric
        return {p: self.estimate, f"{p}_lo": self.lo, f"{p}_hi": self.hi}


def _fmt(v: float, digits: int) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if abs(v) >= 10 ** digits:
        return f"{v:.0f}"
    if abs(v) >= 1e-3:
        return f"{v:.{digits}g}"
    return f"{v:.{max(digits - 1, 1)}e}"


def _basic_interval(metric: str, estimate: float, reps: np.ndarray, n: int, level: float) -> Interval:
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2:
        return Interval(metric, float(estimate), float("nan"), float("nan"), float("nan"), n, level, len(reps))
    dev = reps - reps.mean()
    a = (1 - level) / 2
    lo, hi = estimate - np.quantile(dev, 1 - a), estimate - np.quantile(dev, a)
    return Interval(metric, float(estimate), float(lo), float(hi), float(reps.std(ddof=1)), n, level, len(reps))


def bootstrap_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` int counts: how often each of ``n`` images is drawn in each resample (``Σ = n``)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)


# ---- matrix square roots --------------------------------------------------------------------------

_SQRT_CACHE: dict[str, np.ndarray] = {}


def sqrt_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance (eigenvalues clipped at 0); the last 4 are kept in memory."""
    sigma = np.asarray(sigma, dtype=np.float64)
    key = hashlib.sha1(sigma.tobytes()).hexdigest()
    if key not in _SQRT_CACHE:
        w, v = np.linalg.eigh((sigma + sigma.T) / 2)
        _SQRT_CACHE[key] = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        while len(_SQRT_CACHE) > 4:
            _SQRT_CACHE.pop(next(iter(_SQRT_CACHE)))
    return _SQRT_CACHE[key]


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr √(Σ1 Σ2)`` for covariances: Σ √λ over the eigenvalues of the symmetric ``Σ2^½ Σ1 Σ2^½``.

    ``Σ1 Σ2`` is similar to ``Σ2^½ Σ1 Σ2^½`` (conjugate by ``Σ2^½``), a PSD matrix, so its eigenvalues are
    real and ≥ 0 and ``tr √(Σ1 Σ2)`` is the sum of their square roots.
    """
    r = sqrt_psd(sigma2)
    m = r @ np.asarray(sigma1, dtype=np.float64) @ r
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


# ---- FID ------------------------------------------------------------------------------------------


def _ref_moments(reference) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a reference given as FIDStatistics, a (mu, sigma) pair or a feature array."""
    if hasattr(reference, "mu") and hasattr(reference, "sigma"):
        return np.asarray(reference.mu, np.float64), np.asarray(reference.sigma, np.float64)
    if isinstance(reference, tuple) and len(reference) == 2:
        return np.asarray(reference[0], np.float64), np.asarray(reference[1], np.float64)
    f = np.asarray(reference, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DDLibError(f"a FID reference must be FIDStatistics, (mu, sigma) or (N, d) features; got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _check_features(features, name: str = "generated features") -> np.ndarray:
    g = np.asarray(features, dtype=np.float64)
    if g.ndim != 2 or len(g) < 3:
        raise DDLibError(f"{name}: need an (n, d) array with n >= 3 for a bootstrap, got shape {g.shape}; add images")
    return g


class _FIDReplicates:
    """FID of weighted resamples of generated features ``g`` against a fixed reference (mu_r, sigma_r)."""

    def __init__(self, g: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray, exact_max_n: int = EXACT_MAX_N):
        if g.shape[1] != len(mu_r):
            raise DDLibError(f"cannot score {g.shape[1]}-d features against a {len(mu_r)}-d reference")
        self.n, self.d = g.shape
        r = sqrt_psd(sigma_r)
        self.e = g - mu_r                       # (n, d) features relative to the reference mean
        self.h = self.e @ r                     # (n, d) whitened by Σ_r^½: eigenvalues of Σ_r^½ Σ_w Σ_r^½
        self.tr_ref = float(np.trace(sigma_r))
        self.gram = self.n < self.d
        if self.gram:
            self.k_e = self.e @ self.e.T        # (n, n)
            self.k_h = self.h @ self.h.T        # (n, n)
        self.sq_e = (self.e * self.e).sum(axis=1)  # (n,) |e_i|²
        self.influence = self._influence() if self.n > exact_max_n else None

    def _influence(self) -> np.ndarray:
        """a_i = ∂FID/∂w_i at w = 1: (2/n) ēᵀ(e_i − ē) + |c_i|²/(n−1) − (Rc_i)ᵀ M^{-½} (Rc_i)/(n−1), M = RΣR.

        From d|ē|² = 2ēᵀdē, dΣ = Σ dw_i c_i c_iᵀ/(n−1) (c_i = g_i − μ; the dμ terms vanish) and
        d tr √M = ½ tr(M^{-½} dM); constants drop out because Σ (w_i − 1) = 0.
        """
        n = self.n
        ebar = self.e.mean(axis=0)
        ec = self.e - ebar                      # c_i (centring at μ or at μ_r differs by a constant)
        hc = self.h - self.h.mean(axis=0)       # R c_i as rows
        m = hc.T @ hc / (n - 1)
        lam, v = np.linalg.eigh((m + m.T) / 2)
        inv_sqrt = np.where(lam > lam.max() * 1e-12, 1 / np.sqrt(np.clip(lam, 1e-300, None)), 0.0)
        q = ((hc @ v) ** 2 * inv_sqrt).sum(axis=1)
        return 2 * ec @ ebar / n + (ec * ec).sum(axis=1) / (n - 1) - q / (n - 1)

    def __call__(self, w: np.ndarray) -> float:
        n = self.n
        w = np.asarray(w, dtype=np.float64)
        ebar = w @ self.e / n                    # μ_w − μ_r
        mean_term = float(ebar @ ebar)
        tr_w = float((w @ self.sq_e - n * mean_term) / (n - 1))
        if self.gram:
            s = np.flatnonzero(w)
            ws = w[s]
            k = self.k_h[np.ix_(s, s)]
            kw = k @ ws / n
            c = k - kw[:, None] - kw[None, :] + ws @ kw / n   # (h_i − h̄)ᵀ(h_j − h̄) on the support
            rw = np.sqrt(ws)
            m = rw[:, None] * c * rw[None, :] / (n - 1)
        else:
            hbar = w @ self.h / n
            hc = self.h - hbar
            m = (hc * w[:, None]).T @ hc / (n - 1)          # Σ_r^½ Σ_w Σ_r^½, (d, d)
        ev = np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)
        return mean_term + tr_w + self.tr_ref - 2 * float(np.sqrt(ev).sum())

    def many(self, ws: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Replicates for a (B, n) count matrix; the d×d route is batched in chunks of ``chunk`` resamples."""
        ws = np.atleast_2d(np.asarray(ws, dtype=np.float64))
        if self.influence is not None:
            return self(np.ones(self.n)) + (ws - 1) @ self.influence
        if self.gram:
            return np.array([self(w) for w in ws])
        n, out = self.n, []
        for w in np.array_split(ws, max(1, math.ceil(len(ws) / chunk))):
            ebar = w @ self.e / n                                            # (b, d)
            mean_term = (ebar * ebar).sum(axis=1)
            tr_w = (w @ self.sq_e - n * mean_term) / (n - 1)
            hbar = w @ self.h / n                                            # (b, d)
            second = np.einsum("bk,ki,kj->bij", w, self.h, self.h, optimize=True)
            m = (second - n * hbar[:, :, None] * hbar[:, None, :]) / (n - 1)  # (b, d, d) Σ_r^½ Σ_w Σ_r^½
            ev = np.clip(np.linalg.eigvalsh((m + m.transpose(0, 2, 1)) / 2), 0, None)
            out.append(mean_term + tr_w + self.tr_ref - 2 * np.sqrt(ev).sum(axis=1))
        return np.concatenate(out)


def fid_value(generated, reference) -> float:
    """FID of the generated features against a reference (FIDStatistics, (mu, sigma) or features)."""
    g = _check_features(generated)
    return _FIDReplicates(g, *_ref_moments(reference))(np.ones(len(g)))


def fid_interval(generated, reference, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """FID with a ``level`` bootstrap interval over the generated set, the reference fixed (module docstring).

    ``generated``: (n, d) Inception features of the generated images; ``reference``: FIDStatistics,
    (mu, sigma) or reference features. The interval covers E[FID_n], the estimator's mean at this n.
    """
    g = _check_features(generated)
    f = _FIDReplicates(g, *_ref_moments(reference))
    reps = f.many(bootstrap_counts(len(g), n_boot, seed))
    return _basic_interval("fid", f(np.ones(len(g))), reps, len(g), level)


# ---- KID ------------------------------------------------------------------------------------------


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    """``(xᵀy / d + coef) ** degree`` for rows of ``x`` (n, d) and ``y`` (m, d): torchmetrics' KID kernel."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def _generated_subset(g: np.ndarray, seed: int, max_generated: int | None = KID_MAX_GENERATED) -> np.ndarray:
    """At most ``max_generated`` generated images for KID (its n × n kernel matrix): a seeded random subset;
    two sets of equal size get the same indices, so a paired comparison stays paired."""
    return _reference_subset(g, max_generated, seed + 1)


def _reference_subset(ref: np.ndarray, max_reference: int | None, seed: int) -> np.ndarray:
    if max_reference is None or len(ref) <= max_reference:
        return ref
    idx = np.sort(np.random.default_rng(seed).permutation(len(ref))[:max_reference])
    return ref[idx]


_RR_CACHE: dict[str, float] = {}


def _reference_term(ref: np.ndarray) -> float:
    """Mean of k(r_a, r_b) over pairs a ≠ b of the reference (cached per reference in this process)."""
    key = hashlib.sha1(np.ascontiguousarray(ref).tobytes()).hexdigest()
    if key not in _RR_CACHE:
        m = len(ref)
        k = poly_kernel(ref, ref)
        _RR_CACHE[key] = float((k.sum() - np.trace(k)) / (m * (m - 1)))
        while len(_RR_CACHE) > 8:
            _RR_CACHE.pop(next(iter(_RR_CACHE)))
    return _RR_CACHE[key]


class _KIDReplicates:
    """Unbiased MMD² of weighted resamples of ``g`` against a fixed reference feature set."""

    def __init__(self, g: np.ndarray, ref: np.ndarray):
        if g.shape[1] != ref.shape[1]:
            raise DDLibError(f"cannot score {g.shape[1]}-d features against {ref.shape[1]}-d reference features")
        if len(ref) < 2:
            raise DDLibError(f"KID needs at least 2 reference images, got {len(ref)}")
        self.n = len(g)
        self.k_gg = poly_kernel(g, g)                 # (n, n)
        self.diag = np.diag(self.k_gg).copy()
        self.c = poly_kernel(g, ref).mean(axis=1)     # (n,) mean kernel against the reference
        self.rr = _reference_term(ref)

    def many(self, w: np.ndarray) -> np.ndarray:
        """Replicates for a (B, n) count matrix."""
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        n = self.n
        pair_sum = np.einsum("bi,ij,bj->b", w, self.k_gg, w) - (w * w) @ self.diag
        pair_count = n * n - (w * w).sum(axis=1)
        return pair_sum / pair_count - 2 * (w @ self.c) / n + self.rr


def kid_value(generated, reference_features, *, max_reference: int | None = KID_MAX_REFERENCE, seed: int = 0) -> float:
    """Unbiased KID (MMD², polynomial kernel) of all generated features against the (subset of the) reference."""
    g = _generated_subset(_check_features(generated), seed)
    ref = _reference_subset(_check_features(reference_features, "reference features"), max_reference, seed)
    return float(_KIDReplicates(g, ref).many(np.ones((1, len(g))))[0])


def kid_interval(generated, reference_features, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                 max_reference: int | None = KID_MAX_REFERENCE) -> Interval:
    """KID with a ``level`` bootstrap interval over the generated set, the reference fixed.

    The estimate uses every generated image (at most ``KID_MAX_GENERATED``, a seeded subset) against
    ``max_reference`` reference images (a seeded random subset; ``None``: all); ``std`` is the spread over
    generated resamples.
    """
    g = _generated_subset(_check_features(generated), seed)
    ref = _reference_subset(_check_features(reference_features, "reference features"), max_reference, seed)
    k = _KIDReplicates(g, ref)
    reps = k.many(bootstrap_counts(len(g), n_boot, seed))
    return _basic_interval("kid", float(k.many(np.ones((1, len(g))))[0]), reps, len(g), level)


# ---- differences and comparisons ------------------------------------------------------------------


def _replicates(metric: str, g: np.ndarray, reference, max_reference: int | None, seed: int):
    """A function from a (B, n) count matrix to B replicates of ``metric``."""
    if metric == "fid":
        return _FIDReplicates(g, *_ref_moments(reference)).many
    if metric == "kid":
        ref = _reference_subset(_check_features(reference, "reference features"), max_reference, seed)
        return _KIDReplicates(g, ref).many
    raise DDLibError(f"unknown metric {metric!r}; use 'fid' or 'kid'")


def difference(a, b, reference, *, metric: str = "fid", paired: bool | None = None, n_boot: int = N_BOOT,
               seed: int = 0, level: float = LEVEL, max_reference: int | None = KID_MAX_REFERENCE) -> Interval:
    """``metric(a) − metric(b)`` with a ``level`` bootstrap interval, the reference fixed.

    ``paired`` (default: when both sets have the same size) resamples image indices jointly — image i of
    ``a`` and image i of ``b`` must come from the same per-image seed; otherwise each set is resampled on
    its own. ``reference``: FIDStatistics/(mu, sigma)/features for FID, features for KID.
    """
    fa, fb = _check_features(a, "features of A"), _check_features(b, "features of B")
    paired = len(fa) == len(fb) if paired is None else paired
    if paired and len(fa) != len(fb):
        raise DDLibError(f"a paired comparison needs equal sample counts, got {len(fa)} and {len(fb)}; "
                         "score both settings on the same seeds and n, or pass paired=False")
    if metric == "kid":
        fa, fb = _generated_subset(fa, seed), _generated_subset(fb, seed if paired else seed + 1)
    ra = _replicates(metric, fa, reference, max_reference, seed)
    rb = _replicates(metric, fb, reference, max_reference, seed)
    wa = bootstrap_counts(len(fa), n_boot, seed)
    wb = wa if paired else bootstrap_counts(len(fb), n_boot, seed + 1)
    est = float(ra(np.ones((1, len(fa))))[0] - rb(np.ones((1, len(fb))))[0])
    reps = ra(wa) - rb(wb)
    return _basic_interval(f"Δ{metric}", est, reps, min(len(fa), len(fb)), level)


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: the difference A − B, whether it is resolved, and the sentence."""

    label_a: str
    label_b: str
    metric: str
    delta: Interval
    paired: bool

    @property
    def resolved(self) -> bool:
        """True when the interval of A − B excludes 0."""
        return bool(self.delta.lo > 0 or self.delta.hi < 0)

    @property
    def better(self) -> str | None:
        """The label of the better setting (lower FID/KID), or None when not resolved."""
        if not self.resolved:
            return None
        return self.label_a if self.delta.hi < 0 else self.label_b

    @property
    def sentence(self) -> str:
        d, name = self.delta, self.metric.upper()
        how = f"{'paired' if self.paired else 'unpaired'} bootstrap, {d.level:.0%} interval"
        digits = 3
        if self.resolved:
            win, lose = (self.label_a, self.label_b) if d.hi < 0 else (self.label_b, self.label_a)
            mag = Interval(d.metric, abs(d.estimate), min(abs(d.lo), abs(d.hi)), max(abs(d.lo), abs(d.hi)), d.std, d.n)
            return f"{win} is better than {lose} by {name} {mag.cell(digits)} (n = {d.n}, {how})."
        return (f"{self.label_a} vs {self.label_b}: not resolved at n = {d.n} ({name} difference "
                f"{d.cell(digits)}, {how}).")

    def __str__(self) -> str:
        return self.sentence


def compare(a, b, reference, *, labels: Sequence[str] = ("A", "B"), metric: str = "fid", paired: bool | None = None,
            n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
            max_reference: int | None = KID_MAX_REFERENCE) -> Comparison:
    """Compare two settings by ``metric`` (lower is better) from the features of their generated images.

    ``str(compare(...))`` is ``"A is better than B by FID Δ [lo, hi] (n = …)"`` when the interval of the
    difference excludes 0, else ``"A vs B: not resolved at n = … (…)"``. See :func:`difference`.
    """
    fa, fb = _check_features(a, "features of A"), _check_features(b, "features of B")
    paired = len(fa) == len(fb) if paired is None else paired
    d = difference(fa, fb, reference, metric=metric, paired=paired, n_boot=n_boot, seed=seed, level=level,
                   max_reference=max_reference)
    return Comparison(str(labels[0]), str(labels[1]), metric, d, paired)


def rank(sets: dict, reference, *, metric: str = "fid", n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
         max_reference: int | None = KID_MAX_REFERENCE) -> tuple[str, list[Comparison]]:
    """The leader by point estimate among ``sets`` (label → features) and its comparison with every other set.

    The leader is "best" only where every comparison is resolved in its favour; see :func:`leader_sentence`.
    """
    if len(sets) < 2:
        raise DDLibError(f"ranking needs at least 2 settings, got {len(sets)}")
    one = (lambda f: fid_value(f, reference)) if metric == "fid" else (
        lambda f: kid_value(f, reference, max_reference=max_reference, seed=seed))
    values = {k: one(v) for k, v in sets.items()}
    lead = min(values, key=values.get)
    comps = [compare(sets[lead], sets[k], reference, labels=(lead, k), metric=metric, n_boot=n_boot, seed=seed,
                     level=level, max_reference=max_reference) for k in sets if k != lead]
    return lead, comps


def leader_sentence(lead: str, comparisons: Sequence[Comparison]) -> str:
    """One sentence about a leader: "best" only when it beats every other setting with a resolved difference."""
    if not comparisons:
        return f"{lead} is the only setting."
    metric, n = comparisons[0].metric.upper(), comparisons[0].delta.n
    tied = [c.label_b for c in comparisons if not c.resolved]
    if not tied:
        others = "the other setting" if len(comparisons) == 1 else f"all {len(comparisons)} others"
        return f"{lead} has the lowest {metric}, resolved against {others} at n = {n}."
    return (f"Lowest {metric} at n = {n}: {lead}, but not resolved against {', '.join(tied)} "
            f"({len(comparisons) - len(tied)} of {len(comparisons)} others resolved): no single best setting.")


__all__ = ["Comparison", "Interval", "bootstrap_counts", "compare", "difference", "fid_interval", "fid_value",
           "kid_interval", "kid_value", "leader_sentence", "poly_kernel", "rank", "sqrt_psd", "trace_sqrt_product"]
