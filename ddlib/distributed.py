"""Data parallelism across processes started by ``torchrun``: the process group, shards, gathers, and global draws.

``torchrun --nproc_per_node N -m ddlib train …`` starts N copies of the command with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment; :func:`init` turns them into a
``torch.distributed`` process group (NCCL between GPUs, gloo between CPUs), each process on its own GPU
``cuda:LOCAL_RANK``. A process started without that environment is a world of one: :func:`init` creates no
group, :func:`world` is 1, :func:`rank` 0, and every helper below does what a single process always did.

Exactness. A training step of global batch B on N ranks gives rank r the rows ``[r·B/N, (r+1)·B/N)`` of the
batch the single process would use. Every random number the step needs (flips, t, ε, label drops, dropout
masks, the VAE's reparameterisation noise) is drawn for the *whole* global batch on every rank, from the same
seeded generator, and each rank keeps its rows (:func:`batch_shard`, :func:`rows`). Each rank therefore sees
exactly its slice of the single-process step; with equal shards the mean of the N rank losses is the global
mean, and averaging the gradients (DDP) gives the single-process gradient up to the order of the float sums.

Each helper that draws is a no-op wrapper outside a :func:`batch_shard` context, so single-process numbers are
the ones they always were.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ddlib.device import resolve_device
from ddlib.errors import DDLibError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 1800  # a collective that waits longer than this fails instead of hanging (DDLIB_DIST_TIMEOUT)


# --------------------------------------------------------------------------------------------------
# the process group


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    """The number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", 0)) if is_initialized() else 0


def is_main() -> bool:
    """True in exactly one process of the job: the one that writes files and prints."""
    return rank() == 0


def local_device(device: str | torch.device | None = "auto") -> torch.device:
    """``resolve_device(device)``, made this rank's own GPU (``cuda:LOCAL_RANK``) where a bare ``cuda`` is meant."""
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None and is_initialized():
        device = torch.device("cuda", local_rank())
    return device


def _timeout_s() -> float:
    raw = os.environ.get("DDLIB_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise DDLibError(f"DDLIB_DIST_TIMEOUT={raw!r}: give the seconds a collective may wait, e.g. 1800")
    return value


def init(device: str | torch.device | None = "auto", timeout_s: float | None = None) -> torch.device:
    """Join the job's process group if ``torchrun`` started this process; returns this rank's device.

    Backend: NCCL when the device is a GPU (each rank on ``cuda:LOCAL_RANK``), gloo on CPUs. ``timeout_s``
    (default ``DDLIB_DIST_TIMEOUT`` or 1800 s) bounds how long a collective waits for a dead or stuck rank.
    Without a launcher's environment nothing happens and the resolved ``device`` comes back. Calling it twice
    is harmless.
    """
    if not launched() or is_initialized():
        return local_device(device)
    missing = [k for k in ENV if k not in os.environ]
    if missing:
        raise DDLibError(f"RANK and WORLD_SIZE are set but {', '.join(missing)} not; start the job with torchrun")
    device = resolve_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise DDLibError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                             f"lower --nproc_per_node to the GPUs of a node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=timeout_s if timeout_s is not None else _timeout_s())
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, timeout=timeout, **kwargs)
    return device


def shutdown() -> None:
    """Leave the process group (after a last barrier, so no rank exits while another still sends)."""
    if is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


@contextmanager
def session(device: str | torch.device | None = "auto") -> Iterator[torch.device]:
    """``with session(device) as dev:`` :func:`init` on entry, :func:`shutdown` on a normal exit.

    On an exception the group is torn down without the final barrier (the other ranks may never reach it);
    ``torchrun`` then stops the whole job.
    """
    created = launched() and not is_initialized()
    dev = init(device)
    try:
        yield dev
    except BaseException:
        if created and is_initialized():
            dist.destroy_process_group()
        raise
    if created:
        shutdown()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


# --------------------------------------------------------------------------------------------------
# shards and collectives


def shard_range(n: int, r: int | None = None, n_ranks: int | None = None) -> tuple[int, int]:
    """Rank ``r``'s contiguous block ``[lo, hi)`` of ``n`` items; blocks differ in size by at most one.

    Concatenating the blocks in rank order gives ``0, 1, …, n − 1``.
    """
    r = rank() if r is None else r
    n_ranks = world() if n_ranks is None else n_ranks
    q, extra = divmod(n, n_ranks)
    lo = r * q + min(r, extra)
    return lo, lo + q + (r < extra)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, on every rank (``x`` itself in a world of one).

    Ranks may hold different numbers of rows, also none (then ``x`` only needs the right dtype; its trailing
    shape is taken from the ranks that have rows).
    """
    if world() == 1:
        return x
    meta: list = [None] * world()
    dist.all_gather_object(meta, (len(x), tuple(x.shape[1:]) if len(x) else None, x.dtype))
    counts = [m[0] for m in meta]
    shapes = {m[1] for m in meta if m[1] is not None}
    if len(shapes) > 1:
        raise DDLibError(f"all_gather_rows: ranks hold rows of different shapes {sorted(shapes)}")
    if not shapes:
        return x
    rest, dev = shapes.pop(), _comm_device()
    padded = torch.zeros((max(counts), *rest), dtype=x.dtype, device=dev)
    padded[: len(x)] = x.to(dev)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(x.device)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (a new tensor; ``x`` itself in a world of one)."""
    if world() == 1:
        return x
    y = x.detach().clone()
    if dist.get_backend() == "nccl" and y.device.type != "cuda":
        y = y.to(_comm_device())
    dist.all_reduce(y)
    return (y / world()).to(x.device)


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (picklable) on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# --------------------------------------------------------------------------------------------------
# draws for the global batch


@dataclass(frozen=True)
class BatchShard:
    """This rank's rows ``[start, stop)`` of a global batch of ``total``."""

    start: int
    stop: int
    total: int


_shard: BatchShard | None = None


@contextmanager
def batch_shard(start: int, stop: int, total: int) -> Iterator[BatchShard]:
    """Inside: :func:`rows` draws for the ``total`` rows of the global batch and keeps ``[start, stop)``."""
    global _shard
    if not 0 <= start <= stop <= total:
        raise DDLibError(f"batch shard [{start}, {stop}) does not lie in a batch of {total}")
    previous, _shard = _shard, BatchShard(start, stop, total)
    try:
        yield _shard
    finally:
        _shard = previous


def current_shard() -> BatchShard | None:
    return _shard


def rows(draw: Callable[[int], torch.Tensor], n: int) -> torch.Tensor:
    """``draw(n)``, or, inside :func:`batch_shard` for a local batch of ``n``, this rank's rows of ``draw(total)``.

    ``draw(m)`` must return m rows (dim 0) of random numbers. The kept rows are copied, so the global draw is
    freed at once.
    """
    s = _shard
    if s is None:
        return draw(n)
    if n != s.stop - s.start:
        raise DDLibError(f"a draw for {n} rows inside a batch shard of {s.stop - s.start}; draw per local batch row")
    return draw(s.total)[s.start : s.stop].clone()


def _like(x: torch.Tensor, n: int) -> torch.Tensor:
    """An empty tensor of ``n`` rows shaped, typed and laid out (contiguous or channels-last) like ``x``."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(x)`` with rows drawn for the global batch (see :func:`rows`)."""
    if _shard is None:
        return torch.randn_like(x)
    return rows(lambda n: _like(x, n).normal_(), len(x))


class ShardDropout(nn.Dropout):
    """``nn.Dropout`` whose masks, inside :func:`batch_shard`, are drawn for the global batch.

    Outside a shard it is ``F.dropout`` (a fused kernel on CUDA), so single-process runs keep their numbers; inside,
    the mask is ``bernoulli(1 − p)`` over the global batch's shape and each rank keeps its rows.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _shard is None or not self.training or self.p == 0.0:
            return F.dropout(x, self.p, self.training, self.inplace)
        keep = rows(lambda n: _like(x, n).bernoulli_(1.0 - self.p), len(x))
        return x * keep.div_(1.0 - self.p)  # the order of F.dropout's own CPU kernel: mask / (1 − p), then × x
