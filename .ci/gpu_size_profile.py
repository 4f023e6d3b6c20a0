#!/usr/bin/env python3
"""Size the gpu profile's training to a time budget from the benchmark measured on the same machine.

    python .ci/gpu_size_profile.py BENCH.jsonl BASE.yaml OUT.yaml --target-s 420

BENCH.jsonl holds `python -m ddlib bench` records (.ci/gpu-check writes them). From ddlib's records without
torch.compile (the report's training does not compile) it takes
- the memory format: channels-last when it trained faster than the default layout, else the default;
- T, training images/s in that format, and N, model evaluations/s of DDIM sampling (DDIM img/s × steps).
Everything in the profile but the CIFAR-10 training is priced at N (sampling) plus fixed allowances; what is
left of the target goes to training: `train_steps` for notebook 01's model, `schedule_train_steps` = 1/5 of it
for each of the three models of notebook 04. Prints the estimate; the last line is the memory format
(`channels_last` or `contiguous`) for DDLIB_MEMORY_FORMAT.
"""

from __future__ import annotations

import argparse
import json
import math

import yaml

# Allowances in seconds, guessed for one H200 and 16 cores (the first GPU run checks them: see its log):
# five kernels started and imports (~8 s each), CIFAR-10 decoded once (50k JPEGs), Inception features of the
# references (50k train + 10k test) and of every sample set, notebook 03 (VAE, latent UNet, classifier: small),
# the two denoising trajectories (T + 50 steps at batch 2: launch-bound).
OVERHEAD_S = {"kernels": 40, "data": 20, "inception": 40, "notebook_03": 100, "trajectories (batch 2)": 10,
              "02 fresh processes (DDPM vs DDIM)": 20}
TRAIN_LOOP_EFFICIENCY = 0.85  # fit() does more per step than the benchmark's loop (EMA, data, flips)
SAMPLING_EFFICIENCY = 0.7     # clipping, uint8 conversion and small last batches against the benchmark's loop
SCHEDULE_FRACTION = 5         # notebook 04 trains each schedule for train_steps / 5


def pick(records: list[dict]) -> tuple[dict, str]:
    plain = [r for r in records if r["model"] == "ddlib" and not r.get("compile")]
    if not plain:
        raise SystemExit("no ddlib bench record without --compile: run .ci/gpu-check first")
    best = max(plain, key=lambda r: r["train_img_per_s"])
    return best, "channels_last" if best.get("channels_last") else "contiguous"


def sampling_evaluations(p: dict) -> dict[str, float]:
    """Model evaluations (images × steps) the profile's sampling costs, per notebook."""
    T = p["timesteps"]
    sweep = sum(p["ddim_steps"]) * len(p["ddim_etas"]) * p["ddim_fid_samples"]
    final = (p["final_fid_samples"] or 0) * max(p["ddim_steps"])  # worst case: the longest setting wins
    speed = p["bench_repeats"] * (T + p["bench_ddim_steps"]) * p["bench_batch"]
    return {"01 DDPM samples": p["ddpm_fid_samples"] * T, "02 sweep": sweep, "02 headline": final, "02 DDPM vs DDIM": speed,
            "04 samples": len(p["schedules"]) * p["schedule_fid_samples"] * p["schedule_ddim_steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench")
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--target-s", type=float, required=True, help="wall time the whole report should take")
    ap.add_argument("--min-steps", type=int, default=500)
    args = ap.parse_args()

    records = [json.loads(line) for line in open(args.bench) if line.strip()]
    best, fmt = pick(records)
    T_img = best["train_img_per_s"] * TRAIN_LOOP_EFFICIENCY
    N = best["sample_img_per_s"] * best["sample_steps"] * SAMPLING_EFFICIENCY
    p = yaml.safe_load(open(args.base))
    evals = sampling_evaluations(p)
    sampling_s = {k: v / N for k, v in evals.items()}
    fixed = sum(OVERHEAD_S.values()) + sum(sampling_s.values())
    budget = args.target_s - fixed
    main_s = budget / (1 + len(p["schedules"]) / SCHEDULE_FRACTION)
    steps = max(args.min_steps, int(main_s * T_img / p["batch_size"]) // 100 * 100)
    p["train_steps"] = steps
    p["schedule_train_steps"] = max(100, steps // SCHEDULE_FRACTION // 100 * 100)
    p["warmup_steps"] = min(p["warmup_steps"], steps // 10)
    with open(args.out, "w") as f:
        f.write(f"# sized by .ci/gpu_size_profile.py for {args.target_s:.0f} s from {args.bench} ({best['device']}): "
                f"training {best['train_img_per_s']:.0f} img/s ({fmt}), DDIM {best['sample_img_per_s']:.0f} img/s "
                f"at {best['sample_steps']} steps\n")
        yaml.safe_dump(p, f, sort_keys=False)
    print(f"bench: ddlib {fmt} training {best['train_img_per_s']:.0f} img/s, DDIM-{best['sample_steps']} "
          f"{best['sample_img_per_s']:.0f} img/s -> {N:.0f} model evaluations/s (after x{SAMPLING_EFFICIENCY})")
    for k, v in {**OVERHEAD_S, **sampling_s}.items():
        print(f"  {k:<44} {v:7.1f} s")
    total_train = main_s * (1 + len(p["schedules"]) / SCHEDULE_FRACTION)
    print(f"fixed {fixed:.0f} s; training {total_train:.0f} s: train_steps {steps} "
          f"({steps * p['batch_size'] / T_img:.0f} s), schedule_train_steps {p['schedule_train_steps']} x3")
    if budget <= 0 or not math.isfinite(budget):
        print(f"warning: the fixed costs ({fixed:.0f} s) exceed the target; training gets the minimum {args.min_steps}")
    print(fmt)


if __name__ == "__main__":
    main()
