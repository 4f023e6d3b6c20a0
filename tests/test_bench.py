"""The benchmark's pieces on CPU at small sizes (the same code runs on the GPU)."""

import pytest
import torch

from ddlib.bench import BenchConfig, DiffusersUNet, forward_flops, run_bench
from ddlib.errors import DDLibError
from ddlib.unet import count_parameters, unet_from_preset


def test_forward_flops_of_a_linear_layer_closed_form():
    net = torch.nn.Linear(10, 20)
    net.config = None
    flops = forward_flops(lambda x, t: net(x), torch.randn(4, 10), torch.zeros(4))
    assert flops == 2 * 10 * 20  # per image: one (10 → 20) matmul


def test_diffusers_reference_is_the_same_network():
    ours, theirs = unet_from_preset("ho-cifar10"), DiffusersUNet()
    assert count_parameters(ours) == count_parameters(theirs.net) == 35_746_307
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([10])
    # same architecture: forward FLOPs agree to a few percent (attention is counted slightly differently)
    assert forward_flops(ours.eval(), x, t) == pytest.approx(forward_flops(theirs.eval(), x, t), rel=0.06)


def test_run_bench_small_on_cpu():
    cfg = BenchConfig(preset="ho-cifar10", batch_size=2, device="cpu", warmup=1, rounds=1, steps_per_round=1,
                      sample_steps=2, sample_batch=1)
    results = run_bench(cfg, compare="diffusers", progress=lambda m: None)
    assert [r["model"] for r in results] == ["ddlib", "diffusers"]
    for r in results:
        assert r["train_img_per_s"] > 0 and r["sample_img_per_s"] > 0 and 0 < r["train_mfu"] < 5
    assert results[0]["train_img_per_s_vs_diffusers"] > 0


def test_bench_errors():
    with pytest.raises(DDLibError, match="same network as --preset ho-cifar10"):
        run_bench(BenchConfig(preset="tiny", device="cpu"), compare="diffusers")
    with pytest.raises(DDLibError, match="unknown --compare"):
        run_bench(BenchConfig(preset="test", device="cpu"), compare="k-diffusion")
