"""Where computation runs: resolving ``"auto"`` to a device, and naming the hardware for provenance.

Every measurement the package writes down (training time, FID statistics, benchmarks, report rows)
names its hardware with :func:`hardware_string`, so numbers from different machines are never
silently compared.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from ddlib.errors import DDLibError

_MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when a GPU is visible, else CPU; a named CUDA device must exist."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise DDLibError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu", "meta"):
        raise DDLibError(f"unsupported device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DDLibError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DDLibError(f"device {device} does not exist (this machine has {torch.cuda.device_count()} GPU(s)); "
                         "use cuda:0 … or auto")
    return device


def fast_memory_format(device: str | torch.device | None = "auto") -> torch.memory_format:
    """The memory format ddlib's UNets train and sample fastest in on ``device``.

    Channels-last on a CPU, where oneDNN's convolutions prefer it; on CUDA the default layout, where channels-last
    did not pay in bf16 (``python -m ddlib bench`` with and without ``--channels-last``; docs/measurements.md).
    ``DDLIB_MEMORY_FORMAT=channels_last|contiguous`` overrides the choice on every device.
    """
    forced = os.environ.get("DDLIB_MEMORY_FORMAT")
    if forced:
        if forced not in _MEMORY_FORMATS:
            raise DDLibError(f"DDLIB_MEMORY_FORMAT={forced!r}: use one of {', '.join(_MEMORY_FORMATS)}, or unset it")
        return _MEMORY_FORMATS[forced]
    return torch.channels_last if resolve_device(device).type == "cpu" else torch.contiguous_format


def hardware_string(device: str | torch.device | None = None) -> str:
    """What a measurement ran on: the GPU's name, or the CPU model with its core and thread counts."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} CPU cores, {torch.get_num_threads()} torch threads"
