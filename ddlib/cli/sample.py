"""``python -m ddlib sample``: draw images from a trained run with DDPM or DDIM."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample images from a trained run; writes a PNG grid and an .npz of uint8 images",
        description="Sample from the EMA weights of a run folder written by `python -m ddlib train`. Writes OUT.png "
        "(a grid) and OUT.npz (array 'images', uint8, N×H×W×C, plus 'labels' for class-conditional runs). Example: "
        "python -m ddlib sample runs/tiny --num 64 --sampler ddim --steps 50 --out samples/tiny",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="output path without extension: writes OUT.png and OUT.npz")
    p.add_argument("--num", type=int, default=64, help="number of images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (DDPM always uses all T)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--spacing", default="leading", choices=["leading", "trailing", "linspace"], help="DDIM timestep spacing")
    p.add_argument("--variance", default="fixed_small", choices=["fixed_small", "fixed_large"], help="DDPM variance")
    p.add_argument("--clip", action="store_true", help="clamp predicted x0 to [-1, 1] at every step")
    p.add_argument("--class", dest="label", type=int, default=None, help="class-conditional runs: sample this class (default: cycle through all)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale s (1 = plain conditional)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ddlib import distributed
    from ddlib.errors import DDLibError
    from ddlib.generate import generate
    from ddlib.grids import save_image_grid
    from ddlib.device import resolve_device
    from ddlib.train import load_trained

    if args.num < 1:
        raise DDLibError(f"--num must be >= 1, got {args.num}")
    resolve_device(args.device)  # a bad --device fails here, before any process group
    with distributed.session(args.device) as device:  # under torchrun each rank samples its share of the batches
        trained = load_trained(args.run, device=device)
        images, labels = generate(
            trained.model, trained.schedule, args.num, sampler=args.sampler, num_steps=args.steps, eta=args.eta,
            spacing=args.spacing, variance=args.variance, clip=args.clip, label=args.label, guidance=args.guidance,
            seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
        )
        main = distributed.is_main()
    if not main:  # every rank holds all images; rank 0 alone writes them
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": images.permute(0, 2, 3, 1).numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    np.savez(out.with_suffix(".npz"), **arrays)
    save_image_grid(images, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.npz')} ({args.num} images, {args.sampler})")
    return 0
