"""``python -m ddlib stats SOURCE``: write FID reference statistics (mu, sigma, provenance) to an .npz."""

from __future__ import annotations

import argparse
from pathlib import Path

from ddlib.cli.fid import SOURCES_HELP, add_common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="compute FID reference statistics of an image set and write them as .npz",
        description=f"Compute the FID statistics (mean and covariance of the 2048-d Inception pool features, with "
        f"their provenance: source, count, preprocessing, weights) of SOURCE, which is {SOURCES_HELP}. "
        "A data set split is stored in the FID cache (<cache>/fid/ref/, see docs/metrics.md) and reused by `fid`, the "
        "notebooks and training; --out also copies the statistics there. The last line printed is the path written. "
        "Example: python -m ddlib stats cifar10:test",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="image set")
    p.add_argument("--out", "-o", default=None, help="output .npz (required unless SOURCE is a data set split)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib.errors import DDLibError
    from ddlib.metrics import default_device, image_source, reference_paths
    from ddlib.metrics.reference import _looks_like_spec, _normalize_spec, _resolve_count

    src = str(args.source)
    is_spec = not Path(src).exists() and _looks_like_spec(src)
    if args.out is None and not is_spec:
        raise DDLibError("--out is required for a folder or .npz source (only data set splits have a cache location)")
    if args.out is not None and not str(args.out).endswith(".npz"):
        raise DDLibError(f"--out must end in .npz, got {args.out}")
    if args.limit is not None and args.limit < 2:
        raise DDLibError(f"--limit must be at least 2, got {args.limit}")
    device = default_device() if args.device == "auto" else args.device
    s = image_source(src, limit=args.limit, device=device, batch_size=args.batch_size,
                     progress=not args.no_progress, data_dir=args.data_dir, name="SOURCE")
    print(s.description)
    if args.out:
        path = s.stats.save(args.out)
    else:
        spec = _normalize_spec(src)
        path = reference_paths(spec, _resolve_count(spec, args.limit, args.data_dir, None, False))[0]
    print(path)
    return 0
