"""diffusers' ``UNet2DModel`` → a ddlib :class:`~ddlib.unet.UNet` with the same function, and a ddlib run folder.

``from_diffusers(model_or_folder)`` takes a ``UNet2DModel`` object, or a folder written by its
``save_pretrained`` (``config.json`` and ``diffusion_pytorch_model.safetensors`` or ``.bin``; a pipeline
folder with a ``unet/`` subfolder also works), and returns a ddlib UNet that computes the same ε̂. The
folder path needs neither diffusers nor the network: only ``safetensors`` (or ``torch.load`` for ``.bin``).

How the two networks correspond (diffusers name → ddlib name; ``k`` counts ddlib's down/up entries):

====================================================  =========================================
``conv_in``, ``conv_norm_out``, ``conv_out``           ``conv_in``, ``norm_out``, ``conv_out``
``time_embedding.linear_1`` / ``linear_2``             ``time_mlp.0`` / ``time_mlp.2``
``{down,up}_blocks.i.resnets.j.norm1 conv1 norm2       ``{down,up}.k.0.norm1 conv1 norm2 conv2
conv2 time_emb_proj conv_shortcut``                    temb_proj skip``
``….attentions.j.group_norm``                          ``….k.1.norm``
``….attentions.j.to_q | to_k | to_v`` (Linear C→C;     ``….k.1.qkv`` (one 1×1 conv C→3C: the three
older files: ``query | key | value``)                  stacked in that order)
``….attentions.j.to_out.0`` (older: ``proj_attn``)     ``….k.1.proj`` (1×1 conv)
``down_blocks.i.downsamplers.0.conv``                  ``down.k.0.conv`` (the entry after level i's blocks)
``up_blocks.i.upsamplers.0.conv``                      ``up.k.0.conv``
``mid_block.resnets.0``, ``attentions.0``, ``resnets.1``  ``mid.0``, ``mid.1``, ``mid.2``
====================================================  =========================================

Config: ``block_out_channels`` = ``base_channels`` × ``channel_mult``; ``layers_per_block`` =
``num_res_blocks``; the levels whose down block is ``AttnDownBlock2D`` (and whose mirrored up block is
``AttnUpBlock2D``) are ``attention_levels``; ``attention_head_dim`` d gives C/d heads (None: one head);
``downsample_padding`` 1 is "symmetric", 0 is "tf_same"; ``norm_eps`` is ``norm_eps``. Anything else a
config can say that ddlib's UNet does not compute (a scale-shift time embedding, flipped sin/cos, class
embeddings, …) is refused with one line naming the field.

``write_run`` stores the converted network as a run folder that :func:`ddlib.train.load_trained`, ``python -m
ddlib sample`` / ``fid`` and the notebooks read like a trained run, with the noise schedule of the folder's
``scheduler_config.json`` when it has one. ``fetch_pretrained`` downloads a model from the Hugging Face Hub
(``pip install -e ".[pretrained]"``); offline it says how to convert a folder copied from elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ddlib.checkpoint import save_checkpoint
from ddlib.errors import DDLibError
from ddlib.unet import PRESETS, UNet, UNetConfig

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# UNet2DModel's defaults (diffusers 0.42) for the keys a config.json leaves out; diffusers fills them in likewise
DIFFUSERS_DEFAULTS: dict[str, Any] = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896), "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": 0.0, "act_fn": "silu",
    "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
    "num_train_timesteps": None,
}

# settings ddlib's UNet computes only at one value: (field, required value, what ddlib computes)
_FIXED = (
    ("center_input_sample", False, "inputs are not rescaled"),
    ("time_embedding_type", "positional", "a sinusoidal time embedding"),
    ("flip_sin_to_cos", False, "the embedding is [sin, cos]"),
    ("freq_shift", 1, "frequencies exp(-ln(10000)·k/(d/2 − 1))"),
    ("mid_block_type", "UNetMidBlock2D", "a res-attention-res middle"),
    ("mid_block_scale_factor", 1, "unscaled residual sums"),
    ("downsample_type", "conv", "stride-2 convolutions down"),
    ("upsample_type", "conv", "nearest-neighbour + convolution up"),
    ("resnet_time_scale_shift", "default", "the time embedding added between the convolutions"),
    ("add_attention", True, "attention in the middle block"),
    ("class_embed_type", None, "no class embedding of this kind"),
    ("num_class_embeds", None, "no diffusers-style class embedding"),
)


def _err(field: str, value, why: str) -> DDLibError:
    return DDLibError(f"cannot convert: diffusers config {field}={value!r} is not expressible in ddlib's UNet ({why})")


def unet_config_from_diffusers(config: dict) -> UNetConfig:
    """The :class:`UNetConfig` computing what a ``UNet2DModel`` with this ``config`` computes; raises
    :class:`DDLibError` naming the first field ddlib cannot express."""
    c = {**DIFFUSERS_DEFAULTS, **{k: v for k, v in dict(config).items() if not k.startswith("_")}}
    for name, want, why in _FIXED:
        if c[name] != want:
            raise _err(name, c[name], f"ddlib needs {want!r}: {why}")
    if c["act_fn"] not in ("silu", "swish"):
        raise _err("act_fn", c["act_fn"], "ddlib uses SiLU")
    if c["in_channels"] != c["out_channels"]:
        raise _err("out_channels", c["out_channels"], f"ddlib predicts ε with in_channels={c['in_channels']} channels")
    size = c["sample_size"]
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise _err("sample_size", size, "ddlib's images are square")
        size = size[0]
    if not isinstance(size, int):
        raise _err("sample_size", size, "ddlib needs the image size")
    widths = [int(w) for w in c["block_out_channels"]]
    base = widths[0]
    if any(w % base for w in widths):
        raise _err("block_out_channels", widths, "every width must be a multiple of the first")
    if c["time_embedding_dim"] not in (None, 4 * base):
        raise _err("time_embedding_dim", c["time_embedding_dim"], f"ddlib's is 4 × block_out_channels[0] = {4 * base}")
    down, up = list(c["down_block_types"]), list(c["up_block_types"])
    if len(down) != len(widths) or len(up) != len(widths):
        raise _err("down_block_types", down, "one down and one up block per entry of block_out_channels")
    kinds = {"DownBlock2D": False, "AttnDownBlock2D": True}
    for i, name in enumerate(down):
        if name not in kinds:
            raise _err(f"down_block_types[{i}]", name, "ddlib has DownBlock2D and AttnDownBlock2D")
    for i, name in enumerate(up):
        mirror = "AttnUpBlock2D" if kinds[down[len(down) - 1 - i]] else "UpBlock2D"
        if name != mirror:
            raise _err(f"up_block_types[{i}]", name, f"ddlib's up path mirrors the down path: {mirror} here")
    attention_levels = tuple(i for i, name in enumerate(down) if kinds[name])
    groups = c["norm_num_groups"]
    if groups is None:
        raise _err("norm_num_groups", None, "ddlib needs a group count")
    if c["attn_norm_num_groups"] not in (None, groups):
        raise _err("attn_norm_num_groups", c["attn_norm_num_groups"], f"ddlib's attention normalises with norm_num_groups={groups}")
    head_dim = c["attention_head_dim"]
    attended = [widths[i] for i in attention_levels] + [widths[-1]]  # the middle block always attends
    heads = {1} if head_dim is None else {w // head_dim for w in attended}
    if head_dim is not None and (any(w % head_dim for w in attended) or len(heads) != 1):
        raise _err("attention_head_dim", head_dim, f"ddlib needs one head count at every attention (widths {attended})")
    padding = {1: "symmetric", 0: "tf_same"}.get(c["downsample_padding"])
    if padding is None:
        raise _err("downsample_padding", c["downsample_padding"], "ddlib pads 1 (symmetric) or 0 (TF 'SAME')")
    try:
        return UNetConfig(
            image_size=size, in_channels=int(c["in_channels"]), base_channels=base,
            channel_mult=tuple(w // base for w in widths), num_res_blocks=int(c["layers_per_block"]),
            attention_levels=attention_levels, dropout=float(c["dropout"]), num_heads=heads.pop(),
            norm_groups=int(groups), num_classes=None, downsample_padding=padding, norm_eps=float(c["norm_eps"]),
        )
    except DDLibError as err:
        raise DDLibError(f"cannot convert: {err}") from None


# --------------------------------------------------------------------------------------------------
# weights

_RES = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb_proj", "norm2": "norm2", "conv2": "conv2",
        "conv_shortcut": "skip"}
_ATTN_NAMES = {"to_q": "to_q", "query": "to_q", "to_k": "to_k", "key": "to_k", "to_v": "to_v", "value": "to_v",
               "to_out.0": "to_out", "proj_attn": "to_out", "group_norm": "group_norm"}


def _module_map(cfg: UNetConfig) -> list[tuple[str, str, str]]:
    """(diffusers prefix, ddlib prefix, kind) for every module, kind ∈ {plain, res, attn}."""
    n = cfg.num_res_blocks
    levels = len(cfg.channel_mult)
    out = [("conv_in", "conv_in", "plain"), ("time_embedding.linear_1", "time_mlp.0", "plain"),
           ("time_embedding.linear_2", "time_mlp.2", "plain"), ("conv_norm_out", "norm_out", "plain"),
           ("conv_out", "conv_out", "plain"), ("mid_block.resnets.0", "mid.0", "res"),
           ("mid_block.attentions.0", "mid.1", "attn"), ("mid_block.resnets.1", "mid.2", "res")]
    for i in range(levels):  # ddlib's down list: n blocks per level, then its downsampler (not after the last)
        for j in range(n):
            out.append((f"down_blocks.{i}.resnets.{j}", f"down.{i * (n + 1) + j}.0", "res"))
            if i in cfg.attention_levels:
                out.append((f"down_blocks.{i}.attentions.{j}", f"down.{i * (n + 1) + j}.1", "attn"))
        if i < levels - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv", f"down.{i * (n + 1) + n}.0.conv", "plain"))
    for i in range(levels):  # up block i is level levels-1-i: n+1 blocks, then its upsampler (not after level 0)
        level = levels - 1 - i
        for j in range(n + 1):
            out.append((f"up_blocks.{i}.resnets.{j}", f"up.{i * (n + 2) + j}.0", "res"))
            if level in cfg.attention_levels:
                out.append((f"up_blocks.{i}.attentions.{j}", f"up.{i * (n + 2) + j}.1", "attn"))
        if level > 0:
            out.append((f"up_blocks.{i}.upsamplers.0.conv", f"up.{i * (n + 2) + n + 1}.0.conv", "plain"))
    return out


def _attention_params(theirs: dict[str, torch.Tensor], src: str) -> dict[str, torch.Tensor]:
    """One attention block's tensors under the current names (to_q …), whichever generation the file uses."""
    found: dict[str, torch.Tensor] = {}
    for old, new in _ATTN_NAMES.items():
        for p in ("weight", "bias"):
            if f"{src}.{old}.{p}" in theirs:
                found[f"{new}.{p}"] = theirs[f"{src}.{old}.{p}"]
    return found


def state_dict_from_diffusers(theirs: dict[str, torch.Tensor], cfg: UNetConfig) -> dict[str, torch.Tensor]:
    """ddlib's state dict for ``cfg`` from a ``UNet2DModel`` state dict (either attention naming).

    Raises :class:`DDLibError` if a tensor is missing, left over or of the wrong shape.
    """
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for src, dst, kind in _module_map(cfg):
        if kind == "plain":
            for p in ("weight", "bias"):
                if f"{src}.{p}" in theirs:
                    ours[f"{dst}.{p}"] = theirs[f"{src}.{p}"]
                    used.add(f"{src}.{p}")
        elif kind == "res":
            for a, b in _RES.items():
                for p in ("weight", "bias"):
                    if f"{src}.{a}.{p}" in theirs:
                        ours[f"{dst}.{b}.{p}"] = theirs[f"{src}.{a}.{p}"]
                        used.add(f"{src}.{a}.{p}")
        else:
            a = _attention_params(theirs, src)
            used |= {k for k in theirs if k.startswith(src + ".")}
            try:
                ours[f"{dst}.norm.weight"], ours[f"{dst}.norm.bias"] = a["group_norm.weight"], a["group_norm.bias"]
                w = torch.cat([a["to_q.weight"], a["to_k.weight"], a["to_v.weight"]])  # (3C, C)
                ours[f"{dst}.qkv.weight"] = w[:, :, None, None]
                ours[f"{dst}.qkv.bias"] = torch.cat([a["to_q.bias"], a["to_k.bias"], a["to_v.bias"]])
                ours[f"{dst}.proj.weight"] = a["to_out.weight"].reshape(*a["to_out.weight"].shape[:2], 1, 1)
                ours[f"{dst}.proj.bias"] = a["to_out.bias"]
            except KeyError as missing:
                raise DDLibError(f"cannot convert: the weights lack {src}'s {missing.args[0]} (or its older name)") from None
    left = sorted(k for k in theirs if k not in used)
    if left:
        raise DDLibError(f"cannot convert: {len(left)} tensor(s) ddlib's UNet has no place for, e.g. {left[0]}")
    return ours


def _load_into(cfg: UNetConfig, ours: dict[str, torch.Tensor]) -> UNet:
    net = UNet(cfg)
    want = net.state_dict()
    missing = sorted(set(want) - set(ours))
    if missing:
        raise DDLibError(f"cannot convert: the weights lack a tensor for ddlib's {missing[0]} ({len(missing)} missing)")
    for k, v in ours.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise DDLibError(f"cannot convert: {k} has shape {tuple(v.shape)}, ddlib's UNet needs {tuple(want[k].shape)}")
    net.load_state_dict({k: v.to(torch.float32) for k, v in ours.items()})
    return net.eval()


# --------------------------------------------------------------------------------------------------
# folders


def find_model_folder(folder: str | Path) -> Path:
    """The folder holding ``config.json`` and the weights: ``folder`` itself or its ``unet/`` (a pipeline)."""
    folder = Path(folder)
    for candidate in (folder, folder / "unet"):
        if (candidate / "config.json").is_file() and any((candidate / w).is_file() for w in WEIGHT_FILES):
            return candidate
    if not folder.is_dir():
        raise DDLibError(f"no folder {folder}; pass a folder written by UNet2DModel.save_pretrained")
    raise DDLibError(f"{folder} holds no config.json with {' or '.join(WEIGHT_FILES)} (nor does {folder / 'unet'}); "
                     "pass a folder written by UNet2DModel.save_pretrained")


def find_scheduler_config(folder: str | Path) -> Path | None:
    """``scheduler_config.json`` beside the model, in ``scheduler/``, or in the pipeline folder above ``unet/``."""
    folder = Path(folder)
    for p in (folder / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json",
              folder.parent / "scheduler" / "scheduler_config.json"):
        if p.is_file():
            return p
    return None


def read_diffusers_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) of a ``save_pretrained`` folder, read without diffusers."""
    model_dir = find_model_folder(folder)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise DDLibError(f"cannot convert: {model_dir / 'config.json'} describes a {config['_class_name']}, not a UNet2DModel")
    st, binary = model_dir / WEIGHT_FILES[0], model_dir / WEIGHT_FILES[1]
    if st.is_file():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DDLibError(f'reading {st} needs safetensors: pip install -e ".[pretrained]"') from None
        return config, load_file(str(st))
    try:
        return config, torch.load(binary, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DDLibError(f"cannot read {binary}: {str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__}") from None


def from_diffusers(model_or_folder) -> UNet:
    """A ddlib :class:`UNet` computing what diffusers' ``UNet2DModel`` computes, in eval mode.

    ``model_or_folder``: a ``UNet2DModel`` object (the result has its dtype) or the path of a folder written by
    its ``save_pretrained`` (either generation of attention key names; the result is float32).
    """
    if isinstance(model_or_folder, (str, os.PathLike)):
        config, theirs = read_diffusers_folder(model_or_folder)
        dtype = torch.float32
    elif hasattr(model_or_folder, "config") and hasattr(model_or_folder, "state_dict"):
        config, theirs = dict(model_or_folder.config), model_or_folder.state_dict()
        dtype = next(iter(theirs.values())).dtype if theirs else torch.float32
    else:
        raise DDLibError(f"from_diffusers takes a diffusers UNet2DModel or a folder path, not {type(model_or_folder).__name__}")
    cfg = unet_config_from_diffusers(config)
    net = _load_into(cfg, state_dict_from_diffusers({k: v.detach().cpu() for k, v in theirs.items()}, cfg))
    return net.to(dtype if dtype.is_floating_point else torch.float32)


# --------------------------------------------------------------------------------------------------
# schedules and run folders


def schedule_from_diffusers(scheduler_config: dict | None) -> dict:
    """TrainConfig fields (``schedule``, ``schedule_params``, ``num_train_timesteps``) for a diffusers scheduler
    config; None (no scheduler_config.json) gives DDPM's linear β 1e-4 → 0.02 over T = 1000."""
    if scheduler_config is None:
        return {"schedule": "linear", "schedule_params": {"beta_start": 1e-4, "beta_end": 0.02}, "num_train_timesteps": 1000}
    c = scheduler_config
    if c.get("trained_betas") is not None:
        raise DDLibError("cannot convert: scheduler config trained_betas is set; ddlib builds linear or cosine schedules")
    if c.get("prediction_type", "epsilon") != "epsilon":
        raise DDLibError(f"cannot convert: scheduler config prediction_type={c['prediction_type']!r}; ddlib's models predict ε ('epsilon')")
    T = int(c.get("num_train_timesteps", 1000))
    kind = c.get("beta_schedule", "linear")
    if kind == "linear":
        return {"schedule": "linear", "num_train_timesteps": T,
                "schedule_params": {"beta_start": float(c.get("beta_start", 1e-4)), "beta_end": float(c.get("beta_end", 0.02))}}
    if kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine with s = 0.008, β capped at 0.999 in diffusers
        return {"schedule": "cosine", "num_train_timesteps": T, "schedule_params": {"s": 0.008, "max_beta": 0.999}}
    raise DDLibError(f"cannot convert: scheduler config beta_schedule={kind!r}; ddlib has 'linear' and 'squaredcos_cap_v2' (cosine)")


def _preset_overrides(cfg: UNetConfig, preset: str) -> dict:
    base = PRESETS[preset]
    return {f.name: getattr(cfg, f.name) for f in fields(UNetConfig) if getattr(cfg, f.name) != getattr(base, f.name)}


def write_run(net: UNet, out_dir: str | Path, *, scheduler_config: dict | None = None, dataset: str = "cifar10:train",
              source: dict | None = None) -> Path:
    """Write ``net`` as a ddlib run folder (``config.json``, ``checkpoint.pt``, ``source.json``) that
    :func:`ddlib.train.load_trained` loads; returns the folder.

    The run's :class:`~ddlib.train.TrainConfig` names preset ``ho-cifar10`` with the fields that differ from it
    as overrides, the schedule of ``scheduler_config`` (:func:`schedule_from_diffusers`) and ``dataset`` (what
    the model was trained on, as a ddlib data spec). Its step is 0: no ddlib training happened. ``source`` (e.g.
    the Hub repository and the scheduler's sampling settings) goes into ``source.json`` for provenance.
    """
    from ddlib.train import TrainConfig

    out = Path(out_dir)
    cfg = net.config
    run_config = TrainConfig(dataset=dataset, preset="ho-cifar10", unet=_preset_overrides(cfg, "ho-cifar10"),
                             **schedule_from_diffusers(scheduler_config))
    weights = {k: v.detach().to("cpu", torch.float32).clone() for k, v in net.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(run_config.to_dict(), indent=2) + "\n")
    save_checkpoint({"step": 0, "config": run_config.identity(), "run_config": run_config.to_dict(), "model": weights,
                     "ema": weights, "kind": "unet", "unet_config": cfg.to_dict(), "classes": [],
                     "converted_from": json.loads(json.dumps(source or {}, default=str))}, out / "checkpoint.pt")
    record = {"converted": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "unet_config": cfg.to_dict(),
              "scheduler_config": scheduler_config, **(source or {})}
    (out / "source.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out


def convert_folder(folder: str | Path, out_dir: str | Path, *, dataset: str = "cifar10:train",
                   source: dict | None = None) -> Path:
    """Convert a diffusers folder (model, and scheduler config if present) into a ddlib run folder."""
    net = from_diffusers(folder)
    sched_path = find_scheduler_config(find_model_folder(folder))
    sched = json.loads(sched_path.read_text()) if sched_path else None
    info = {"folder": str(Path(folder).resolve()), "scheduler_config_file": str(sched_path) if sched_path else None,
            **(source or {})}
    return write_run(net, out_dir, scheduler_config=sched, dataset=dataset, source=info)


def fetch_pretrained(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Download a diffusers model repository's configs and weights from the Hugging Face Hub; returns the folder.

    Needs ``huggingface_hub`` (``pip install -e ".[pretrained]"``) and the network. Offline (no connection, or
    ``HF_HUB_OFFLINE=1`` without a cached copy) it raises one line saying how to convert a copy made elsewhere.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DDLibError('--from-pretrained needs huggingface_hub: pip install -e ".[pretrained]"') from None
    remedy = (f"on a machine that is online run `hf download {repo_id} --local-dir {repo_id.split('/')[-1]}`, "
              f"copy that folder here and pass --from-folder {repo_id.split('/')[-1]}")
    path = None
    try:
        for weights in ("*.safetensors", "*.bin"):  # safetensors if the repository has it, else the pickle
            path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                          allow_patterns=["*.json", weights]))
            try:
                find_model_folder(path)
                return path
            except DDLibError:
                continue
    except Exception as err:  # offline, unknown repository, no permission: one line with the way out
        reason = str(err).strip().splitlines()[0][:100] if str(err).strip() else type(err).__name__
        raise DDLibError(f"cannot download {repo_id} ({type(err).__name__}: {reason}); {remedy}") from None
    raise DDLibError(f"{repo_id} has no UNet2DModel config.json with {' or '.join(WEIGHT_FILES)} (looked in {path})")
