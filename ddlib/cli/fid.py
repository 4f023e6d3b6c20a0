"""``python -m ddlib fid A B``: Fréchet Inception Distance between two image sets."""

from __future__ import annotations

import argparse
import time

SOURCES_HELP = (
    "a folder of images (searched recursively; one size), an .npz of uint8 images (array 'images', N×H×W×C or "
    "N×C×H×W, as `python -m ddlib sample` writes) or of cached statistics (from `python -m ddlib stats`), or a "
    "data set split such as cifar10:test or cifar10:train (its statistics are computed once and cached)"
)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use a seeded random subset of N images of each image source (data set splits: cached per N)")
    p.add_argument("--device", default="auto",
                   help="where the Inception network runs: auto (CUDA if present), cpu, cuda, cuda:1 …")
    p.add_argument("--batch-size", type=int, default=None, help="images per network batch (default 50 on CPU, 200 on GPU)")
    p.add_argument("--data-dir", default=None, help="where the data set archives are (default: see docs/training.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid",
        help="FID between two image sets (folders, .npz images or statistics, data set splits); prints it last",
        description="Fréchet Inception Distance with the standard TF Inception-v3 (2015-12-05) network, "
        "torch-fidelity's TF1 bilinear resize to 299 and (x-128)/128, as pytorch-fid / torch-fidelity / torchmetrics. "
        f"A and B are each {SOURCES_HELP}. The last line printed is the FID alone. On 2 CPU cores the network scores "
        "about 8 images/s. FID falls as the sample count grows (small-sample bias): compare FIDs only at equal counts "
        "against the same reference. Example: python -m ddlib fid samples/run.npz cifar10:test",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("a", metavar="A", help="first image set")
    p.add_argument("b", metavar="B", help="second image set")
    p.add_argument("--kid", action="store_true", help="also print KID (needs features: not available for statistics files)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib.errors import DDLibError
    from ddlib.metrics import default_device, fid_kid, image_sources

    if args.limit is not None and args.limit < 2:
        raise DDLibError(f"--limit must be at least 2, got {args.limit}")
    kw = dict(limit=args.limit, device=default_device() if args.device == "auto" else args.device,
              batch_size=args.batch_size, progress=not args.no_progress, data_dir=args.data_dir)
    t0 = time.perf_counter()
    a, b = image_sources([args.a, args.b], ["A", "B"], **kw)
    scores = fid_kid(a, b, with_kid=args.kid)
    print(a.description)
    print(b.description)
    if args.kid:
        if "kid_mean" not in scores:
            print("KID: n/a (a statistics file holds no features)")
        else:
            m, s = scores["kid_mean"], scores["kid_std"]
            size = min(1000, len(a.features), len(b.features))
            if size == len(a.features) == len(b.features):
                print(f"KID: {m:.6f} (all {size} vs {size} images: no subsets to spread over)")
            else:
                print(f"KID: {m:.6f} ± {s:.6f} (mean ± std over 100 subsets of {size})")
    print(f"FID of A (n={a.stats.n}) vs B (n={b.stats.n}); {time.perf_counter() - t0:.1f} s")
    print(f"{scores['fid']:.6f}")
    return 0
