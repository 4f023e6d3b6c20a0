#!/usr/bin/env python3
"""Check on the GPU that CUDA-graph replay (ddlib.accel.graphs) does what eager execution does, before the report uses it.

    python .ci/gpu_graph_check.py OUT_DIR [--device cuda] [--steps 100]

1. Training: one class-conditional run (`small` UNet with dropout, synthetic 32×32 data, batch 64, bf16 on CUDA)
   twice from the same seed, DDLIB_CUDA_GRAPHS=0 then 1. The graphed run must have replayed a graph, keep its
   losses finite and end within 15 % of the eager run's loss (mean of its last two log records): the noise the two
   runs draw need not be the same stream. How far the weights ended apart is printed: near 0 means it was.
2. Sampling: the eager run's EMA model, 32 images by DDIM-20 at η = 0 and at η = 1, unguided and with guidance
   s = 2 (a doubled batch through the graph), graphs off against on. The uint8 images must agree within 2 levels,
   and every sampling wrapper of the graphed runs must have replayed a graph.
Any exception is written into the JSON with its traceback (a GPU session is short).

Writes OUT_DIR/graph_check.json and exits 0 if everything passed, 1 otherwise. On a CPU both runs are eager (a
dry run of this script).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import math
import tempfile
import traceback
from pathlib import Path

import ddlib.generate as G
from ddlib.data import synthetic_dataset
from ddlib.train import TrainConfig, read_log, train


def with_graphs(flag: str, fn):
    old = os.environ.get("DDLIB_CUDA_GRAPHS")
    os.environ["DDLIB_CUDA_GRAPHS"] = flag
    try:
        return fn()
    finally:
        if old is None:
            del os.environ["DDLIB_CUDA_GRAPHS"]
        else:
            os.environ["DDLIB_CUDA_GRAPHS"] = old


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": args.device, "train": {"ok": False}, "sample": {}}
    work = Path(tempfile.mkdtemp(prefix="graph-check-"))
    data = synthetic_dataset(1024, image_size=32, num_classes=4)
    cfg = TrainConfig(dataset="synthetic:train", preset="small", class_conditional=True, steps=args.steps,
                      batch_size=args.batch, lr=2e-4, warmup_steps=10, ema_decay=0.99, log_every=args.steps // 5,
                      checkpoint_every=args.steps)

    def run(flag: str):
        return with_graphs(flag, lambda: train(cfg, work / f"graphs{flag}", data=data, device=args.device,
                                               resume=False, progress=False))

    eager = run("0")
    # a GPU session is short: whatever breaks goes into the file that comes back, and the other half still runs
    try:
        compare_training(eager, run("1"), work, report)
    except Exception:
        report["train"]["error"] = traceback.format_exc()
    try:
        check_sampling(eager.ema.eval(), cfg.make_schedule(), report)
    except Exception:
        report["sample"]["error"] = {"ok": False, "traceback": traceback.format_exc()}
    report["ok"] = report["train"]["ok"] and bool(report["sample"]) and all(v["ok"] for v in report["sample"].values())
    (out / "graph_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print("CUDA graph check", "PASSED" if report["ok"] else "FAILED")
    return 0 if report["ok"] else 1


def compare_training(eager, graphed, work: Path, report: dict) -> None:
    logs = {flag: read_log(work / f"graphs{flag}" / "log.jsonl") for flag in ("0", "1")}
    tail = {flag: sum(r["loss"] for r in log[-2:]) / 2 for flag, log in logs.items()}
    weights_apart = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                        for a, b in zip(graphed.model.state_dict().values(), eager.model.state_dict().values()))
    on_cuda = graphed.model.conv_in.weight.device.type == "cuda"
    report["train"] = {
        "ok": (logs["1"][-1]["cuda_graph"] == on_cuda and all(math.isfinite(r["loss"]) for r in logs["1"])
               and abs(tail["1"] / tail["0"] - 1) <= 0.15),
        "losses_eager": [r["loss"] for r in logs["0"]], "losses_graphed": [r["loss"] for r in logs["1"]],
        "replayed": logs["1"][-1]["cuda_graph"], "img_per_s_eager": logs["0"][-1]["img_per_s"],
        "img_per_s_graphed": logs["1"][-1]["img_per_s"], "max_relative_weight_difference": weights_apart}


def check_sampling(model, schedule, report: dict) -> None:
    made = []  # every wrapper generate() makes, to see that the graphed runs really replayed
    plain = G.graphed
    G.graphed = lambda m: made.append(plain(m)) or made[-1]
    on_cuda = next(model.parameters()).device.type == "cuda"
    try:
        for eta in (0.0, 1.0):
            for guidance in (1.0, 2.0):
                images = {}
                for flag in ("0", "1"):
                    made.clear()
                    images[flag] = with_graphs(flag, lambda: G.generate(model, schedule, 32, num_steps=20, eta=eta,
                                                                         guidance=guidance, seed=1, batch_size=32,
                                                                         progress=False)[0])
                replayed = bool(made) and all(getattr(w, "captured", False) for w in made)
                diff = int((images["1"].int() - images["0"].int()).abs().max())
                report["sample"][f"eta={eta}, s={guidance}"] = {"max_uint8_difference": diff, "replayed": replayed,
                                                                "ok": diff <= 2 and replayed == on_cuda}
    finally:
        G.graphed = plain

if __name__ == "__main__":
    sys.exit(main())
