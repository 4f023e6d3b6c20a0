"""``python -m ddlib convert``: a diffusers ``UNet2DModel`` (Hub repository or folder) as a ddlib run folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a diffusers UNet2DModel (e.g. google/ddpm-cifar10-32) into a run folder for sample / fid",
        description="Convert diffusers' UNet2DModel weights into a ddlib run folder (config.json, checkpoint.pt, "
        "source.json) that `sample`, `fid` and the notebooks read like a trained run; the noise schedule comes from "
        "the folder's scheduler_config.json when it has one. --from-pretrained downloads from the Hugging Face Hub "
        '(pip install -e ".[pretrained]"); offline, download elsewhere and pass --from-folder. Example: '
        "python -m ddlib convert --from-pretrained google/ddpm-cifar10-32 --out runs/ddpm-cifar10",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-pretrained", metavar="REPO_ID", help="Hugging Face Hub repository, e.g. google/ddpm-cifar10-32")
    src.add_argument("--from-folder", metavar="PATH", help="folder written by UNet2DModel.save_pretrained (or a pipeline folder with unet/)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) for --from-pretrained")
    p.add_argument("--dataset", default="cifar10:train", help="what the model was trained on (ddlib data spec; provenance)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib.convert import convert_folder, fetch_pretrained
    from ddlib.train import load_trained
    from ddlib.unet import count_parameters

    if args.from_pretrained:
        folder = fetch_pretrained(args.from_pretrained, revision=args.revision)
        source = {"hub_repo": args.from_pretrained, "revision": args.revision}
    else:
        folder, source = args.from_folder, {}
    out = convert_folder(folder, args.out, dataset=args.dataset, source=source)
    trained = load_trained(out)
    cfg, s = trained.model.config, trained.schedule
    print(f"UNet: {count_parameters(trained.model):,} parameters, base {cfg.base_channels} × {list(cfg.channel_mult)}, "
          f"{cfg.num_res_blocks} res blocks, attention at levels {list(cfg.attention_levels)} with {cfg.num_heads} head(s), "
          f"downsample padding {cfg.downsample_padding}, GroupNorm ε {cfg.norm_eps:g}")
    print(f"schedule: {trained.config.schedule} {trained.config.schedule_params}, T = {len(s)}")
    print(f"wrote {out}; sample it with: python -m ddlib sample {out} --out samples/{out.name}")
    return 0
