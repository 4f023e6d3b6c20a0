"""Wiring: the pieces between the equations, checked as values against independent computations.

Each test uses a stand-in (a recording model, a recording optimizer, a stand-in feature extractor) so
that it checks how ddlib connects its parts, not what the networks learn. They are fast, never skip,
and each one fails for a plausible wiring bug (docs/errors.md lists the bugs they were checked against):
ε target → x₀, EMA warm-up dropped, dropped labels → class 0, clamp range [0, 1], VAE std = exp(logvar).
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ddlib import train as train_mod
from ddlib.data import ImageSet
from ddlib.generate import generate
from ddlib.samplers import ddim_sample, ddim_step, ddpm_sample, ddpm_step
from ddlib.schedules import make_schedule
from ddlib.train import TrainConfig, diffusion_loss, fit, load_trained, train

T = 10
B0, B1 = 0.01, 0.3


def alpha_bar(T: int = T, b0: float = B0, b1: float = B1) -> np.ndarray:
    """ᾱ_t = ∏_{s≤t} (1 − β_s) for a linear β schedule, in numpy (independent of ddlib.schedules)."""
    return np.cumprod(1.0 - np.linspace(b0, b1, T, dtype=np.float64))


class Recorder(nn.Module):
    """A stand-in ε-model: records (x_t, t, y) and returns a learnable constant; has a UNet-like ``config``."""

    def __init__(self, num_classes: int | None = None, out: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(torch.full((), out))
        self.calls: list[dict] = []
        self.config = SimpleNamespace(num_classes=num_classes, in_channels=1, image_size=4, to_dict=lambda: {})

    def forward(self, x, t, y=None):
        self.calls.append({"x": x.detach().clone(), "t": t.detach().clone(), "y": None if y is None else y.clone()})
        return torch.zeros_like(x) + self.w


def ramp_set(n: int = 16, classes: int = 3) -> ImageSet:
    """n 1×4×4 images that are horizontal ramps (0, 85, 170, 255): a flip is visible in every row."""
    row = torch.tensor([0, 85, 170, 255], dtype=torch.uint8)
    images = row.expand(n, 1, 4, 4).contiguous()
    return ImageSet(images, torch.arange(n) % classes, tuple(f"c{k}" for k in range(classes)), "ramps")


# --------------------------------------------------------------------------------------------------
# the training step


def test_training_step_noises_with_alpha_bar_and_regresses_epsilon():
    s = make_schedule("linear", T, beta_start=B0, beta_end=B1)
    ab = alpha_bar()
    model = Recorder(out=0.3)
    x0 = torch.rand(4096, 1, 2, 2) * 2 - 1
    torch.manual_seed(0)
    loss = diffusion_loss(s)(model, x0, torch.zeros(4096, dtype=torch.long)).detach()
    rec = model.calls[0]
    t = rec["t"]
    assert t.dtype == torch.int64 and int(t.min()) == 0 and int(t.max()) == T - 1  # t uniform on {0, …, T−1}
    a = torch.from_numpy(ab)[t].view(-1, 1, 1, 1).float()
    eps = (rec["x"] - a.sqrt() * x0) / (1 - a).sqrt()  # the ε that x_t = √ᾱ x0 + √(1−ᾱ) ε implies
    assert abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1) < 0.05  # standard normal: x_t was built right
    assert float(loss) == pytest.approx(float(((0.3 - eps) ** 2).mean()), rel=1e-4)  # the target is ε, not x0
    assert float(loss) != pytest.approx(float(((0.3 - x0) ** 2).mean()), rel=1e-2)


def test_label_dropout_maps_to_the_null_class():
    s = make_schedule("linear", T, beta_start=B0, beta_end=B1)
    model = Recorder(num_classes=3)
    y = torch.ones(4000, dtype=torch.long)
    torch.manual_seed(1)
    diffusion_loss(s, class_conditional=True, p_uncond=0.5, null_class=3)(model, torch.zeros(4000, 1, 2, 2), y)
    got = model.calls[0]["y"]
    assert set(got.tolist()) == {1, 3}  # kept, or the null class K = 3; never class 0
    assert 0.45 < float((got == 3).float().mean()) < 0.55


def test_train_passes_the_null_class_and_every_label_drops_at_p_one(tmp_path, monkeypatch):
    """Through train(): with p_uncond = 1 the network only ever sees the null class K (= number of classes)."""
    rec = Recorder(num_classes=3)
    monkeypatch.setattr(train_mod, "seeded_model", lambda config, data: rec)
    cfg = TrainConfig(dataset="ramps", preset="test", class_conditional=True, p_uncond=1.0, steps=2, batch_size=4,
                      num_train_timesteps=T, warmup_steps=0, checkpoint_every=2, log_every=1)
    train(cfg, tmp_path / "run", data=ramp_set(), device="cpu", progress=False)
    ys = torch.cat([c["y"] for c in rec.calls])
    assert ys.tolist() == [3] * len(ys)


# --------------------------------------------------------------------------------------------------
# fit: EMA, clipping, flips, learning rate


class RecordingAdamW(torch.optim.AdamW):
    """AdamW that records, at each step, the gradient norm it is given and its learning rate."""

    log: list[tuple[float, float]] = []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        RecordingAdamW.log.append((norm, float(self.param_groups[0]["lr"])))
        return super().step(closure)


def _fit(tmp_path, monkeypatch, *, loss_fn, steps=1, **cfg_kw):
    RecordingAdamW.log = []
    monkeypatch.setattr(train_mod, "make_optimizer",
                        lambda params, cfg, device, capturable=False: RecordingAdamW(params, lr=cfg.lr,
                                                                                     weight_decay=cfg.weight_decay))
    model = nn.Linear(4, 3)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {**dict(steps=steps, batch_size=4, lr=0.1, warmup_steps=0, ema_decay=0.999, checkpoint_every=steps,
                 log_every=1, grad_clip=0.0, weight_decay=0.0), **cfg_kw}
    cfg = TrainConfig(**kw)
    result = fit(model, loss_fn, ramp_set(), cfg, cfg.identity(), tmp_path / "fit", device="cpu", progress=False)
    return theta0, result


def _linear_loss(model, x, y):
    return model(x.flatten(1)[:, :4]).pow(2).sum() * 100  # gradients far larger than any clip below


def test_ema_after_one_step_is_the_warmed_up_average(tmp_path, monkeypatch):
    theta0, result = _fit(tmp_path, monkeypatch, loss_fn=_linear_loss)
    d = min(0.999, (1 + 0) / (10 + 0))  # the warm-up decay at step 0: 0.1, not 0.999
    for k, v in result.ema.state_dict().items():
        expected = d * theta0[k] + (1 - d) * result.model.state_dict()[k]
        torch.testing.assert_close(v, expected, rtol=0, atol=1e-6)
        assert not torch.allclose(v, theta0[k], atol=1e-3)  # the EMA moved with the weights


def test_gradient_norm_after_clipping(tmp_path, monkeypatch):
    _fit(tmp_path / "a", monkeypatch, loss_fn=_linear_loss, grad_clip=0.5)
    assert RecordingAdamW.log[0][0] == pytest.approx(0.5, rel=1e-5)
    _fit(tmp_path / "b", monkeypatch, loss_fn=_linear_loss, grad_clip=0.0)
    assert RecordingAdamW.log[0][0] > 10  # off: the raw norm


def test_learning_rate_follows_the_warmup(tmp_path, monkeypatch):
    _fit(tmp_path, monkeypatch, loss_fn=_linear_loss, steps=6, warmup_steps=4)
    lrs = [lr for _, lr in RecordingAdamW.log]
    assert lrs == pytest.approx([0.1 * min(1, (k + 1) / 4) for k in range(6)])  # 0.025, 0.05, 0.075, 0.1, 0.1, 0.1
    logged = [r["lr"] for r in train_mod.read_log(tmp_path / "fit" / "log.jsonl")]
    assert logged == pytest.approx([0.1 * min(1, (k + 2) / 4) for k in range(6)])  # the rate for the next step


@pytest.mark.parametrize("hflip", [True, False])
def test_flips_happen_only_when_asked(tmp_path, monkeypatch, hflip):
    seen = []

    def loss_fn(model, x, y):
        seen.append(x.clone())
        return model(x.flatten(1)[:, :4]).sum()

    _fit(tmp_path, monkeypatch, loss_fn=loss_fn, steps=4, hflip=hflip)
    rows = torch.cat(seen)[:, 0, 0, :]  # (N, 4): each row ascending (as stored) or descending (flipped)
    ascending = torch.tensor([-1.0, 85 / 127.5 - 1, 170 / 127.5 - 1, 1.0])
    flipped = (rows - ascending.flip(0)).abs().amax(1) < 1e-6
    plain = (rows - ascending).abs().amax(1) < 1e-6
    assert bool((flipped | plain).all())
    assert (0 < int(flipped.sum()) < len(rows)) if hflip else int(flipped.sum()) == 0


# --------------------------------------------------------------------------------------------------
# clipping and seeding in every sampler and through generate


class ConstEps(nn.Module):
    """ε̂ = c everywhere (c = 0: x̂0 = x_t/√ᾱ_t, far outside [-1, 1] at large t)."""

    def __init__(self, c: float = 0.0, num_classes=None):
        super().__init__()
        self.c = c
        self.p = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(num_classes=num_classes, in_channels=1, image_size=4)

    def forward(self, x, t, y=None):
        return torch.full_like(x, self.c)


def test_clip_clamps_x0_to_minus_one_one_in_the_ddpm_and_ddim_steps():
    s = make_schedule("linear", T, beta_start=B0, beta_end=B1)
    x_t = torch.tensor([-3.0, -0.5, 0.5, 3.0]).view(1, 1, 2, 2)
    eps = torch.zeros_like(x_t)
    x0 = x_t / math.sqrt(alpha_bar()[0])  # x̂0 at t = 0 with ε̂ = 0
    expected = x0.clamp(-1, 1)
    # DDPM at t = 0 returns the posterior mean with ᾱ_prev = 1, i.e. x̂0; DDIM to t_prev = -1 likewise
    torch.testing.assert_close(ddpm_step(s, eps, 0, x_t, clip=True), expected)
    torch.testing.assert_close(ddim_step(s, eps, 0, -1, x_t, clip=True), expected)
    torch.testing.assert_close(ddim_step(s, eps, 0, -1, x_t, clip=False), x0)
    assert float(ddim_step(s, eps, 0, -1, x_t, clip=True).min()) == -1.0


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_clip_and_seeds_through_generate(sampler):
    s = make_schedule("linear", T, beta_start=B0, beta_end=B1)
    model = ConstEps(0.0)
    imgs, _ = generate(model, s, 3, sampler=sampler, num_steps=T, eta=0.0, clip=True, seed=5, progress=False)
    # independently: x_T of image i from its own seed 5 + i; with ε̂ = 0 and clipping, every DDIM step keeps
    # x̂0 = clamp(x_T / √ᾱ_{T-1}, -1, 1), and the last step returns it
    x_T = torch.stack([torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(5 + i)) for i in range(3)])
    x0 = (x_T / math.sqrt(alpha_bar()[-1])).clamp(-1, 1)
    if sampler == "ddim":
        expected = ((x0 + 1) * 127.5).round().to(torch.uint8)
        assert (imgs.int() - expected.int()).abs().max() <= 1
    assert int(imgs.min()) == 0  # negative x̂0 reaches -1, not 0 (a [0, 1] clamp would stop at 127)
    again, _ = generate(model, s, 3, sampler=sampler, num_steps=T, clip=True, seed=5, progress=False)
    assert torch.equal(imgs, again)
    other, _ = generate(model, s, 3, sampler=sampler, num_steps=T, clip=True, seed=6, progress=False)
    assert not torch.equal(imgs, other)
    shifted, _ = generate(model, s, 2, sampler=sampler, num_steps=T, clip=True, seed=6, progress=False)
    if sampler == "ddim":  # per-image seeds: image 1 of seed 5 is image 0 of seed 6
        assert torch.equal(imgs[1:], shifted)


@pytest.mark.parametrize("loop", ["ddpm", "ddim"])
def test_sampler_loops_use_the_generator_and_the_clip(loop):
    s = make_schedule("linear", T, beta_start=B0, beta_end=B1)
    model = ConstEps(0.0)

    def run(seed, clip):
        g = torch.Generator().manual_seed(seed)
        kw = dict(generator=g, progress=False, clip=clip)
        if loop == "ddim":
            return ddim_sample(model, s, (2, 1, 4, 4), num_steps=5, eta=1.0, **kw)
        return ddpm_sample(model, s, (2, 1, 4, 4), **kw)

    assert torch.equal(run(0, True), run(0, True)) and not torch.equal(run(0, True), run(1, True))
    clipped, free = run(0, True), run(0, False)
    assert float(free.abs().max()) > 1.5  # without clipping x̂0 runs far out
    assert float(clipped.min()) < -0.5 and float(clipped.max()) < 1.6  # clamped to [-1, 1], not [0, 1]


# --------------------------------------------------------------------------------------------------
# load_trained returns the EMA weights


def test_load_trained_returns_the_ema_weights(tmp_path):
    from ddlib.checkpoint import load_checkpoint
    from ddlib.data import synthetic_dataset

    data = synthetic_dataset(16, image_size=8, num_classes=2)
    cfg = TrainConfig(dataset="synthetic", preset="test", num_train_timesteps=T, steps=2, batch_size=4, warmup_steps=0,
                      checkpoint_every=2, log_every=1, lr=0.01, unet={"base_channels": 8, "attention_levels": ()})
    result = train(cfg, tmp_path / "run", data=data, device="cpu", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    loaded = load_trained(tmp_path / "run").model.state_dict()
    ema = {k: v.cpu() for k, v in result.ema.state_dict().items()}
    raw = {k: v.cpu() for k, v in result.model.state_dict().items()}
    differs = [k for k in ema if not torch.equal(ema[k], raw[k])]
    assert differs  # two steps in, the EMA (decay 0.1, then 2/11) is not the raw weights
    for k in loaded:
        torch.testing.assert_close(loaded[k], ema[k], rtol=0, atol=0)
        torch.testing.assert_close(loaded[k], state["ema"][k], rtol=0, atol=0)
    raw_loaded = load_trained(tmp_path / "run", use_ema=False).model.state_dict()
    assert all(torch.equal(raw_loaded[k], raw[k]) for k in differs)


# --------------------------------------------------------------------------------------------------
# the VAE's reparameterisation


def test_vae_reparameterisation_uses_half_logvar():
    from ddlib.vae import VAE, preset_config

    vae = VAE(preset_config("test"))
    mean = torch.full((20000, 1), 0.5)
    logvar = torch.full((20000, 1), math.log(4.0))  # variance 4: std 2 (exp(logvar) would give 4)
    vae.moments = lambda x: (mean, logvar)
    vae.decoder = nn.Identity()
    z, m, lv = vae(torch.zeros(1, 3, 8, 8))
    assert float((z - 0.5).std()) == pytest.approx(2.0, rel=0.03)
    assert float(z.mean()) == pytest.approx(0.5, abs=0.05)


# --------------------------------------------------------------------------------------------------
# FID caching with a stand-in feature extractor (never skips: no Inception weights needed)


def stand_in_extractor(batch: torch.Tensor) -> torch.Tensor:
    """16 features of a uint8 batch: 2×2 average-pooled channels (12), channel standard deviations (3), the mean."""
    x = batch.float() / 255
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    return torch.cat([pooled, x.flatten(2).std(-1), x.mean((1, 2, 3))[:, None]], 1)


@contextlib.contextmanager
def stand_in_features():
    """Replace the Inception network in ddlib.metrics by :func:`stand_in_extractor`; counts its calls."""
    from ddlib.metrics import images as images_mod
    from ddlib.metrics import reference

    real_compute, real_load = images_mod.compute_features, reference.load_extractor
    calls = []

    def compute(images, **kw):
        calls.append(len(images))
        kw.pop("extractor", None)
        kw.pop("layer", None)
        return real_compute(images, extractor=stand_in_extractor, **{k: v for k, v in kw.items() if k != "device"},
                            device="cpu")

    images_mod.compute_features = compute
    reference.load_extractor = lambda device, *a, **k: SimpleNamespace(weights="stand-in extractor")
    try:
        yield calls
    finally:
        images_mod.compute_features, reference.load_extractor = real_compute, real_load


def _frechet_numpy(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID from features with an eigendecomposition written here: tr √(S1 S2) = Σ √λ(S1 S2)."""
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    lam = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum())


def test_fid_cache_path_with_a_stand_in_extractor(tmp_path):
    from ddlib.data import load_dataset
    from ddlib.metrics import compute_fid, reference

    with stand_in_features() as calls:
        first = reference.reference_statistics("synthetic:test", count=40, cache_dir=tmp_path, progress=False)
        assert calls == [40]
        again = reference.reference_statistics("synthetic:test", count=40, cache_dir=tmp_path, progress=False)
        assert calls == [40]  # read from the cache: the network did not run again
        np.testing.assert_array_equal(first.mu, again.mu)
        spath, fpath = reference.reference_paths("synthetic:test", 40, tmp_path)
        assert spath.is_file() and fpath.is_file() and again.provenance["weights"] == "stand-in extractor"
        # the cached statistics are those of the stand-in features of the same seeded subset
        images = load_dataset("synthetic:test", cache_dir=tmp_path, progress=False).images
        subset = images[torch.from_numpy(reference.subset_indices(len(images), 40))]
        feats = stand_in_extractor(subset).double().numpy()
        np.testing.assert_allclose(first.mu, feats.mean(0), rtol=1e-5)
        np.testing.assert_allclose(first.sigma, np.cov(feats, rowvar=False), rtol=1e-4, atol=1e-7)
        # FID of two image sets against a formula written here
        a, b = subset[:20], subset[20:]
        value = compute_fid(a, b, device="cpu", progress=False)
        fa, fb = stand_in_extractor(a).double().numpy(), stand_in_extractor(b).double().numpy()
        assert value == pytest.approx(_frechet_numpy(fa, fb), rel=1e-4, abs=1e-8)
        assert compute_fid(a, a, device="cpu", progress=False) == pytest.approx(0.0, abs=1e-8)


def test_fid_command_with_a_stand_in_extractor(tmp_path, capsys):
    """The twin of test_fid_cli's weights-only test: folders, .npz images and statistics files through
    `python -m ddlib fid/stats`, against scipy's sqrtm on the stand-in features."""
    import scipy.linalg
    from PIL import Image

    from ddlib.cli import main

    g = torch.Generator().manual_seed(0)
    a = (torch.rand(24, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    b = (a.int() * 3 // 4 + 30).to(torch.uint8)
    for name, images in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(images.permute(0, 2, 3, 1).numpy()):
            Image.fromarray(im).save(tmp_path / name / f"{i:03d}.png")

    def last_float() -> float:
        return float(capsys.readouterr().out.strip().splitlines()[-1])

    fa, fb = stand_in_extractor(a).double().numpy(), stand_in_extractor(b).double().numpy()
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    direct = float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2)
                   - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
    with stand_in_features():
        assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--no-progress", "--device", "cpu"]) == 0
        value = last_float()
        assert value == pytest.approx(direct, abs=1e-6) and value > 0.01  # printed with 6 decimals
        assert main(["fid", str(tmp_path / "a"), str(tmp_path / "a"), "--no-progress", "--device", "cpu"]) == 0
        assert abs(last_float()) < 1e-6
        assert main(["stats", str(tmp_path / "a"), "--out", str(tmp_path / "a.npz"), "--no-progress",
                     "--device", "cpu"]) == 0
        capsys.readouterr()
        np.savez(tmp_path / "b_images.npz", images=b.permute(0, 2, 3, 1).numpy())
        assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b_images.npz"), "--no-progress",
                     "--device", "cpu"]) == 0
        assert last_float() == pytest.approx(value, abs=2e-6)
