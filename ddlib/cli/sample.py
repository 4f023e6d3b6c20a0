"""``python -m ddlib sample``: draw images from a trained run with DDPM or DDIM."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddlib.cli._types import any_int, nonneg, positive_int

GRID_IMAGES = 64  # the PNG grid shows the first 64 images (8 x 8), however many are sampled


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample images from a trained run; writes an .npz of uint8 images and a PNG grid of the first 64",
        description="Sample from the EMA weights of a run folder written by `python -m ddlib train`. Writes OUT.png "
        "(a grid of the first 64) and OUT.npz (array 'images', uint8, N×H×W×C, plus 'labels' for class-conditional runs). Example: "
        "python -m ddlib sample runs/tiny --num 64 --sampler ddim --steps 50 --out samples/tiny",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run folder (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="output path without extension: writes OUT.png and OUT.npz")
    p.add_argument("--num", "--num-images", dest="num", type=positive_int, default=64,
                   help="number of images (under torchrun write --num-images: torchrun reads --num as its --numa-binding)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"])
    p.add_argument("--steps", type=positive_int, default=50, help="DDIM steps (DDPM always uses all T)")
    p.add_argument("--eta", type=nonneg, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--spacing", default="leading", choices=["leading", "trailing", "linspace"], help="DDIM timestep spacing")
    p.add_argument("--variance", default="fixed_small", choices=["fixed_small", "fixed_large"], help="DDPM variance")
    p.add_argument("--clip", action="store_true", help="clamp predicted x0 to [-1, 1] at every step")
    p.add_argument("--class", dest="label", type=any_int, default=None, help="class-conditional runs: sample this class (default: cycle through all)")
    p.add_argument("--guidance", type=nonneg, default=1.0, help="classifier-free guidance scale s (1 = plain conditional)")
    p.add_argument("--seed", type=any_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import numpy as np
    import torch
    from numpy.lib.format import open_memmap

    from ddlib import distributed
    from ddlib.device import resolve_device
    from ddlib.errors import DDLibError, tmp_name
    from ddlib.generate import generate
    from ddlib.grids import save_image_grid
    from ddlib.train import load_trained

    if args.num < 1:
        raise DDLibError(f"--num must be >= 1, got {args.num}")
    out = Path(args.out)
    npz_path, png_path = out.with_suffix(".npz"), out.with_suffix(".png")
    resolve_device(args.device)  # a bad --device fails here, before any process group
    with distributed.session(args.device) as device:  # under torchrun each rank samples its share of the batches
        main = distributed.is_main()
        pixels_path = None
        try:
            if main:
                try:  # an unwritable --out fails now, not after sampling
                    out.parent.mkdir(parents=True, exist_ok=True)
                    pixels_path = tmp_name(npz_path, ".npy")
                    pixels_path.touch()
                except OSError as err:
                    raise DDLibError(f"cannot write to {out.parent} ({err.strerror or err}); choose a writable --out") from None
            pixels_path = Path(distributed.broadcast_object(str(pixels_path) if pixels_path else None))
            trained = load_trained(args.run, device=device)
            cfg = trained.model.config
            # the images go to a file on disk as they are made (bounded memory; under torchrun every rank writes
            # its own batches into it, so the folder must be shared), then into OUT.npz
            if main:
                open_memmap(pixels_path, mode="w+", dtype=np.uint8,
                            shape=(args.num, cfg.image_size, cfg.image_size, cfg.in_channels)).flush()
            distributed.barrier()
            pixels = open_memmap(pixels_path, mode="r+")

            def keep(start, images):  # images: uint8 (n, C, H, W)
                pixels[start : start + len(images)] = images.permute(0, 2, 3, 1).numpy()

            _, labels = generate(
                trained.model, trained.schedule, args.num, sampler=args.sampler, num_steps=args.steps, eta=args.eta,
                spacing=args.spacing, variance=args.variance, clip=args.clip, label=args.label, guidance=args.guidance,
                seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress, on_batch=keep,
            )
            pixels.flush()
            distributed.barrier()
            if main:
                arrays = {"images": pixels}
                if labels is not None:
                    arrays["labels"] = labels.numpy()
                tmp = tmp_name(npz_path, ".tmp.npz")
                try:
                    np.savez(tmp, **arrays)  # streams the memory-mapped pixels in chunks
                    os.replace(tmp, npz_path)
                finally:
                    tmp.unlink(missing_ok=True)
                grid = torch.from_numpy(np.array(pixels[:GRID_IMAGES])).permute(0, 3, 1, 2)
                save_image_grid(grid, png_path)
        finally:
            if main and pixels_path is not None:
                pixels_path.unlink(missing_ok=True)
    if not main:
        return 0
    shown = min(args.num, GRID_IMAGES)
    print(f"wrote {npz_path} ({args.num} images, {args.sampler}) and {png_path} (the first {shown})")
    return 0
