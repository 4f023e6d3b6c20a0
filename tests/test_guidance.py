"""Classifier-free guidance: the guided ε̂ in closed form, one batched pass, sampling through it,
label dropout, the class-consistency classifier and the guidance sweep."""

import math

import pytest
import torch
from torch import nn

from ddlib.metrics.classifier import class_consistency, predict, train_classifier
from ddlib.data import synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.generate import generate
from ddlib.guidance import GuidedModel, drop_labels
from ddlib.schedules import make_schedule
from ddlib.lab.sweep import guidance_sweep
from ddlib.train import TrainConfig, train
from ddlib.unet import unet_from_preset

K = 10  # CIFAR-10-shaped: 10 classes, 3×32×32


class Counting(nn.Module):
    """The wrapped ε-model, counting its forward calls."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.config, self.calls = net, net.config, 0

    def forward(self, x, t, y=None):
        self.calls += 1
        return self.net(x, t, y)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return unet_from_preset("test", image_size=32, num_classes=K).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([999, 500, 20, 0]), torch.tensor([0, 3, 9, 3])


@torch.no_grad()
def test_scale_one_is_the_conditional_model_exactly(net, batch):
    x, t, y = batch
    assert torch.equal(GuidedModel(net, 1.0)(x, t, y), net(x, t, y))


@torch.no_grad()
def test_scale_zero_is_the_unconditional_model(net, batch):
    x, t, y = batch
    null = torch.full_like(y, K)
    out = GuidedModel(net, 0.0)(x, t, y)
    assert torch.equal(out, net(x, t, null)) and torch.equal(out, net(x, t))  # y=None is the null class


@pytest.mark.parametrize("s", [0.5, 3.0, 7.5])
@torch.no_grad()
def test_guided_eps_is_the_cfg_combination_of_two_separate_passes(net, batch, s):
    """ε̂ = ε_θ(x, ∅) + s (ε_θ(x, y) − ε_θ(x, ∅)), against two calls of batch B (the wrapper runs one of 2B)."""
    x, t, y = batch
    eps_c, eps_u = net(x, t, y), net(x, t, torch.full_like(y, K))
    assert (GuidedModel(net, s)(x, t, y) - (eps_u + s * (eps_c - eps_u))).abs().max() < 1e-6 * max(1.0, s)


@pytest.mark.parametrize("s", [0.0, 1.0, 2.0])
@torch.no_grad()
def test_guidance_is_one_model_call_per_step(net, batch, s):
    x, t, y = batch
    counting = Counting(net)
    GuidedModel(counting, s)(x, t, y)
    assert counting.calls == 1


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_ddpm_and_ddim_sample_through_guidance(net, sampler):
    schedule = make_schedule("linear", 10)  # DDPM runs all T steps: keep T small
    counting = Counting(net)
    kw = dict(sampler=sampler, num_steps=5, labels=torch.tensor([1, 2, 3]), seed=3, progress=False)
    images, labels = generate(counting, schedule, 3, guidance=2.5, **kw)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8 and labels.tolist() == [1, 2, 3]
    assert counting.calls == (5 if sampler == "ddim" else 10)  # one batched pass per step
    assert torch.equal(images, generate(net, schedule, 3, guidance=2.5, **kw)[0])  # seeded: reproducible
    assert not torch.equal(images, generate(net, schedule, 3, guidance=1.0, **kw)[0])


def test_cifar10_shaped_class_conditional_sampling_through_generate(net):
    schedule = make_schedule("linear", 1000)
    images, labels = generate(net, schedule, 12, num_steps=4, guidance=3.0, batch_size=5, progress=False)
    assert images.shape == (12, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [i % K for i in range(12)]  # default: cycle through the classes
    one, labels = generate(net, schedule, 2, num_steps=4, label=7, progress=False)
    assert labels.tolist() == [7, 7] and one.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_labels_drops_at_rate_p(p):
    n = 200_000
    y = torch.arange(n) % K
    out = drop_labels(y, p, K, generator=torch.Generator().manual_seed(0))
    dropped = out == K
    assert abs(dropped.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5σ of a binomial rate
    assert torch.equal(out[~dropped], y[~dropped])
    assert torch.equal(drop_labels(y, 0.0, K), y) and bool((drop_labels(y, 1.0, K) == K).all())


def test_bad_labels_and_scales_are_one_line_errors(net, batch):
    x, t, _ = batch
    with pytest.raises(DDLibError, match="guidance scale must be >= 0"):
        GuidedModel(net, -0.5)
    for y in (torch.tensor([0, 1, 2, K]), torch.tensor([-1, 0, 0, 0])):
        with pytest.raises(DDLibError, match="class label out of range"):
            GuidedModel(net, 2.0)(x, t, y)
    with pytest.raises(DDLibError, match="class label out of range"):
        generate(net, make_schedule("linear", 20), 2, label=K, progress=False)
    with pytest.raises(DDLibError, match="class-conditional"):
        GuidedModel(unet_from_preset("test"), 2.0)
    with pytest.raises(DDLibError, match="p_uncond"):
        drop_labels(torch.zeros(3, dtype=torch.long), 1.5, K)
    with pytest.raises(DDLibError, match="scales must be >= 0"):
        guidance_sweep(net, make_schedule("linear", 20), [1.0, -1.0], 4, classifier=None)


# --------------------------------------------------------------------------------------------------
# class consistency


@pytest.fixture(scope="module")
def toy():
    """Synthetic 16×16 shapes of 6 classes (colour and shape differ by class): train and test splits."""
    return synthetic_dataset(600, image_size=16, num_classes=6, seed=0), synthetic_dataset(240, image_size=16, num_classes=6, seed=1)


@pytest.fixture(scope="module")
def classifier(toy):
    return train_classifier(toy[0], steps=40, batch_size=32, width=16, device="cpu")


def test_classifier_learns_the_synthetic_classes(toy, classifier):
    test = toy[1]
    assert class_consistency(classifier, test.images, test.labels) >= 0.9  # its validation accuracy
    with pytest.raises(DDLibError, match="class label out of range"):
        class_consistency(classifier, test.images[:2], torch.tensor([0, 6]))
    with pytest.raises(DDLibError, match="one label per image"):
        class_consistency(classifier, test.images[:2], torch.tensor([0]))
    with pytest.raises(DDLibError, match="uint8 images"):
        predict(classifier, test.images[:2].float())


def test_guidance_sweep_records_and_optional_metrics(net, classifier):
    seen = []
    small = unet_from_preset("test", image_size=16, num_classes=6).eval()
    records = guidance_sweep(small, make_schedule("linear", 1000), [0.0, 2.0], 6, classifier, num_steps=2,
                             metrics=lambda images: seen.append(images) or {"fid": 1.0})
    assert [r["scale"] for r in records] == [0.0, 2.0] and [tuple(x.shape) for x in seen] == [(6, 3, 16, 16)] * 2
    # the consistency is the fraction of the sweep's own images the classifier puts in the class they were drawn
    # for (labels 0..5), computed here from the images the sweep handed to `metrics`
    for r, images in zip(records, seen):
        agree = (predict(classifier, images) == torch.arange(6)).float().mean()
        assert r["n"] == 6 and r["class_consistency"] == pytest.approx(float(agree)) and r["fid"] == 1.0
    assert "fid" not in guidance_sweep(small, make_schedule("linear", 1000), [1.0], 6, classifier, num_steps=2)[0]


@pytest.mark.slow
def test_class_consistency_rises_with_guidance(toy, classifier, tmp_path):
    """A briefly trained class-conditional UNet: guided samples (s = 3) match their label at least as often as s = 1.

    Measured: 0.24 at s = 1, 0.42 at s = 3 (chance: 1/6), with these seeds.
    """
    config = TrainConfig(dataset="synthetic", preset="test", class_conditional=True, p_uncond=0.2, steps=250,
                         batch_size=32, lr=2e-3, warmup_steps=20, ema_decay=0.99, checkpoint_every=10_000, log_every=50)
    model = train(config, tmp_path, data=toy[0], progress=False, device="cpu").ema
    records = guidance_sweep(model, config.make_schedule(), [1.0, 3.0], 96, classifier, num_steps=10)
    c1, c3 = (r["class_consistency"] for r in records)
    assert c3 >= c1 and c3 > 0.3, records


def test_guidance_sweep_cycles_through_the_given_classes():
    """A model of 6 classes trained on only some of them is sampled with those labels alone."""
    from ddlib.metrics.classifier import SmallCNN

    always_two = SmallCNN(6, 3, 8)
    for p in always_two.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        always_two.head.bias[2] = 1.0  # predicts class 2 for every image
    small = unet_from_preset("test", image_size=16, num_classes=6).eval()
    run = lambda **kw: guidance_sweep(small, make_schedule("linear", 1000), [1.0], 12, always_two, num_steps=1, **kw)
    assert run()[0]["class_consistency"] == pytest.approx(2 / 12)  # labels 0..5 twice: two of them are 2
    assert run(classes=[2, 3])[0]["class_consistency"] == pytest.approx(0.5)  # labels 2, 3, 2, 3, …
    with pytest.raises(DDLibError, match="classes must be"):
        run(classes=[6])
