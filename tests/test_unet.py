"""UNet presets, shapes, conditioning and the attention path."""

import math

import pytest
import torch

from ddlib.errors import DDLibError
from ddlib.unet import PRESETS, AttnBlock, count_parameters, timestep_embedding, unet_from_preset


@pytest.mark.parametrize("name, expected, tol", [("ho-cifar10", 35.7e6, 0.1e6), ("seed-cifar10", 35.2e6, 0.3e6)])
def test_preset_parameter_counts(name, expected, tol):
    n = count_parameters(unet_from_preset(name))
    print(f"{name}: {n:,} parameters ({n / 1e6:.2f}M)")
    assert abs(n - expected) <= tol


def test_ho_cifar10_matches_the_diffusers_ddpm_cifar10_count():
    # google/ddpm-cifar10-32 (diffusers UNet2DModel) has exactly 35,746,307 parameters
    assert count_parameters(unet_from_preset("ho-cifar10")) == 35_746_307


@pytest.mark.parametrize("name", ["tiny", "test", "small"])
def test_small_presets_forward_shape(name):
    net = unet_from_preset(name).eval()
    x = torch.randn(2, 3, 32, 32)
    assert net(x, torch.tensor([0, 999])).shape == x.shape


def test_latent_preset_and_overrides():
    net = unet_from_preset("seed-latent", image_size=16, base_channels=32, norm_groups=8)
    assert net.config.in_channels == 4 and net.config.channel_mult == (1, 2, 2, 4, 4)
    assert net(torch.randn(1, 4, 16, 16), torch.tensor([5])).shape == (1, 4, 16, 16)


def test_timestep_embedding_closed_form():
    emb = timestep_embedding(torch.tensor([0, 10]), 8)
    freqs = [10000 ** (-k / 3) for k in range(4)]
    expected = [math.sin(10 * f) for f in freqs] + [math.cos(10 * f) for f in freqs]
    assert torch.allclose(emb[1], torch.tensor(expected), atol=1e-5)
    assert emb[0].tolist() == [0.0] * 4 + [1.0] * 4


def test_attention_block_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    block = AttnBlock(8, num_heads=2, groups=4)
    x = torch.randn(2, 8, 3, 3)
    q, k, v = block.qkv(block.norm(x)).reshape(2, 3, 2, 4, 9).unbind(1)  # (B, heads, d, HW)
    w = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(4), dim=-1)  # (B, heads, HW, HW)
    h = (w @ v.transpose(-1, -2)).transpose(-1, -2).reshape(2, 8, 3, 3)
    assert torch.allclose(block(x), x + block.proj(h), atol=1e-5)


def test_class_conditioning_and_null_class():
    torch.manual_seed(0)
    net = unet_from_preset("test", num_classes=3).eval()
    # the class embedding starts random, so labels change the output; y=None is the null class 3
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 10])
    assert not torch.allclose(net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([1, 1])))
    assert torch.equal(net(x, t), net(x, t, torch.tensor([3, 3])))
    with pytest.raises(DDLibError, match="unconditional"):
        unet_from_preset("test")(x, t, torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: unet_from_preset("huge"), "unknown UNet preset 'huge'"),
        (lambda: unet_from_preset("test", depth=3), "unknown UNet option"),
        (lambda: unet_from_preset("test", attention_levels=(5,)), "attention_levels [5] out of range"),
        (lambda: unet_from_preset("test", image_size=31), "divisible"),
        (lambda: unet_from_preset("test")(torch.randn(1, 3, 16, 16), torch.tensor([1])), "expects input (B, 3, 32, 32)"),
    ],
)
def test_bad_input_is_one_clear_line(call, words):
    with pytest.raises(DDLibError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_every_preset_builds():
    for name in PRESETS:
        assert count_parameters(unet_from_preset(name)) > 0
