"""``python -m ddlib train``: train (or resume) a diffusion UNet."""

from __future__ import annotations

import argparse

from ddlib.cli._types import any_int, nonneg, nonneg_int, positive, positive_int, probability
from ddlib.schedules import SCHEDULES
from ddlib.unet import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    d = __import__("ddlib.train", fromlist=["TrainConfig"]).TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a diffusion model (resumes from OUT/checkpoint.pt if present)",
        description="Train an ε-prediction UNet with the DDPM objective. Writes OUT/config.json, OUT/checkpoint.pt "
        "(every --checkpoint-every steps and at the end) and OUT/log.jsonl. Run the same command again to resume "
        "an interrupted run exactly. Example: python -m ddlib train --data cifar10:train --preset tiny --steps 300 "
        "--batch-size 32 --out runs/tiny. Data parallel: torchrun --nproc_per_node N -m ddlib train … splits the "
        "global --batch-size over N processes (docs/distributed.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="run folder for config, checkpoint and logs")
    p.add_argument("--data", default=d.dataset, help="data set: cifar10:train, tiny-imagenet-100:train, synthetic:train, or a class-folder path")
    p.add_argument("--data-limit", type=positive_int, default=None, help="use only the first N images")
    p.add_argument("--preset", default=d.preset, choices=list(PRESETS), help="UNet preset")
    p.add_argument("--class-conditional", action="store_true", help="condition on labels (with a null class for guidance)")
    p.add_argument("--p-uncond", type=probability, default=d.p_uncond, help="label dropout probability for classifier-free guidance")
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help="noise schedule")
    p.add_argument("--beta-start", type=positive, default=None, help="linear schedule: first beta (default 1e-4)")
    p.add_argument("--beta-end", type=positive, default=None, help="linear schedule: last beta (default 0.02)")
    p.add_argument("--timesteps", type=positive_int, default=d.num_train_timesteps, help="number of diffusion steps T")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimisation steps in total")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=positive, default=d.lr)
    p.add_argument("--weight-decay", type=nonneg, default=d.weight_decay)
    p.add_argument("--warmup", type=nonneg_int, default=d.warmup_steps, help="linear learning-rate warmup steps")
    p.add_argument("--grad-clip", type=nonneg, default=d.grad_clip, help="max gradient norm (0 = off)")
    p.add_argument("--ema-decay", type=probability, default=d.ema_decay)
    p.add_argument("--no-hflip", action="store_true", help="disable random horizontal flips")
    p.add_argument("--seed", type=any_int, default=d.seed)
    p.add_argument("--precision", default=d.precision, choices=["auto", "fp32", "bf16"], help="auto = bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every)
    p.add_argument("--log-every", type=positive_int, default=d.log_every)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    p.add_argument("--data-dir", default=None, help="folder holding the data set archives (default: $DDLIB_DATA_DIR, then see README)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/checkpoint.pt exists")
    p.add_argument("--overwrite", action="store_true", help="write into OUT even if it holds files ddlib did not write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib import distributed
    from ddlib.data import load_dataset
    from ddlib.device import resolve_device
    from ddlib.train import TrainConfig, read_log, train

    schedule_params = {k: v for k, v in (("beta_start", args.beta_start), ("beta_end", args.beta_end)) if v is not None}
    config = TrainConfig(
        dataset=args.data, data_limit=args.data_limit, preset=args.preset, class_conditional=args.class_conditional,
        p_uncond=args.p_uncond, schedule=args.schedule, schedule_params=schedule_params,
        num_train_timesteps=args.timesteps, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, grad_clip=args.grad_clip, ema_decay=args.ema_decay,
        hflip=not args.no_hflip, seed=args.seed, precision=args.precision, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
    )
    resolve_device(args.device)  # a bad --device fails before the data is read or a process group is made
    with distributed.session(args.device) as device:  # under torchrun: this rank's device in the process group
        data = load_dataset(config.dataset, limit=config.data_limit, data_dir=args.data_dir,
                            progress=not args.no_progress and distributed.is_main())
        result = train(config, args.out, data=data, device=device, resume=not args.no_resume,
                       progress=not args.no_progress, overwrite=args.overwrite)
        main = distributed.is_main()
    log = read_log(result.out_dir / "log.jsonl") if main else []  # rank 0 alone prints
    if log:
        print(f"step {log[-1]['step']}: loss {log[-1]['loss']:.4f} (first logged {log[0]['loss']:.4f}); checkpoint {result.out_dir / 'checkpoint.pt'}")
    return 0
