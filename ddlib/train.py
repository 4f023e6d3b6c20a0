"""Training: the diffusion objective and one loop shared by every model ddlib trains.

The seed report's recipe is the default: AdamW (lr 1e-4, weight decay 1e-4), batch 128, t uniform
on {0, …, T-1}, and the "simple" loss ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖² (DDPM eq. 14). Around it,
what the reference implementations all have: linear learning-rate warmup, gradient-norm clipping,
an exponential moving average (EMA) of the weights used for sampling and evaluation, bf16 autocast
on GPU, atomic checkpoints every N steps and at the end, exact resume, a JSONL log and a progress bar.

Reproducibility: step k draws everything random (batch flip, t, ε, dropout, label drop) after
seeding with (seed, k), and the data order of epoch e is a permutation seeded with (seed, e). A run
killed after checkpoint k and resumed therefore repeats exactly what the uninterrupted run did: on
CPU the final weights are bit-identical (tested). The caller's global RNG is left as it was.

Files in a run folder: ``config.json`` (the resolved config), ``checkpoint.pt`` (latest state),
``log.jsonl`` (one line per ``log_every`` steps: step, loss, lr, images/s), and ``eval.jsonl`` when
an evaluator (e.g. FID during training) is given.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ddlib import distributed
from ddlib.checkpoint import (CHECKPOINT, check_config, claim_run_folder, load_checkpoint, run_checkpoint, run_lock,
                              save_checkpoint)
from ddlib.config import check_options
from ddlib.data import ImageSet, load_dataset, random_hflip, to_model_range
from ddlib.device import fast_memory_format, resolve_device
from ddlib.errors import DDLibError, check_number
from ddlib.accel.graphs import StepGraph, graphs_enabled
from ddlib.guidance import drop_labels
from ddlib.schedules import NoiseSchedule, make_schedule
from ddlib.unet import UNet, UNetConfig, changed_numerics, preset_config

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class LoopConfig:
    """The fields of :func:`fit`'s loop, shared by every training configuration (:class:`TrainConfig` for the
    UNet, :class:`ddlib.train_vae.VAETrainConfig` for the VAE), with their validation, ``to_dict``,
    ``identity`` and ``from_dict``. A subclass adds what defines its model and data, and may give the loop
    fields other defaults by declaring them again."""

    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0  # 0 disables clipping
    ema_decay: float = 0.9999
    hflip: bool = True
    seed: int = 0
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU
    checkpoint_every: int = 1000
    log_every: int = 50

    # fields that may change between a run and its resumption (they do not change the trajectory)
    RESUMABLE = ("steps", "checkpoint_every", "log_every")

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            check_number(name, getattr(self, name), minimum=1, integer=True)
        check_number("warmup_steps", self.warmup_steps, minimum=0, integer=True)
        check_number("seed", self.seed, integer=True)
        check_number("lr", self.lr, above=0)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number("grad_clip (0 disables clipping)", self.grad_clip, minimum=0)
        if getattr(self, "data_limit", None) is not None:
            check_number("data_limit", self.data_limit, minimum=1, integer=True)
        if self.precision not in PRECISIONS:
            raise DDLibError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not 0 <= self.ema_decay < 1:
            raise DDLibError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict:
        """All fields, the subclass's first and the loop's last (the order of ``config.json``)."""
        d = asdict(self)
        loop = [f.name for f in fields(LoopConfig)]
        return {**{k: v for k, v in d.items() if k not in loop}, **{k: d[k] for k in loop}}

    def identity(self) -> dict:
        """The fields a checkpoint must match to be resumed or loaded under this config."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE}

    @classmethod
    def from_dict(cls, d: dict):
        check_options(cls, d, "training")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """Everything that defines a diffusion training run. Saved as ``config.json`` beside its outputs."""

    dataset: str = "cifar10:train"  # a ddlib.data spec
    data_limit: int | None = None  # use only the first N images (smoke runs)
    preset: str = "small"  # ddlib.unet.PRESETS
    unet: dict = field(default_factory=dict)  # UNetConfig overrides, e.g. {"dropout": 0.0}
    class_conditional: bool = False
    p_uncond: float = 0.1  # classifier-free guidance label dropout (class-conditional only)
    schedule: str = "linear"
    schedule_params: dict = field(default_factory=dict)  # e.g. {"beta_start": 2e-4}
    num_train_timesteps: int = 1000

    def __post_init__(self):
        super().__post_init__()
        check_number("num_train_timesteps", self.num_train_timesteps, minimum=1, integer=True)
        check_number("p_uncond", self.p_uncond, minimum=0, maximum=1)

    def identity(self) -> dict:
        """:meth:`LoopConfig.identity`, plus ``unet_numerics`` when the preset sets arithmetic fields away from
        their defaults (:func:`ddlib.unet.changed_numerics`): a preset whose function changed gets a new identity
        (and run cache key), one whose function did not keeps its old one."""
        ident = super().identity()
        numerics = changed_numerics(self.preset, self.unet)
        return {**ident, "unet_numerics": numerics} if numerics else ident

    def make_schedule(self) -> NoiseSchedule:
        return make_schedule(self.schedule, self.num_train_timesteps, **self.schedule_params)

    def make_model(self, data: ImageSet) -> UNet:
        overrides = {"image_size": data.image_size, "in_channels": data.channels, **self.unet}
        if self.class_conditional:
            overrides["num_classes"] = data.num_classes
        return UNet(preset_config(self.preset, **overrides))


# --------------------------------------------------------------------------------------------------
# pieces of the loop


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA under "auto"/"bf16"; fp32 (no autocast) otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def make_optimizer(params, cfg, device: torch.device, *, capturable: bool = False) -> torch.optim.AdamW:
    """AdamW as ``cfg`` says (fused on CUDA). ``capturable``: for a step recorded as a CUDA graph, with the
    learning rate a tensor on the device that the scheduler rewrites in place (a float would be recorded once)."""
    lr = torch.tensor(cfg.lr, device=device) if capturable else cfg.lr
    return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda",
                             capturable=capturable)


_DEVICE_OPTIONS = ("fused", "foreach", "capturable")  # how an optimizer runs here, not what it has learned


def _floats(v):
    """One-element tensors (a CUDA-graph run's learning rates) as floats; lists element by element."""
    if torch.is_tensor(v) and v.numel() == 1:
        return float(v)
    return [_floats(x) for x in v] if isinstance(v, list) else v


def optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """``opt.state_dict()`` with plain-float hyperparameters, loadable on any device (a CUDA-graph run's lr is a tensor)."""
    sd = opt.state_dict()
    sd["param_groups"] = [{k: _floats(v) for k, v in g.items()} for g in sd["param_groups"]]
    return sd


def scheduler_state(sched: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """``sched.state_dict()`` with plain-float rates (``base_lrs`` copy a tensor lr), loadable on any device."""
    return {k: _floats(v) for k, v in sched.state_dict().items()}


def load_optimizer_state(opt: torch.optim.Optimizer, sd: dict) -> None:
    """Load :func:`optimizer_state`'s ``sd`` into ``opt`` keeping ``opt``'s own way to run (fused, capturable, lr tensor)."""
    groups = []
    for saved, mine in zip(sd["param_groups"], opt.param_groups):
        g = {**saved, **{k: mine[k] for k in _DEVICE_OPTIONS if k in mine}}
        if torch.is_tensor(mine["lr"]):
            g["lr"] = torch.tensor(float(saved["lr"]), device=mine["lr"].device)
        groups.append(g)
    opt.load_state_dict({**sd, "param_groups": groups})


def step_seed(seed: int, step: int) -> int:
    """A distinct 63-bit seed for (run seed, step)."""
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**63 - 1)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear learning-rate warmup from 1/warmup to 1 over ``warmup_steps`` steps, then constant."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with the usual warmup min(decay, (1 + k)/(10 + k)), so short runs still average."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay · θ_ema + (1 − decay) · θ, with one fused ``_foreach`` op over all tensors."""
    ema_p = [p for p in ema.parameters()]
    model_p = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_p, model_p, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def epoch_permutation(n: int, epoch: int, seed: int) -> torch.Tensor:
    """The seeded order of the ``n`` images in ``epoch`` (drawn on the CPU, so equal on every device)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(step_seed(seed, -1 - epoch)))


def batch_position(n: int, batch_size: int, step: int) -> tuple[int, int]:
    """``(epoch, k)``: the batch at ``step`` is batch ``k`` of ``epoch``; the last partial batch is dropped."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise DDLibError(f"batch_size {batch_size} is larger than the data set ({n} images); lower --batch-size")
    return divmod(step, per_epoch)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of the batch at ``step``: epochs are seeded permutations, the last partial batch dropped."""
    epoch, k = batch_position(n, batch_size, step)
    return epoch_permutation(n, epoch, seed)[k * batch_size : (k + 1) * batch_size]


def read_log(path: str | Path) -> list[dict]:
    """The records of a JSONL log (``log.jsonl`` or ``eval.jsonl``); [] if it does not exist.

    A torn last line (a process killed mid-write) is dropped with a warning, so the run can resume;
    a damaged line before it is an error naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    records = []
    for j, (i, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            if j == len(lines) - 1:
                warnings.warn(f"{path}: dropped a torn last line ({i}); it was cut off mid-write", stacklevel=2)
                break
            raise DDLibError(f"{path} line {i} is not a JSON record; fix or delete that line (or the file) "
                             "and run again") from None
        records.append(record)
    return records


def _truncate_log(path: Path, step: int) -> None:
    """Drop records past ``step``: a killed run may have logged steps its checkpoint does not hold."""
    if path.exists():
        kept = [r for r in read_log(path) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


# --------------------------------------------------------------------------------------------------
# the loop


def _holding_run_folder(fit_fn):
    """Run ``fit_fn`` holding its run folder: locked against a second writer, refused when it holds
    files ddlib did not write (unless ``overwrite=True``), tidied of temporary files left by killed writes.
    In a multi-process run only rank 0 writes (:func:`ddlib.distributed.is_main`, as in :func:`fit`), so only it
    takes the lock."""

    @functools.wraps(fit_fn)
    def fit_holding(model, loss_fn, data, cfg, identity, out_dir, *args, overwrite: bool = False, **kwargs):
        if not distributed.is_main():
            return fit_fn(model, loss_fn, data, cfg, identity, out_dir, *args, **kwargs)
        with run_lock(out_dir):
            claim_run_folder(out_dir, overwrite=overwrite)
            return fit_fn(model, loss_fn, data, cfg, identity, out_dir, *args, **kwargs)

    return fit_holding


@dataclass
class TrainResult:
    model: nn.Module  # the raw weights
    ema: nn.Module  # the EMA weights (use these for sampling)
    step: int
    out_dir: Path


@_holding_run_folder
def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    data: ImageSet,
    cfg,
    identity: dict,
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    resume: bool = True,
    progress: bool = True,
    evaluator: Callable[[nn.Module, int], dict] | None = None,
    eval_every: int = 0,
    extra_state: dict | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> TrainResult:
    """Optimise ``loss_fn(model, x, y)`` over batches of ``data``; shared by the UNet and the VAE.

    ``cfg`` supplies steps, batch_size, lr, weight_decay, warmup_steps, grad_clip, ema_decay, hflip,
    seed, precision, checkpoint_every and log_every; ``identity`` is what a checkpoint must match.
    x arrives in [-1, 1] (float32, flipped if ``cfg.hflip``), y as int64 labels. ``data`` may instead
    hold float ``images`` (e.g. a :class:`ddlib.latent.LatentSet` of VAE latents): those pass unscaled.
    ``evaluator(ema_model, step) -> dict`` runs every ``eval_every`` steps (and at the end) and
    its results go to ``eval.jsonl``. ``extra_state`` is stored in every checkpoint (e.g. the model
    config needed to rebuild the network). ``memory_format``: the layout of weights and batches
    (:func:`ddlib.device.fast_memory_format`); it changes speed and float rounding, not the algorithm.
    With ``DDLIB_CUDA_GRAPHS=1`` each step on CUDA is replayed from a CUDA graph (:mod:`ddlib.accel.graphs`); otherwise,
    and always on a CPU, the same step runs eagerly.
    Under torchrun (:mod:`ddlib.distributed`) ``cfg.batch_size`` is the global batch: each rank trains on its rows
    of it, with every random number drawn for the whole batch, and DDP averages the gradients, so the run equals
    the single-process run up to float reduction order; rank 0 alone writes files (docs/distributed.md).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_ranks, main = distributed.world(), distributed.is_main()
    rows = rank_rows(cfg.batch_size)  # this rank's rows [start, stop) of every global batch
    device = distributed.local_device(device)
    model = model.to(device, memory_format=memory_format)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    capture = graphs_enabled(device) and not distributed.is_initialized()  # DDP's collectives are not recorded
    opt = make_optimizer(model.parameters(), cfg, device, capturable=capture)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: warmup_factor(k, cfg.warmup_steps))
    amp = autocast_dtype(cfg.precision, device)

    ckpt_path, log_path, eval_path = out_dir / CHECKPOINT, out_dir / "log.jsonl", out_dir / "eval.jsonl"
    step = 0
    if resume and distributed.broadcast_object(ckpt_path.exists()):  # rank 0 decides; every rank reads the file
        if not ckpt_path.exists():
            raise DDLibError(f"rank {distributed.rank()} cannot see {ckpt_path}, which rank 0 resumes from; "
                             f"put --out on a filesystem that every node shares")
        state = load_checkpoint(ckpt_path, map_location=device)
        check_config(state, identity, ckpt_path, kind=(extra_state or {}).get("kind"))
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        load_optimizer_state(opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if main:
            for p in (log_path, eval_path):
                _truncate_log(p, step)
    elif main:
        for p in (log_path, eval_path):
            p.unlink(missing_ok=True)
    if main:
        (out_dir / "config.json").write_text(json.dumps({**cfg.to_dict(), "world_size": n_ranks}, indent=2) + "\n")
    net = _data_parallel(model, device)  # what the loss calls: the model, or DDP around it under torchrun

    def checkpoint(k: int) -> None:  # the same on every rank, so rank 0 alone writes it; no per-rank state
        if main:
            save_checkpoint(
                {"step": k, "config": identity, "run_config": cfg.to_dict(), "model": model.state_dict(),
                 "ema": ema.state_dict(), "optimizer": optimizer_state(opt), "scheduler": scheduler_state(sched),
                 "world_size": n_ranks, **(extra_state or {})},
                ckpt_path,
            )

    def evaluate(k: int) -> None:  # on every rank (a distributed evaluator shares out its work); rank 0 writes
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            record = {"step": k, **evaluator(ema, k)}
        if main:
            with eval_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    images = data.images.to(device)  # uint8 stays uint8 on the device; converted per batch
    labels = data.labels.to(device)
    # the step reads its batch from these fixed tensors, so that it can be replayed as a CUDA graph (ddlib.accel.graphs)
    x_static = torch.zeros((rows.stop - rows.start, *images.shape[1:]), device=device).contiguous(memory_format=memory_format)
    y_static = torch.zeros(rows.stop - rows.start, dtype=torch.long, device=device)

    def train_step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None, cache_enabled=False):
            loss = loss_fn(net, x_static, y_static)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return loss.detach().float()

    step_fn = StepGraph(train_step, capture=capture)
    model.train()
    loss_sum, loss_count, t_last, step_last = torch.zeros((), device=device), 0, time.perf_counter(), step
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not (progress and main), dynamic_ncols=True)
    order, order_epoch = None, None  # this epoch's permutation, copied to the device once per epoch
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        while step < cfg.steps:
            torch.manual_seed(step_seed(cfg.seed, step))
            epoch, k = batch_position(len(images), cfg.batch_size, step)
            if epoch != order_epoch:  # a copy from pageable memory waits for the GPU: once an epoch, not every step
                order, order_epoch = epoch_permutation(len(images), epoch, cfg.seed).to(device), epoch
            idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size][rows.start : rows.stop]  # this rank's rows
            with _global_draws(rows, cfg.batch_size):  # flips, t, ε, … drawn for the global batch, rows kept
                x = images[idx]  # (B, C, H, W)
                x = to_model_range(x) if x.dtype == torch.uint8 else x  # pixels to [-1, 1]; float data (latents) as is
                if cfg.hflip:
                    x = random_hflip(x)
                x_static.copy_(x)
                y_static.copy_(labels[idx])
                loss = step_fn()
            sched.step()  # writes the new rate into the optimizer's lr tensor, which a recorded step reads
            ema_update(ema, model, ema_decay_at(step, cfg.ema_decay))
            loss_sum += loss
            loss_count += 1
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean_loss = (distributed.all_reduce_mean(loss_sum) / loss_count).item()  # the only host sync per log interval
                if not math.isfinite(mean_loss):
                    raise DDLibError(f"loss became {mean_loss} at step {step}; lower --lr or enable --grad-clip")
                now = time.perf_counter()
                record = {"step": step, "loss": mean_loss, "lr": float(sched.get_last_lr()[0]),
                          "img_per_s": (step - step_last) * cfg.batch_size / max(now - t_last, 1e-9),
                          "cuda_graph": step_fn.captured, "world_size": n_ranks}
                if main:
                    with log_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                loss_sum.zero_()
                loss_count, t_last, step_last = 0, now, step
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(step)
            if evaluator is not None and eval_every > 0 and (step % eval_every == 0 or step == cfg.steps):
                ema.eval()
                evaluate(step)
    bar.close()
    distributed.barrier()  # every rank returns once rank 0 has written the last checkpoint
    model.eval()
    return TrainResult(model=model, ema=ema, step=step, out_dir=out_dir)


def rank_rows(batch_size: int) -> distributed.BatchShard:
    """This rank's rows of a global batch of ``batch_size`` (all of them in a single process); equal shards."""
    n_ranks = distributed.world()
    if batch_size % n_ranks:
        raise DDLibError(f"the global batch_size {batch_size} does not split over {n_ranks} processes; "
                         f"use a multiple of {n_ranks} or another --nproc_per_node")
    start, stop = distributed.shard_range(batch_size)
    return distributed.BatchShard(start, stop, batch_size)


def _global_draws(rows: distributed.BatchShard, batch_size: int):
    """Under torchrun: a :func:`ddlib.distributed.batch_shard` for ``rows``; in a single process, nothing."""
    if not distributed.is_initialized():
        return contextlib.nullcontext()
    return distributed.batch_shard(rows.start, rows.stop, batch_size)


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when several processes train it (gradients averaged); else itself."""
    if distributed.world() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def diffusion_loss(schedule: NoiseSchedule, class_conditional: bool = False, p_uncond: float = 0.1, null_class: int = 0):
    """The ε-prediction loss of DDPM eq. 14 as ``loss_fn(model, x0, y)`` for :func:`fit`."""
    T = len(schedule)

    def loss_fn(model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = distributed.rows(lambda n: torch.randint(0, T, (n,), device=x0.device), len(x0))  # (B,) uniform timesteps
        noise = distributed.randn_like(x0)  # under torchrun: this rank's rows of the global batch's draw
        x_t = schedule.to(x0.device).add_noise(x0, noise, t)  # tables on x0's device, moved once
        kwargs = {"y": drop_labels(y, p_uncond, null_class)} if class_conditional else {}
        eps = model(x_t, t, **kwargs)
        return F.mse_loss(eps.float(), noise)

    return loss_fn


def seeded_model(config, data) -> nn.Module:
    """``config.make_model(data)`` with weights drawn under ``config.seed``; the caller's RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return config.make_model(data)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    data: ImageSet | None = None,
    device: str | torch.device = "auto",
    resume: bool = True,
    progress: bool = True,
    evaluator: Callable[[nn.Module, int], dict] | None = None,
    eval_every: int = 0,
    extra_identity: dict | None = None,
    extra_state: dict | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train (or resume training) a diffusion UNet as ``config`` says; outputs go to ``out_dir``.

    ``data`` may also be a :class:`ddlib.latent.LatentSet` (latent diffusion); ``extra_identity`` joins what a
    checkpoint must match to be resumed, ``extra_state`` what every checkpoint stores (e.g. the VAE used).
    ``overwrite``: write into ``out_dir`` even when it holds files ddlib did not write.
    """
    if data is None:
        data = load_dataset(config.dataset, limit=config.data_limit, progress=progress)
    h, w = data.images.shape[-2:]
    if h != w:
        raise DDLibError(f"{config.dataset} has {w}x{h} images; ddlib's UNets take square images: crop or resize "
                         "them to one square size first")
    schedule = config.make_schedule()
    model = seeded_model(config, data)
    loss_fn = diffusion_loss(schedule, config.class_conditional, config.p_uncond, data.num_classes)
    extra = {"kind": "unet", "unet_config": model.config.to_dict(), "classes": list(data.classes), **(extra_state or {})}
    return fit(model, loss_fn, data, config, {**config.identity(), **(extra_identity or {})}, out_dir, device=device,
               resume=resume, progress=progress, evaluator=evaluator, eval_every=eval_every, extra_state=extra,
               memory_format=fast_memory_format(device), overwrite=overwrite)


@dataclass
class TrainedModel:
    """A trained diffusion model loaded for sampling: the (EMA) network, its schedule and its config.

    ``vae``: for a latent model, the VAE it was trained with as its checkpoint records it (``{"run", "hash"}``;
    :func:`ddlib.latent.load_latent_diffusion` loads it); None for a pixel-space model.
    """

    model: UNet
    schedule: NoiseSchedule
    config: TrainConfig
    step: int
    classes: list[str]
    vae: dict | None = None


def load_trained(run: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a run folder (or its ``checkpoint.pt``) written by :func:`train`, in eval mode."""
    ckpt = run_checkpoint(run)
    state = load_checkpoint(ckpt)
    if state.get("kind") != "unet":
        raise DDLibError(f"{ckpt} holds a {state.get('kind')!r} model, not a diffusion UNet")
    config = TrainConfig.from_dict(state["run_config"])
    model = UNet(UNetConfig(**state["unet_config"]))
    model.load_state_dict(state["ema" if use_ema else "model"])
    device = resolve_device(device)
    model.to(device, memory_format=fast_memory_format(device)).eval()
    return TrainedModel(model, config.make_schedule(), config, int(state["step"]), list(state.get("classes", [])),
                        state.get("vae"))
