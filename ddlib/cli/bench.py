"""``python -m ddlib bench``: training and sampling throughput, optionally against diffusers."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure training/sampling throughput, FLOPs and MFU (optionally against diffusers)",
        description="After warm-up, time training steps (forward + backward + AdamW) and DDIM sampling, in rounds "
        "that alternate between the models. Prints one JSON line per model, then a table. Example: "
        "python -m ddlib bench --preset ho-cifar10 --batch 128 --device cuda --compare diffusers",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--preset", default="ho-cifar10")
    p.add_argument("--batch", type=int, default=128, help="training batch size")
    p.add_argument("--sample-batch", type=int, default=None, help="sampling batch size (default: --batch)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps timed")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--compile-mode", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile's mode (reduce-overhead: CUDA graphs on a GPU, against launch overhead)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each training step and denoiser call from a CUDA graph, for both models (GPU only)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps-per-round", type=int, default=2)
    p.add_argument("--compare", default=None, choices=["diffusers"], help="also run diffusers' UNet2DModel")
    p.add_argument("--json", default=None, help="also append the JSON lines to this file")
    p.add_argument("--table", default=None, metavar="JSONL",
                   help="print the Markdown table of the results in this file (from --json) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib.perf.bench import BenchConfig, results_table, run_bench

    if args.table:
        with open(args.table) as f:
            print(results_table([json.loads(line) for line in f if line.strip()]))
        return 0

    cfg = BenchConfig(preset=args.preset, batch_size=args.batch, device=args.device, precision=args.precision,
                      channels_last=args.channels_last, compile=args.compile or args.compile_mode is not None,
                      compile_mode=args.compile_mode, cuda_graphs=args.cuda_graphs, warmup=args.warmup, rounds=args.rounds,
                      steps_per_round=args.steps_per_round, sample_steps=args.sample_steps,
                      sample_batch=args.sample_batch)
    results = run_bench(cfg, compare=args.compare, progress=lambda m: print(m, file=sys.stderr))
    lines = [json.dumps(r) for r in results]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "a") as f:
            f.write("\n".join(lines) + "\n")
    print(f"\n{'model':<10} {'params':>11} {'train img/s':>12} {'DDIM img/s':>11} {'GFLOP/img':>10} {'MFU':>7}")
    for r in results:
        print(f"{r['model']:<10} {r['params']:>11,} {r['train_img_per_s']:>12.2f} {r['sample_img_per_s']:>11.3f} "
              f"{r['fwd_gflops_per_img']:>10.2f} {r['train_mfu']:>7.2%}")
    if args.compare:
        d = results[0]
        print(f"ddlib / diffusers: training {d['train_img_per_s_vs_diffusers']:.2f}x, sampling {d['sample_img_per_s_vs_diffusers']:.2f}x")
    return 0
