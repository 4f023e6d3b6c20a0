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


def _flops_by_op(model, x, t) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as c, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(x, t)
    return {str(op).split(".")[-1]: n for op, n in c.get_flop_counts()["Global"].items()}


def test_diffusers_reference_is_the_same_network():
    ours, theirs = unet_from_preset("ho-cifar10").eval(), DiffusersUNet().eval()
    assert count_parameters(ours) == count_parameters(theirs.net) == 35_746_307
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([10])
    # Parameter counts do not see where attention sits; FLOPs do. Attention's QKᵀ and AV cost 2·(2·N²·C)
    # for N positions of C channels: five layers at 16×16 (N = 256, C = 256) and the middle one at 4×4.
    attention = 5 * 4 * 256**2 * 256 + 4 * 16**2 * 256
    assert _flops_by_op(ours, x, t)["bmm"] == _flops_by_op(theirs, x, t)["bmm"] == attention
    assert forward_flops(ours, x, t) == forward_flops(theirs, x, t)


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


def test_results_table_gives_ratios_at_equal_and_at_baseline_switches():
    from ddlib.bench import results_table

    def rec(model, train, **kw):
        return {"model": model, "train_img_per_s": train, "sample_img_per_s": 1.0, "fwd_gflops_per_img": 12.44,
                "train_mfu": 0.1, "batch_size": 128, "autocast": "bf16", "device": "GPU X", **kw}

    table = results_table([rec("ddlib", 300.0), rec("diffusers", 200.0),
                           rec("ddlib", 500.0, channels_last=True, compile=True),
                           rec("diffusers", 400.0, channels_last=True, compile=True)])
    rows = [line for line in table.splitlines() if line.startswith("| ddlib")]
    assert rows[0].endswith("| 1.50× | 1.50× |")  # 300 / 200 both ways
    assert rows[1].endswith("| 1.25× | 2.50× |")  # 500 / 400 at equal switches, 500 / 200 against plain diffusers
    assert "bf16 + channels-last + compile" in rows[1]


@pytest.mark.slow
def test_the_prepared_gpu_script_dry_runs_on_cpu(tmp_path):
    """.ci/gpu-check (the GPU run of issue 6) end to end on the CPU at toy sizes, so it cannot rot between GPUs."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "BATCH": "1", "SAMPLE_BATCH": "1", "SAMPLE_STEPS": "1", "ROUNDS": "1",
           "STEPS_PER_ROUND": "1", "OUT": str(tmp_path), "STATE": str(tmp_path / "state"), "PY": sys.executable}
    subprocess.run([str(repo / ".ci" / "gpu-check")], cwd=repo, env=env, check=True, capture_output=True, timeout=1200)
    records = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert [(r["model"], r["channels_last"], r["compile"]) for r in records] == [
        ("ddlib", False, False), ("diffusers", False, False), ("ddlib", True, False), ("diffusers", True, False),
        ("ddlib", True, True), ("diffusers", True, True)]
    assert "train vs diffusers" in (tmp_path / "bench.md").read_text()
    # what the second call (.ci/gpu-report) sizes the report from
    assert (tmp_path / "state" / "bench.jsonl").read_text() == (tmp_path / "bench.jsonl").read_text()
