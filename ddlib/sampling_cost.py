"""Wall time and peak memory of sampling (DDPM against DDIM), each measurement in a fresh process.

Why a fresh process: on a CPU, PyTorch tensors live in the C allocator, which ``tracemalloc`` does not
see, and a process's peak resident set size only grows. So each sampler runs alone in a new Python
process (``python -m ddlib.sampling_cost '<json>'``) that loads the model, resets the kernel's record of
its peak resident memory (Linux: writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM``; the
``ru_maxrss`` of ``getrusage`` cannot be reset and, after ``fork``/``exec``, still holds the *parent's*
size), samples one batch, and reports

- ``wall_s``: seconds for the sampling call alone (model loading excluded);
- ``peak_rss_mb``: the process's peak resident memory while sampling, model and Python included;
- ``sampling_rss_mb``: that peak minus the resident memory just before sampling — what sampling added;
- on CUDA also ``cuda_peak_mb`` (``torch.cuda.max_memory_allocated``) and ``cuda_sampling_mb``, the
  peak minus what was allocated before sampling (the weights).

The runs of the samplers alternate (A, B, A, B, …) so that a machine shared with other work slows
both alike; the table reports the median time and the largest memory of the repeats.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

METHOD_VERSION = 2  # part of cache keys: bump when what is measured changes


def _status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process from ``/proc/self/status`` in MB (None where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak RSS (``VmHWM``) to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def measure(run_dir: str, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0, batch_size: int = 16,
            seed: int = 0, device: str = "cpu") -> dict:
    """Sample one batch from the run in *this* process and measure it (call it in a fresh process)."""
    from ddlib.generate import generate
    from ddlib.train import load_trained, resolve_device

    dev = resolve_device(device)
    trained = load_trained(run_dir, device=dev)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        cuda_before = torch.cuda.memory_allocated(dev)
    import gc

    gc.collect()
    exact = _reset_peak()
    rss_before = _status_mb("VmRSS") or _peak_rss_mb()
    t0 = time.perf_counter()
    images, _ = generate(trained.model, trained.schedule, batch_size, sampler=sampler, num_steps=num_steps, eta=eta,
                         seed=seed, batch_size=batch_size, progress=False)
    if cuda:
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    steps = len(trained.schedule) if sampler == "ddpm" else num_steps
    out = {"sampler": sampler, "steps": steps, "eta": eta if sampler == "ddim" else None, "batch_size": batch_size,
           "wall_s": round(wall, 3), "s_per_step": round(wall / steps, 5),
           "peak_rss_mb": round(_peak_rss_mb(), 1), "rss_before_mb": round(rss_before, 1),
           "sampling_rss_mb": round(max(_peak_rss_mb() - rss_before, 0.0), 1),
           "memory_method": "VmHWM reset before sampling" if exact else "ru_maxrss (includes loading)",
           "images_mean": float(images.float().mean())}
    if cuda:
        peak = torch.cuda.max_memory_allocated(dev)
        out.update(cuda_peak_mb=round(peak / 2**20, 1), cuda_sampling_mb=round((peak - cuda_before) / 2**20, 1))
    return out


def measure_in_subprocess(timeout: float | None = None, **kwargs) -> dict:
    """:func:`measure` in a fresh Python process; returns its result."""
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "ddlib.sampling_cost", json.dumps(kwargs)], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"benchmark subprocess failed ({kwargs.get('sampler')}): {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_samplers(run_dir: str | Path, configs: list[dict], *, batch_size: int = 16, repeats: int = 2,
                     device: str = "cpu", seed: int = 0) -> list[dict]:
    """Measure each config (``{"label", "sampler", "num_steps", "eta"}``) ``repeats`` times, alternating.

    Returns one row per config: median ``wall_s`` (and each repeat's), the largest memory figures.
    """
    runs: dict[str, list[dict]] = {c["label"]: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            kw = {k: v for k, v in c.items() if k != "label"}
            runs[c["label"]].append(measure_in_subprocess(run_dir=str(run_dir), batch_size=batch_size, seed=seed,
                                                          device=device, **kw))
    rows = []
    for c in configs:
        rs = runs[c["label"]]
        row = {"label": c["label"], "sampler": rs[0]["sampler"], "steps": rs[0]["steps"], "eta": rs[0]["eta"],
               "batch_size": batch_size, "repeats": repeats,
               "wall_s": round(statistics.median(r["wall_s"] for r in rs), 3),
               "wall_s_each": " ".join(f"{r['wall_s']:.2f}" for r in rs),
               "s_per_step": round(statistics.median(r["s_per_step"] for r in rs), 5)}
        row["memory_method"] = rs[0].get("memory_method")
        for k in ("peak_rss_mb", "sampling_rss_mb", "cuda_peak_mb", "cuda_sampling_mb"):
            if all(k in r for r in rs):
                row[k] = max(r[k] for r in rs)
        rows.append(row)
    return rows


def check_claims(rows: list[dict], baseline: str, candidate: str, claimed_speedup: float = 4.0,
                 claimed_memory_saving: float = 0.30) -> dict:
    """Compare ``candidate`` (e.g. DDIM-250) with ``baseline`` (DDPM-1000) against the seed report's claims.

    Speed-up = baseline time / candidate time; memory saving = 1 − candidate / baseline memory, on the
    sampling-time figure (CUDA allocations on a GPU, resident-set growth on a CPU). A claim "holds" when
    the measurement is within 15 % (speed) or 10 percentage points (memory) of it.
    """
    by = {r["label"]: r for r in rows}
    b, c = by[baseline], by[candidate]
    speedup = b["wall_s"] / c["wall_s"]
    mem_key = "cuda_sampling_mb" if "cuda_sampling_mb" in b else "sampling_rss_mb"
    peak_key = "cuda_peak_mb" if "cuda_peak_mb" in b else "peak_rss_mb"
    saving = 1 - c[mem_key] / b[mem_key] if b[mem_key] > 0 else float("nan")
    peak_saving = 1 - c[peak_key] / b[peak_key] if b[peak_key] > 0 else float("nan")
    step_ratio = b["steps"] / c["steps"]
    speed_ok = abs(speedup / claimed_speedup - 1) <= 0.15
    mem_ok = abs(saving - claimed_memory_saving) <= 0.10
    return {"speedup": round(speedup, 2), "step_ratio": step_ratio, "memory_key": mem_key,
            "memory_saving": round(saving, 3), "peak_key": peak_key, "peak_saving": round(peak_saving, 3),
            "speed_claim_holds": speed_ok, "memory_claim_holds": mem_ok,
            "text": (f"{candidate} took {c['wall_s']:.3g} s against {b['wall_s']:.3g} s for {baseline} on the same batch: "
                     f"{speedup:.2f}× faster, for {step_ratio:.3g}× fewer steps (the seed claims {claimed_speedup:g}× at "
                     f"250 against 1000 steps) — the speed claim {'holds' if speed_ok else 'does not hold'} here"
                     f"{'' if speed_ok else ' (fixed costs per call weigh more in short runs)' if speedup < step_ratio else ''}. "
                     f"Sampling added {c[mem_key]:.1f} MB against {b[mem_key]:.1f} MB ({mem_key}), a saving of "
                     f"{saving:+.0%} (the seed claims {claimed_memory_saving:.0%}); whole-process peaks "
                     f"({peak_key}) were {c[peak_key]:.1f} and {b[peak_key]:.1f} MB — the memory claim "
                     f"{'holds' if mem_ok else 'does not hold'} here. Both samplers evaluate the same network on the "
                     "same batch once per step and keep only the current x_t, so equal peak memory and equal time "
                     "per step are what one expects; the speed-up is then the ratio of step counts.")}


if __name__ == "__main__":
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
