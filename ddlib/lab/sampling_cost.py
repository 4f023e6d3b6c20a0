"""Wall time and peak memory of sampling (DDPM against DDIM), each measurement in a fresh process.

Why a fresh process: on a CPU, memory freed by an earlier measurement and reused is invisible to the
next (:mod:`ddlib.perf.cost`). So each sampler runs alone in a new Python process
(``python -m ddlib.lab.sampling_cost '<json>'``) that loads the model, samples one batch under
:func:`ddlib.perf.cost.measure`, and reports

- ``wall_s``: seconds for the sampling call alone (model loading excluded);
- ``peak_rss_mb``: the process's peak resident memory while sampling, model and Python included;
- ``sampling_rss_mb``: that peak minus the resident memory just before sampling — what sampling added;
- on CUDA also ``cuda_peak_mb`` (``torch.cuda.max_memory_allocated``) and ``cuda_sampling_mb``, the
  peak minus what was allocated before sampling (the weights).

With CUDA graphs on (``DDLIB_CUDA_GRAPHS=1``, :mod:`ddlib.accel.graphs`) the timed call includes the denoiser's first
three eager steps and its recording, so the memory its activations take is measured; both samplers pay that
same constant, which understates the speed-up of the shorter one a little.

The runs of the samplers alternate (A, B, A, B, …) so that a machine shared with other work slows
both alike; the table reports the median time and the largest memory of the repeats.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from ddlib.perf import cost

METHOD_VERSION = 2  # part of cache keys: bump when what is measured changes


def measure(run_dir: str, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0, batch_size: int = 16,
            seed: int = 0, device: str = "cpu") -> dict:
    """Sample one batch from the run in *this* process and measure it (call it in a fresh process)."""
    from ddlib.device import resolve_device
    from ddlib.generate import generate
    from ddlib.train import load_trained

    dev = resolve_device(device)
    trained = load_trained(run_dir, device=dev)
    rss_before = cost.status_mb("VmRSS")
    result = {}

    def sample():
        result["images"], _ = generate(trained.model, trained.schedule, batch_size, sampler=sampler,
                                       num_steps=num_steps, eta=eta, seed=seed, batch_size=batch_size, progress=False)

    if dev.type == "cuda":  # one untimed step first: CUDA context, kernel loading and cuDNN set-up are not sampling
        generate(trained.model, trained.schedule, batch_size, sampler="ddim", num_steps=1, seed=seed,
                 batch_size=batch_size, progress=False)
    wall, added = cost.measure(sample, dev)
    steps = len(trained.schedule) if sampler == "ddpm" else num_steps
    out = {"sampler": sampler, "steps": steps, "eta": eta if sampler == "ddim" else None, "batch_size": batch_size,
           "wall_s": round(wall, 3), "s_per_step": round(wall / steps, 5), "memory_method": cost.memory_method(dev),
           "images_mean": float(result["images"].float().mean())}
    if dev.type == "cuda":
        out.update(cuda_peak_mb=round(torch.cuda.max_memory_allocated(dev) / 2**20, 1), cuda_sampling_mb=round(added / 2**20, 1))
    else:
        peak = cost.status_mb("VmHWM")
        out.update(peak_rss_mb=None if peak is None else round(peak, 1),
                   rss_before_mb=None if rss_before is None else round(rss_before, 1), sampling_rss_mb=round(added / 2**20, 1))
    return out


def measure_in_subprocess(timeout: float | None = None, **kwargs) -> dict:
    """:func:`measure` in a fresh Python process; returns its result."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "ddlib.lab.sampling_cost", json.dumps(kwargs)], capture_output=True,
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
