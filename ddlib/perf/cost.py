"""Wall time and peak memory of one call, the same way everywhere the package compares costs.

:func:`measure` returns the seconds ``fn()`` took and the peak memory it added:

- on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated before the call;
- on a CPU, the peak resident set size above the resident size before the call. PyTorch tensors live
  in the C allocator, which ``tracemalloc`` does not see, and a process's peak RSS only grows; on Linux
  writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's peak (``VmHWM``) to the current RSS, so
  the peak read afterwards belongs to the call. Elsewhere a thread polls the RSS every millisecond.

Memory freed by an earlier call and reused without a new mapping is not counted, so compare figures
measured in one process the same way, or run each measurement in a fresh process
(:mod:`ddlib.lab.sampling_cost`).
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Callable

import torch


def status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM``/… of this process from ``/proc/self/status`` in MB (None where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return status_mb("VmHWM") is not None
    except OSError:
        return False


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def memory_method(device: torch.device) -> str:
    """How :func:`measure` measures memory on ``device`` here (for tables)."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated"
    return "peak RSS (VmHWM reset)" if Path("/proc/self/clear_refs").exists() else "peak RSS (psutil, 1 ms polling)"


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, int]:
    """(wall seconds, peak bytes above the start) of ``fn()`` on ``device``; see the module docstring."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - t0, torch.cuda.max_memory_allocated(device) - base
    gc.collect()
    if reset_peak_rss():
        base = status_mb("VmRSS")
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        return seconds, max(0, round((status_mb("VmHWM") - base) * 2**20))
    base, peak, done = _rss_bytes(), [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(0.001)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    return seconds, max(0, max(peak[0], _rss_bytes()) - base)
