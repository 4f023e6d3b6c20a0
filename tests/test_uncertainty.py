"""Bootstrap intervals of FID/KID, paired differences and ranking sentences (ddlib.metrics.uncertainty).

Every expected value is derived here, independently of the module: scipy's ``sqrtm`` for the matrix square
root, ``np.cov`` of explicitly repeated rows for a weighted resample, a closed form of the population MMD²
of the polynomial kernel between two Gaussians, and FID's mean at n by plain simulation.
"""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
import scipy.linalg

from ddlib.errors import DDLibError
from ddlib.metrics import uncertainty as u


def _fid_scipy(g: np.ndarray, mu_r: np.ndarray, sigma_r: np.ndarray) -> float:
    """FID by the textbook formula with scipy's sqrtm (independent of the module's eigenvalue route)."""
    mu, s = g.mean(axis=0), np.cov(g, rowvar=False)
    covmean = scipy.linalg.sqrtm(s @ sigma_r).real
    return float(((mu - mu_r) ** 2).sum() + np.trace(s) + np.trace(sigma_r) - 2 * np.trace(covmean))


def _random_spd(rng, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_trace_sqrt_product_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    for d in (2, 7, 32):
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        want = np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
        assert u.trace_sqrt_product(s1, s2) == pytest.approx(want, rel=1e-9)
        r = u.sqrt_psd(s2)
        assert np.allclose(r @ r, s2, atol=1e-10) and np.allclose(r, r.T)


@pytest.mark.parametrize("n,d", [(60, 16), (20, 48)])  # the d×d route (n > d) and the n×n Gram route (n < d)
def test_weighted_resample_equals_fid_of_repeated_rows(n, d):
    """FID of counts w equals FID (scipy sqrtm) of the features with row i repeated w_i times."""
    rng = np.random.default_rng(2)
    g, ref = rng.normal(size=(n, d)) * 1.3 + 0.2, rng.normal(size=(300, d))
    mu_r, sigma_r = ref.mean(axis=0), np.cov(ref, rowvar=False)
    tol = 1e-8 if n > d else 1e-6  # scipy's sqrtm of a singular product (n < d) is accurate to ~1e-8 only
    assert u.fid_value(g, (mu_r, sigma_r)) == pytest.approx(_fid_scipy(g, mu_r, sigma_r), rel=tol)
    for w in u.bootstrap_counts(n, 3, seed=5):
        want = _fid_scipy(np.repeat(g, w, axis=0), mu_r, sigma_r)
        assert u._FIDReplicates(g, mu_r, sigma_r)(w) == pytest.approx(want, rel=tol)


def test_kid_with_unit_counts_is_the_unbiased_mmd():
    rng = np.random.default_rng(3)
    g, r = rng.normal(size=(40, 8)), rng.normal(size=(50, 8)) + 0.5
    k = lambda x, y: (x @ y.T / 8 + 1) ** 3  # noqa: E731
    kgg, krr, kgr = k(g, g), k(r, r), k(g, r)
    want = ((kgg.sum() - np.trace(kgg)) / (40 * 39) + (krr.sum() - np.trace(krr)) / (50 * 49) - 2 * kgr.mean())
    assert u.kid_value(g, r, max_reference=None) == pytest.approx(want, rel=1e-10)


def test_bootstrap_counts_sum_to_n():
    w = u.bootstrap_counts(17, 50, seed=0)
    assert w.shape == (50, 17) and (w.sum(axis=1) == 17).all() and (w >= 0).all()


# ---- coverage over 100 repetitions of the generated set ------------------------------------------

D, N_GEN, N_REF, REPS = 16, 200, 4000, 100


def _gaussians():
    rng = np.random.default_rng(10)
    mu_g = np.full(D, 0.15)
    a = rng.normal(size=(D, D)) * 0.25
    sigma_g = np.eye(D) * 0.8 + a @ a.T / D  # a different covariance from the reference's identity
    return np.zeros(D), np.eye(D), mu_g, sigma_g


def _expected_dot_powers(mu1, s1, mu2, s2) -> list[float]:
    """E[(xᵀy)^j], j = 0..3, for independent x ~ N(mu1, s1), y ~ N(mu2, s2).

    Given y, xᵀy ~ N(a, v) with a = mu1ᵀy, v = yᵀ s1 y, so E[z | y] = a, E[z² | y] = a² + v,
    E[z³ | y] = a³ + 3 a v. Over y = mu2 + e, e ~ N(0, s2): a ~ N(m, q) with m = mu1ᵀmu2, q = mu1ᵀ s2 mu1;
    E v = mu2ᵀ s1 mu2 + tr(s1 s2); E[a v] = m E v + 2 mu1ᵀ s2 s1 mu2 (odd moments of e vanish).
    """
    m, q = mu1 @ mu2, mu1 @ s2 @ mu1
    ev = mu2 @ s1 @ mu2 + np.trace(s1 @ s2)
    eav = m * ev + 2 * mu1 @ s2 @ s1 @ mu2
    return [1.0, m, m * m + q + ev, m ** 3 + 3 * m * q + 3 * eav]


def _true_mmd2(mu_r, s_r, mu_g, s_g, d=D) -> float:
    def ek(m1, c1, m2, c2):  # E k(x, y) for k = (xᵀy/d + 1)³ = Σ_j C(3, j) (xᵀy/d)^j
        p = _expected_dot_powers(m1, c1, m2, c2)
        return sum(comb(3, j) * p[j] / d ** j for j in range(4))

    return ek(mu_g, s_g, mu_g, s_g) + ek(mu_r, s_r, mu_r, s_r) - 2 * ek(mu_g, s_g, mu_r, s_r)


def test_closed_form_mmd2_matches_monte_carlo():
    """The closed form above against a plain large-sample estimate (loose: Monte Carlo error)."""
    mu_r, s_r, mu_g, s_g = _gaussians()
    rng = np.random.default_rng(11)
    x, x2 = rng.multivariate_normal(mu_g, s_g, 200_000), rng.multivariate_normal(mu_g, s_g, 200_000)
    y, y2 = rng.multivariate_normal(mu_r, s_r, 200_000), rng.multivariate_normal(mu_r, s_r, 200_000)
    k = lambda a, b: ((a * b).sum(axis=1) / D + 1) ** 3  # noqa: E731
    mc = k(x, x2).mean() + k(y, y2).mean() - k(x, y).mean() - k(x2, y2).mean()
    assert mc == pytest.approx(_true_mmd2(mu_r, s_r, mu_g, s_g), rel=0.1)


def test_interval_coverage_over_100_generated_sets():
    """KID's 95 % interval covers the true MMD², FID's covers E[FID_n], each in at least 90 of 100 draws."""
    mu_r, s_r, mu_g, s_g = _gaussians()
    ref = np.random.default_rng(20).multivariate_normal(mu_r, s_r, N_REF)  # fixed reference
    ref_stats = (ref.mean(axis=0), np.cov(ref, rowvar=False))
    true_mmd2 = _true_mmd2(mu_r, s_r, mu_g, s_g)
    sim = np.random.default_rng(21)  # E[FID_n] against this reference, by simulation (FID is biased at n)
    fid_mean = np.mean([_fid_scipy(sim.multivariate_normal(mu_g, s_g, N_GEN), *ref_stats) for _ in range(1000)])
    rng = np.random.default_rng(22)
    fid_hits = kid_hits = 0
    for rep in range(REPS):
        g = rng.multivariate_normal(mu_g, s_g, N_GEN)
        f = u.fid_interval(g, ref_stats, n_boot=200, seed=rep)
        k = u.kid_interval(g, ref, n_boot=200, seed=rep, max_reference=None)
        fid_hits += f.lo <= fid_mean <= f.hi
        kid_hits += k.lo <= true_mmd2 <= k.hi
    assert fid_hits >= 90, (fid_hits, fid_mean)
    assert kid_hits >= 90, (kid_hits, true_mmd2)


# ---- comparisons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_identical_sets_are_not_resolved(metric):
    rng = np.random.default_rng(30)
    ref, g = rng.normal(size=(500, 12)), rng.normal(size=(150, 12)) + 0.3
    c = u.compare(g, g.copy(), ref, labels=("S=10", "S=50"), metric=metric, n_boot=200)
    assert not c.resolved and c.better is None
    assert c.sentence.startswith("S=10 vs S=50: not resolved at n = 150")


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_separated_sets_get_the_right_order(metric):
    rng = np.random.default_rng(31)
    ref = rng.normal(size=(500, 12))
    noise = rng.normal(size=(150, 12))  # the same per-image "seed" for both settings: a paired comparison
    close, far = noise + 0.05, noise * 1.5 + 1.0
    for a, b, labels in ((close, far, ("close", "far")), (far, close, ("far", "close"))):
        c = u.compare(a, b, ref, labels=labels, metric=metric, n_boot=200)
        assert c.resolved and c.better == "close" and c.paired
        assert c.sentence.startswith("close is better than far by ")
        assert "(n = 150, paired bootstrap, 95% interval)" in c.sentence


def test_paired_interval_is_narrower_than_unpaired_on_shared_seeds():
    rng = np.random.default_rng(32)
    ref = rng.normal(size=(500, 12))
    noise = rng.normal(size=(150, 12))
    a, b = noise + 0.2, noise * 1.05 + 0.25
    paired = u.difference(a, b, ref, paired=True, n_boot=200)
    unpaired = u.difference(a, b, ref, paired=False, n_boot=200)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.hi - paired.lo < 0.5 * (unpaired.hi - unpaired.lo)


def test_rank_names_a_best_only_when_resolved():
    rng = np.random.default_rng(33)
    ref = rng.normal(size=(500, 12))
    noise = rng.normal(size=(120, 12))
    twin = rng.normal(size=(120, 12))  # the same distribution, other draws: a tie that the data cannot split
    sets = {"good": noise + 0.05, "twin": twin + 0.05, "bad": noise * 2 + 1}
    lead, comps = u.rank(sets, ref, n_boot=200)
    assert lead in ("good", "twin")
    text = u.leader_sentence(lead, comps)
    assert "not resolved against" in text and "no single best" in text
    lead, comps = u.rank({"good": sets["good"], "bad": sets["bad"]}, ref, n_boot=200)
    assert lead == "good" and "has the lowest FID, resolved against the other setting at n = 120" in u.leader_sentence(lead, comps)


def test_unequal_sizes_cannot_be_paired():
    rng = np.random.default_rng(34)
    ref = rng.normal(size=(200, 6))
    with pytest.raises(DDLibError, match="paired comparison needs equal sample counts"):
        u.difference(rng.normal(size=(30, 6)), rng.normal(size=(40, 6)), ref, paired=True)
    d = u.difference(rng.normal(size=(30, 6)), rng.normal(size=(40, 6)), ref, n_boot=50)  # unpaired by default
    assert d.lo <= d.estimate <= d.hi


def test_batched_replicates_equal_one_by_one():
    rng = np.random.default_rng(35)
    g, ref = rng.normal(size=(50, 10)), rng.normal(size=(200, 10))
    f = u._FIDReplicates(g, ref.mean(axis=0), np.cov(ref, rowvar=False))
    ws = u.bootstrap_counts(50, 70, seed=1)
    assert np.allclose(f.many(ws, chunk=16), [f(w) for w in ws], rtol=1e-10)


# ---- the lab: cached features, ranking columns, how a table shows them ---------------------------


def test_lab_ranks_rows_and_tables_show_intervals_n_and_ranking(tmp_path):
    from ddlib.lab import context, intervals
    from ddlib.metrics import FIDStatistics

    ctx = context.start("unit", "00_test", reports_dir=tmp_path, cache_dir=tmp_path / "cache", device="cpu")
    rng = np.random.default_rng(40)
    ref = rng.normal(size=(400, 8))
    ctx._reference = lambda reference, count: (ref, FIDStatistics.from_features(ref))  # no Inception network here
    noise = rng.normal(size=(100, 8))
    sets = {"good": noise + 0.05, "twin": rng.normal(size=(100, 8)) + 0.05, "bad": noise * 2 + 1}
    (ctx.cache_root / "features").mkdir(parents=True)
    rows = []
    for name, f in sets.items():
        np.savez(ctx.cache_root / "features" / f"{name}.npz", features=f)
        res = intervals.interval_from_features(ctx, name, "toy")
        assert res["fid"] == pytest.approx(_fid_scipy(f, ref.mean(axis=0), np.cov(ref, rowvar=False)), rel=1e-3)
        assert res["fid_lo"] <= res["fid"] <= res["fid_hi"] and res["kid_lo"] <= res["kid"] <= res["kid_hi"]
        rows.append(ctx.row(wall_s=1.0, n_samples=res["n_samples"], reference="toy", setting=name,
                            **intervals.interval_columns(res)))
    intervals.rank_rows(ctx, rows, [r["setting"] for r in rows], "toy", None)
    by = {r["setting"]: r for r in rows}
    lead = min(("good", "twin"), key=lambda k: by[k]["fid"])
    other = "twin" if lead == "good" else "good"
    assert by[lead]["fid_vs_lowest"] == "lowest" and by[lead]["fid_lead_resolved"] is False
    assert by[other]["fid_vs_lowest"].startswith("not resolved") and by["bad"]["fid_vs_lowest"].startswith("worse by +")
    ctx.table("demo", rows, "Demo", columns=["setting", "fid", "kid", "kid_std"])
    md = (ctx.tables_dir / "demo.md").read_text()
    assert "| setting | fid [lo, hi] (n = 100) | fid vs lowest | kid [lo, hi] (n = 100) | n | wall s | prov. |" in md
    r = by[lead]
    assert f"| {lead} | {r['fid']:.4g} [{r['fid_lo']:.4g}, {r['fid_hi']:.4g}] | lowest |" in md  # interval beside its value
    assert "Ranking (paired bootstrap of the FID difference over the same image indices, i.e. the same " \
           f"per-image seeds): Lowest FID at n = 100: {lead}, " \
           f"but not resolved against {other}" in md


def test_linearised_fid_replicates_match_exact_ones_at_large_n():
    """Above EXACT_MAX_N the replicates are FID + Σ (w_i − 1) a_i; at n ≫ d they track the exact ones."""
    rng = np.random.default_rng(36)
    g, ref = rng.normal(size=(3000, 8)) * 1.2 + 0.3, rng.normal(size=(3000, 8))
    mu_r, sigma_r = ref.mean(axis=0), np.cov(ref, rowvar=False)
    exact = u._FIDReplicates(g, mu_r, sigma_r, exact_max_n=10**9)
    linear = u._FIDReplicates(g, mu_r, sigma_r, exact_max_n=0)
    ws = u.bootstrap_counts(3000, 100, seed=2)
    e, l_ = exact.many(ws), linear.many(ws)
    assert np.corrcoef(e, l_)[0, 1] > 0.99
    assert np.std(l_) == pytest.approx(np.std(e), rel=0.05)
    # the influence of one image is the derivative of FID in its weight (finite difference, w_0 = 1 ± h)
    h, w = 1e-4, np.ones(3000)
    fd = (exact(w + h * np.eye(3000)[0]) - exact(w - h * np.eye(3000)[0])) / (2 * h)
    # moving one weight also moves Σ w: the influence is defined with Σ (w − 1) = 0, so compare differences
    fd1 = (exact(w + h * np.eye(3000)[1]) - exact(w - h * np.eye(3000)[1])) / (2 * h)
    assert fd - fd1 == pytest.approx(linear.influence[0] - linear.influence[1], rel=1e-4)
