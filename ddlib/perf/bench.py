"""Throughput benchmark: ddlib's UNet against diffusers' ``UNet2DModel``, same loop, same process.

What is measured, after warm-up, for each model:

- training throughput (images/s) of one full step: forward, MSE on ε, backward, AdamW step (with
  ``cuda_graphs``, each step replayed from a CUDA graph, :mod:`ddlib.accel.graphs`, for both models alike);
- DDIM sampling throughput (images/s) at ``sample_steps`` steps (default 50);
- peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU, and CUDA graphs, whose replays allocate
  nothing: not measured, reported as None);
- forward FLOPs per image (``torch.utils.flop_counter``) and the model FLOP utilisation (MFU) they
  imply against a dense matmul rate measured here in the same process (bf16 on CUDA, fp32 on CPU).

The two models are timed in alternating rounds (A, B, A, B, …) and the median round is kept, so a
machine that slows down mid-run (other jobs, thermal) shifts both alike and the ratio stays honest.
diffusers is an optional extra (``pip install -e ".[bench]"``), used for this comparison only.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ddlib.device import hardware_string, resolve_device
from ddlib.errors import DDLibError
from ddlib.accel.graphs import WARMUP_CALLS, GraphedDenoiser, StepGraph
from ddlib.samplers import ddim_sample
from ddlib.schedules import make_schedule
from ddlib.train import autocast_dtype, diffusion_loss
from ddlib.unet import count_parameters, unet_from_preset


@dataclass(frozen=True)
class BenchConfig:
    preset: str = "ho-cifar10"
    batch_size: int = 128
    device: str = "auto"
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None  # torch.compile's mode, e.g. "reduce-overhead" (CUDA graphs on a GPU)
    cuda_graphs: bool = False  # replay each training step and each denoiser call from a CUDA graph (ddlib.accel.graphs)
    warmup: int = 2
    rounds: int = 3  # timed rounds per model (alternating between models)
    steps_per_round: int = 2
    sample_steps: int = 50
    sample_batch: int | None = None  # default: batch_size


class DiffusersUNet(nn.Module):
    """diffusers' ``UNet2DModel`` in the configuration of ``google/ddpm-cifar10-32``, called as ``model(x, t)``."""

    def __init__(self, dropout: float = 0.1):
        super().__init__()
        try:
            from diffusers import UNet2DModel
        except ImportError:
            raise DDLibError('--compare diffusers needs diffusers: pip install -e ".[bench]"') from None
        self.net = UNet2DModel(
            sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),  # attention at 16×16 both ways
            attention_head_dim=None,  # one head over all channels, as in the checkpoint's config (diffusers' default is 8)
            downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32, dropout=dropout,
        )
        self.config = unet_from_preset("ho-cifar10").config  # same network: its shape facts for the bench

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Dense matmul FLOP/s measured here: the denominator of MFU.

    ``n``: the matrix size, by default 8192 on a GPU (smaller products do not reach its peak, which would
    flatter the MFU) and 2048 on a CPU.
    """
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3 if device.type == "cuda" else 1):  # warm-up: kernel choice, clocks
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def forward_flops(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    """FLOPs of one forward pass per image, counted by ``torch.utils.flop_counter``.

    Attention is counted through the math backend of ``scaled_dot_product_attention``: the counter has
    no formula for the fused CPU kernel, which would otherwise count as zero.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(x, t)
    return counter.get_total_flops() / x.shape[0]


def _train_step_fn(model: nn.Module, batch: int, device: torch.device, amp, channels_last: bool,
                   cuda_graphs: bool) -> StepGraph:
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=device.type == "cuda",
                            capturable=cuda_graphs)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x0 = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device).to(memory_format=fmt)
    loss_fn = diffusion_loss(make_schedule("linear"))  # the loss ddlib trains with: t, ε, MSE on ε

    def step() -> None:  # the order of ddlib.train.fit's step
        model.train()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None, cache_enabled=False):
            loss = loss_fn(model, x0, None)
        loss.backward()
        opt.step()

    return StepGraph(step, capture=cuda_graphs)


def _sample_fn(model: nn.Module, batch: int, steps: int, device: torch.device, amp, cuda_graphs: bool) -> Callable[[], None]:
    cfg = model.config
    schedule = make_schedule("linear")
    net = GraphedDenoiser(model, capture=cuda_graphs)  # one wrapper for all rounds: its graphs are recorded once

    def sample() -> None:
        model.eval()  # dropout off, as in real sampling
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None, cache_enabled=False):
            ddim_sample(net, schedule, (batch, cfg.in_channels, cfg.image_size, cfg.image_size), num_steps=steps,
                        progress=False, device=device)

    sample.net = net
    return sample


def _timed(fn: Callable[[], None], n: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def run_bench(cfg: BenchConfig, compare: str | None = None, progress: Callable[[str], None] = print) -> list[dict]:
    """Benchmark ddlib's model (and diffusers' with ``compare="diffusers"``); one result dict per model."""
    device = resolve_device(cfg.device)
    if cfg.cuda_graphs and device.type != "cuda":
        raise DDLibError("--cuda-graphs records CUDA graphs: it needs --device cuda")
    amp = autocast_dtype(cfg.precision, device)
    torch.manual_seed(0)
    models = {"ddlib": unet_from_preset(cfg.preset)}
    if compare == "diffusers":
        if cfg.preset != "ho-cifar10":
            raise DDLibError("--compare diffusers builds google/ddpm-cifar10-32, the same network as --preset ho-cifar10")
        models["diffusers"] = DiffusersUNet()
    elif compare is not None:
        raise DDLibError(f"unknown --compare {compare!r}; the only reference is 'diffusers'")
    sample_batch = cfg.sample_batch or cfg.batch_size
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_rate(device, peak_dtype)
    results, train_fns, sample_fns = {}, {}, {}
    for name, model in models.items():
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        probe = torch.randn(2, model.config.in_channels, model.config.image_size, model.config.image_size, device=device)
        flops = forward_flops(model.eval(), probe, torch.tensor([10, 10], device=device))
        if cfg.compile:
            model = torch.compile(model, mode=cfg.compile_mode)
        train_fns[name] = _train_step_fn(model, cfg.batch_size, device, amp, cfg.channels_last, cfg.cuda_graphs)
        sample_fns[name] = _sample_fn(model, sample_batch, cfg.sample_steps, device, amp, cfg.cuda_graphs)
        results[name] = {"model": name, "params": count_parameters(models[name]), "fwd_gflops_per_img": flops / 1e9}
    for kind, fns, per_round, batch in (("train", train_fns, cfg.steps_per_round, cfg.batch_size),
                                        ("sample", sample_fns, 1, sample_batch)):
        for name, fn in fns.items():  # warm-up (and compilation) outside the timed rounds
            progress(f"warm-up {kind} {name}")
            warmup = max(cfg.warmup, WARMUP_CALLS + 1 if cfg.cuda_graphs else 0)  # a graph is recorded untimed
            _timed(fn, warmup if kind == "train" else 1, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        times: dict[str, list[float]] = {n: [] for n in fns}
        for r in range(cfg.rounds):
            for name, fn in fns.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                times[name].append(_timed(fn, per_round, device))
                # a replay allocates nothing (a graph takes its memory once, when recorded): not measured under graphs
                if device.type == "cuda" and not cfg.cuda_graphs:
                    results[name][f"{kind}_peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                progress(f"{kind} {name} round {r + 1}/{cfg.rounds}: {times[name][-1]:.2f} s")
        for name in fns:
            results[name][f"{kind}_img_per_s"] = per_round * batch / statistics.median(times[name])
    if cfg.cuda_graphs:  # evidence in the record that the timed calls were replays
        for name in results:
            results[name]["train_graph_replayed"] = train_fns[name].captured
            results[name]["sample_graph_replayed"] = sample_fns[name].net.captured
    for name, res in results.items():
        # training = forward + backward ≈ 3× forward FLOPs (the usual estimate)
        res["train_mfu"] = 3 * res["fwd_gflops_per_img"] * 1e9 * res["train_img_per_s"] / peak
        res["matmul_tflops"] = peak / 1e12
        res["autocast"] = "bf16" if amp == torch.bfloat16 else "fp32"
        res.update({"device": hardware_string(device), **{k: v for k, v in asdict(cfg).items() if k != "device"}})
    if "diffusers" in results:
        for key in ("train_img_per_s", "sample_img_per_s"):
            results["ddlib"][f"{key}_vs_diffusers"] = results["ddlib"][key] / results["diffusers"][key]
    return list(results.values())


def switches(record: dict) -> str:
    """The fast-path switches a result ran with, e.g. ``bf16 + channels-last + compile``."""
    parts = [record.get("autocast", "fp32")]
    parts += [name for key, name in (("channels_last", "channels-last"), ("cuda_graphs", "CUDA graphs")) if record.get(key)]
    if record.get("compile"):
        parts.append("compile" + (f" ({record['compile_mode']})" if record.get("compile_mode") else ""))
    return " + ".join(parts)


def results_table(records: list[dict]) -> str:
    """A Markdown table of bench results (JSON lines of several runs), with ddlib's training throughput
    as a ratio to diffusers' at the same switches and to diffusers' first (plainest) configuration."""
    if not records:
        raise DDLibError("no benchmark results to tabulate")
    base = next((r for r in records if r["model"] == "diffusers"), None)
    lines = ["| model | switches | batch | train img/s | DDIM img/s | GFLOP/img | train MFU | peak GiB | "
             "train vs diffusers, same switches | train vs diffusers, first row's switches |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        same = next((d for d in records if d["model"] == "diffusers" and switches(d) == switches(r)
                     and d["batch_size"] == r["batch_size"]), None)
        ratio = lambda ref: f"{r['train_img_per_s'] / ref['train_img_per_s']:.2f}×" if ref and r["model"] == "ddlib" else ""
        mem = r.get("train_peak_mem_gib")
        lines.append(f"| {r['model']} | {switches(r)} | {r['batch_size']} | {r['train_img_per_s']:.1f} | "
                     f"{r['sample_img_per_s']:.2f} | {r['fwd_gflops_per_img']:.2f} | {r['train_mfu']:.1%} | "
                     f"{'—' if mem is None else f'{mem:.1f}'} | {ratio(same)} | {ratio(base)} |")
    return "\n".join(lines) + f"\n\nHardware: {records[0]['device']}.\n"

