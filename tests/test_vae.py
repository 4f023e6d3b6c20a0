"""The KL autoencoder, its scale factor, checkpoints, the latent data path and latent diffusion end to end."""

import dataclasses
import math

import pytest
import torch

from ddlib.checkpoint import load_checkpoint
from ddlib.data import load_dataset, synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.generate import generate
from ddlib.lab.sweep import compare_latent_pixel_sampling
from ddlib.train import TrainConfig, load_trained, read_log
from ddlib.unet import unet_from_preset
from ddlib.latent import (
    LatentSet, bicubic_reconstruction, encode_dataset, image_quality, latent_scale_factor, load_latent_diffusion,
    reconstruct, reconstruction_metrics, train_latent_diffusion,
)
from ddlib.train_vae import VAETrainConfig, train_vae, vae_loss
from ddlib.vae import VAE, load_vae, preset_config, vae_fingerprint


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VAE(preset_config("test")).eval()


@pytest.fixture(scope="module")
def images():
    return synthetic_dataset(16, image_size=64, num_classes=4).images


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A VAE trained for a few steps on 32×32 synthetic images (latents 4×8×8)."""
    out = tmp_path_factory.mktemp("vae")
    data = synthetic_dataset(32, image_size=32, num_classes=4)
    config = VAETrainConfig(preset="test", steps=4, batch_size=8, warmup_steps=1, log_every=2, checkpoint_every=100,
                            scale_images=16)
    return train_vae(config, out, data=data, progress=False, device="cpu"), data


@torch.no_grad()
def test_shapes_factor_4_and_8(vae, images):
    z = vae.encode(images[:2])
    assert z.shape == (2, 4, 16, 16) and vae.config.latent_shape == (4, 16, 16)
    assert vae.decode(z).shape == (2, 3, 64, 64)
    f8 = VAE(preset_config("test", factor=8, channel_mult=(1, 1, 2, 2), latent_channels=3))
    assert f8.encode(images[:2]).shape == (2, 3, 8, 8) and f8.decode(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 64, 64)
    mean, logvar = vae.moments(images[:2])
    assert mean.shape == logvar.shape == (2, 4, 16, 16)
    x_hat, *_ = vae(images[:2].float() / 127.5 - 1)  # the training pass: sample z, decode
    assert x_hat.shape == (2, 3, 64, 64)


@pytest.mark.parametrize("kwargs, words", [
    (dict(factor=3), "power of 2"),
    (dict(factor=8), "needs 4 channel_mult entries"),
    (dict(image_size=66), "divisible by the factor"),
    (dict(latent_channels=0), ">= 1"),
    (dict(norm_groups=5), "multiple of norm_groups"),
])
def test_config_validation(kwargs, words):
    with pytest.raises(DDLibError, match=words):
        preset_config("test", **kwargs)


def test_presets_and_train_config_validation():
    assert preset_config("f4c4").latent_shape == (4, 16, 16) and preset_config("kl-f4").latent_shape == (3, 16, 16)
    for bad, words in [(dict(preset="nope"), "unknown VAE preset"), (dict(vae={"depth": 3}), "unknown VAE option"),
                       (dict(recon_loss="huber"), "unknown recon_loss"), (dict(kl_weight=-1.0), "kl_weight"),
                       (dict(steps=0), "steps must be >= 1")]:
        with pytest.raises(DDLibError, match=words):
            VAETrainConfig(**bad)


@torch.no_grad()
def test_scale_factor_is_one_over_the_latent_std(images):
    vae = VAE(preset_config("test"))
    s = latent_scale_factor(vae, images, batch_size=5)  # batching does not change it
    mean = vae.moments(images)[0]
    assert s == pytest.approx(1.0 / mean.double().std().item(), rel=1e-5)
    vae.scale_factor = s
    assert vae.encode(images).double().std().item() == pytest.approx(1.0, rel=1e-4)


@torch.no_grad()
def test_decode_undoes_the_scale(images):
    vae = VAE(preset_config("test"))
    z1 = vae.encode(images[:3])
    x1 = vae.decode(z1)
    vae.scale_factor = 0.37
    z = vae.encode(images[:3])
    assert torch.allclose(z, 0.37 * z1, atol=1e-6)
    assert torch.allclose(vae.decode(z), x1, atol=1e-5)  # 𝒟(s·μ / s) = 𝒟(μ)


def test_bad_shapes_are_one_line_errors(vae, images):
    with pytest.raises(DDLibError, match=r"VAE encode expects images \(B, 3, 64, 64\), got \(2, 3, 32, 32\)"):
        vae.encode(images[:2, :, :32, :32])
    with pytest.raises(DDLibError, match="VAE encode expects"):
        vae.encode(images[:2, :1])
    with pytest.raises(DDLibError, match=r"VAE decode expects latents \(B, 4, 16, 16\), got \(2, 3, 16, 16\)"):
        vae.decode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(DDLibError, match="VAE decode expects"):
        vae.decode(torch.zeros(4, 16, 16))


def test_loss_is_reconstruction_plus_weighted_kl(images):
    torch.manual_seed(0)
    vae = VAE(preset_config("test"))
    x = images[:2].float() / 127.5 - 1
    torch.manual_seed(1)
    x_hat, mean, logvar = vae(x)
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / x.numel()
    for recon, rec in [("l1", (x_hat - x).abs().mean()), ("mse", ((x_hat - x) ** 2).mean())]:
        torch.manual_seed(1)
        assert vae_loss(recon, 0.5)(vae, x, None).item() == pytest.approx((rec + 0.5 * kl).item(), rel=1e-5)


def test_image_quality_closed_form():
    a = torch.randint(1, 255, (4, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    q = image_quality(a, a + 1)  # every pixel off by one level: PSNR = 20 log10(255)
    assert q["psnr"] == pytest.approx(20 * math.log10(255), abs=1e-4) and q["n"] == 4
    assert image_quality(a, a)["ssim"] == pytest.approx(1.0)
    assert bicubic_reconstruction(a, 4).shape == a.shape
    with pytest.raises(DDLibError, match="two uint8 batches"):
        image_quality(a, a.float())


def test_train_vae_checkpoint_and_load(vae_run, tmp_path):
    result, data = vae_run
    state = load_checkpoint(result.out_dir / "checkpoint.pt")
    assert state["kind"] == "vae" and state["vae_config"]["image_size"] == 32 and state["step"] == 4
    assert [r["step"] for r in read_log(result.out_dir / "log.jsonl")] == [2, 4]
    vae = load_vae(result.out_dir)
    assert vae.scale_factor == state["scale_factor"] == result.ema.scale_factor != 1.0
    subset = torch.randperm(32, generator=torch.Generator().manual_seed(0))[:16].sort().values
    assert vae.scale_factor == pytest.approx(latent_scale_factor(vae, data.images[subset]), rel=1e-6)
    with torch.no_grad():
        assert torch.equal(vae.encode(data.images[:4]), result.ema.encode(data.images[:4]))
    metrics = reconstruction_metrics(vae, data.images[:8], batch_size=3)
    # PSNR against its definition, computed here: mean over images of 10·log10(255² / MSE_i)
    rec = reconstruct(vae, data.images[:8]).double()
    mse = (data.images[:8].double() - rec).pow(2).mean(dim=(1, 2, 3))
    assert metrics["n"] == 8
    assert metrics["psnr"] == pytest.approx(float((10 * torch.log10(255.0**2 / mse)).mean()), rel=1e-6)
    assert reconstruction_metrics(vae, data.images[:8], batch_size=8)["psnr"] == pytest.approx(metrics["psnr"], rel=1e-4)
    assert image_quality(data.images[:8], data.images[:8])["ssim"] == pytest.approx(1.0)
    with pytest.raises(DDLibError, match="not a diffusion UNet"):
        load_trained(result.out_dir)
    with pytest.raises(DDLibError, match="no checkpoint"):
        load_vae(tmp_path)


def test_encode_dataset_flips_and_cache(vae_run, tmp_path):
    result, data = vae_run
    vae = load_vae(result.out_dir)
    small = data.subset(6)
    latents = encode_dataset(vae, small, batch_size=4, cache_dir=tmp_path)
    assert isinstance(latents, LatentSet) and latents.images.shape == (12, 4, 8, 8) and latents.images.dtype == torch.float32
    assert torch.equal(latents.labels, torch.cat([small.labels, small.labels])) and latents.num_classes == 4
    with torch.no_grad():
        assert torch.allclose(latents.images[6:], vae.encode(small.images.flip(-1)), atol=1e-6)
    assert len(list(tmp_path.glob("latents-*.pt"))) == 1
    calls = []
    hook = vae.encoder.register_forward_hook(lambda *_: calls.append(1))
    assert torch.equal(encode_dataset(vae, small, cache_dir=tmp_path).images, latents.images) and not calls  # from the cache
    hook.remove()
    assert encode_dataset(vae, small, include_flips=False).images.shape == (6, 4, 8, 8)
    other = VAE(vae.config, vae.scale_factor)  # different weights: a different cache entry
    assert vae_fingerprint(other) != vae_fingerprint(vae)
    encode_dataset(other, small, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("latents-*.pt"))) == 2


def test_latent_diffusion_trains_samples_and_decodes(vae_run, tmp_path):
    result, data = vae_run
    config = TrainConfig(dataset="synthetic", preset="test", class_conditional=True, hflip=False, steps=3, batch_size=8,
                         warmup_steps=1, log_every=3, checkpoint_every=100)
    with pytest.raises(DDLibError, match="hflip=False"):
        train_latent_diffusion(dataclasses.replace(config, hflip=True), result.out_dir, tmp_path / "x")
    vae = load_vae(result.out_dir)
    latents = encode_dataset(vae, data)
    train_latent_diffusion(config, result.out_dir, tmp_path / "ldm", latents=latents, progress=False, device="cpu")
    trained, vae2 = load_latent_diffusion(tmp_path / "ldm")
    assert trained.model.config.in_channels == 4 and trained.model.config.image_size == 8
    images, labels = generate(trained.model, trained.schedule, 3, num_steps=3, guidance=2.0, labels=torch.tensor([0, 1, 3]),
                              decode=vae2.decode, progress=False)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 3]
    with pytest.raises(DDLibError, match="latents were encoded by VAE"):
        train_latent_diffusion(config, result.out_dir, tmp_path / "y", latents=dataclasses.replace(latents, vae_hash="0" * 16))


def test_compare_latent_pixel_sampling(vae_run):
    vae = load_vae(vae_run[0].out_dir)
    latent = unet_from_preset("test", image_size=8, in_channels=4).eval()
    pixel = unet_from_preset("test", image_size=32).eval()
    schedule = TrainConfig().make_schedule()
    out = compare_latent_pixel_sampling(latent, vae.decode, pixel, schedule, n=2, num_steps=2, batch_size=2)
    assert out["image_shape"] == (3, 32, 32) and out["latent"]["sample_shape"] == (4, 8, 8)
    assert out["pixel"]["seconds"] > 0 and out["latent"]["peak_mib"] >= 0 and out["speedup"] > 0
    with pytest.raises(DDLibError, match="same output resolution"):
        compare_latent_pixel_sampling(latent, vae.decode, unet_from_preset("test", image_size=16).eval(), schedule, n=1)


@pytest.mark.slow
def test_tiny_vae_beats_bicubic_on_tiny_imagenet_val(tmp_path):
    """Trained on 90% of a val subset, scored on the held-out 10% against bicubic down-and-up at f = 4."""
    from ddlib import data

    if data._find_named("tiny-imagenet-100", "val", None) is None:
        pytest.skip("no local copy of tiny-imagenet-100 (../shared/data or DDLIB_DATA_DIR)")
    val = load_dataset("tiny-imagenet-100:val", progress=False)
    held = torch.arange(len(val)) % 10 == 0
    train_set = dataclasses.replace(val, images=val.images[~held].clone(), labels=val.labels[~held].clone())
    test_images = val.images[held][:200]
    config = VAETrainConfig(**SLOW_VAE)
    vae = train_vae(config, tmp_path, data=train_set, progress=False, device="cpu").ema
    ours, bicubic = reconstruction_metrics(vae, test_images), image_quality(test_images, bicubic_reconstruction(test_images, 4))
    assert ours["psnr"] > bicubic["psnr"], (ours, bicubic)


SLOW_VAE = dict(preset="test", recon_loss="l1", steps=1000, batch_size=8, lr=3e-3, warmup_steps=10, ema_decay=0.99,
                checkpoint_every=10_000, log_every=100, scale_images=64)
