"""diffusers' UNet2DModel → ddlib (ddlib.convert): the same ε̂, both key generations, one-line refusals, run folders;
and the ``ho-cifar10`` preset's new arithmetic with the run-cache invalidation it needs. Never touches the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import ddlib
from ddlib.checkpoint import check_config, config_hash
from ddlib.convert import schedule_from_diffusers, state_dict_from_diffusers, unet_config_from_diffusers, write_run
from ddlib.errors import DDLibError
from ddlib.train import TrainConfig, load_trained
from ddlib.unet import PRESETS, UNet, UNetConfig, unet_from_preset

diffusers = pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[1]
TIMESTEPS = torch.tensor([0, 10, 500, 999])

# google/ddpm-cifar10-32's UNet2DModel configuration, written out (its config.json, keys diffusers 0.42 reads)
DDPM_CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=2, block_out_channels=(128, 256, 256, 256),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None,
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32, act_fn="silu",
    center_input_sample=False, mid_block_scale_factor=1, time_embedding_type="positional",
)
# the same kind of network at a size the tests can run many times: 2 levels, attention at the second, 2 heads
SMALL = dict(DDPM_CIFAR10, sample_size=16, layers_per_block=1, block_out_channels=(16, 32),
             down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
             norm_num_groups=8, attention_head_dim=16)


def random_diffusers(config: dict, seed: int = 0):
    """A UNet2DModel at diffusers' random initialisation, with the GroupNorm scales and shifts (initialised to
    1 and 0) drawn at random too, so that no term is trivially the identity."""
    torch.manual_seed(seed)
    model = diffusers.UNet2DModel(**config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
                m.bias.add_(0.1 * torch.randn_like(m.bias))
    return model


def eps_both(theirs, ours, dtype, batch: int = 4, size: int = 32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=g, dtype=torch.float64).to(dtype)
    t = TIMESTEPS[:batch]
    with torch.no_grad():
        return theirs(x, t).sample, ours(x, t)


# --------------------------------------------------------------------------------------------------
# the same function


SLOW = pytest.mark.slow


@pytest.mark.parametrize("overrides", [{}, pytest.param({"downsample_padding": 1, "norm_eps": 1e-5}, marks=SLOW),
                                       pytest.param({"attention_head_dim": None}, marks=SLOW)])
def test_small_models_give_the_same_eps(overrides):
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        theirs = random_diffusers({**SMALL, **overrides}).to(dtype)
        ours = ddlib.from_diffusers(theirs)
        assert next(ours.parameters()).dtype == dtype
        a, b = eps_both(theirs, ours, dtype, size=16)
        assert a.abs().max() > 0.1  # a real signal, not zeros
        assert (a - b).abs().max().item() < tol


def test_mapped_config_of_the_cifar10_checkpoint():
    cfg = unet_config_from_diffusers(DDPM_CIFAR10)
    assert cfg == UNetConfig(dropout=0.0, downsample_padding="tf_same", norm_eps=1e-6)
    assert {**asdict(cfg), "dropout": 0.1} == asdict(PRESETS["ho-cifar10"])  # ho-cifar10 is that network


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_ddpm_cifar10_configuration_gives_the_same_eps(dtype, tol):
    """The acceptance check: 35.7M parameters, t ∈ {0, 10, 500, 999}, ~20 s per dtype on 2 shared cores."""
    theirs = random_diffusers(DDPM_CIFAR10).to(dtype)
    ours = ddlib.from_diffusers(theirs)
    assert ours.config == PRESETS["ho-cifar10"].__class__(**{**asdict(PRESETS["ho-cifar10"]), "dropout": 0.0})
    a, b = eps_both(theirs, ours, dtype)
    assert (a - b).abs().max().item() < tol


def test_ho_cifar10_runs_in_float64():
    net = unet_from_preset("ho-cifar10").double().eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 32, 32, dtype=torch.float64), torch.tensor([999]))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_downsample_padding_tf_same_is_zero_before_one_after():
    """Closed form: a 3×3 stride-2 sum over a ramp. With (0, 1) padding output (0, 0) sums rows/cols 0..2."""
    from ddlib.unet import Downsample

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    for padding, first in (("tf_same", x[0, 0, :3, :3].sum()), ("symmetric", x[0, 0, :2, :2].sum())):
        d = Downsample(1, padding)
        with torch.no_grad():
            d.conv.weight.fill_(1.0)
            d.conv.bias.zero_()
        y = d(x)
        assert y.shape == (1, 1, 2, 2) and y[0, 0, 0, 0].item() == first.item()
    # tf_same's last output sums rows/cols 2..4 where 4 is the zero pad: x[2:4, 2:4]
    assert y.shape == (1, 1, 2, 2)
    d = Downsample(1, "tf_same")
    with torch.no_grad():
        d.conv.weight.fill_(1.0)
        d.conv.bias.zero_()
        assert d(x)[0, 0, 1, 1].item() == x[0, 0, 2:, 2:].sum().item()


# --------------------------------------------------------------------------------------------------
# run caches: ho-cifar10's function changed, the other presets' did not


def _old_identity_hash(cfg: TrainConfig) -> str:
    """The hash as ddlib computed it before the arithmetic fields existed (the plain field dict)."""
    return config_hash({k: v for k, v in cfg.to_dict().items() if k not in cfg.RESUMABLE})


def test_only_ho_cifar10_changes_its_run_key():
    from ddlib.lab.cache import run_key

    for preset in PRESETS:
        cfg = TrainConfig(preset=preset)
        old_key = config_hash({"config": {k: v for k, v in cfg.to_dict().items() if k not in cfg.RESUMABLE},
                               "steps": cfg.steps})
        changed = preset == "ho-cifar10"
        assert (run_key(cfg) != old_key) == changed, preset
        assert (config_hash(cfg.identity()) != _old_identity_hash(cfg)) == changed, preset
    # overriding ho-cifar10 back to the old arithmetic is the old function, and the old key
    old = TrainConfig(preset="ho-cifar10", unet={"downsample_padding": "symmetric", "norm_eps": 1e-5})
    assert config_hash(old.identity()) == _old_identity_hash(old)
    # and another preset set to the new arithmetic gets a new key
    new = TrainConfig(preset="small", unet={"norm_eps": 1e-6})
    assert config_hash(new.identity()) != _old_identity_hash(new)


def test_old_ho_cifar10_checkpoint_is_not_resumed_and_still_loads_as_it_was(tmp_path):
    cfg = TrainConfig(preset="ho-cifar10")
    old_identity = {k: v for k, v in cfg.to_dict().items() if k not in cfg.RESUMABLE}
    with pytest.raises(DDLibError, match="unet_numerics"):
        check_config({"config": old_identity}, cfg.identity(), tmp_path / "checkpoint.pt")
    # a checkpoint's unet_config written before the fields existed rebuilds the network it was trained as
    saved = {k: v for k, v in asdict(PRESETS["test"]).items() if k not in ("downsample_padding", "norm_eps")}
    assert UNetConfig(**saved) == PRESETS["test"]
    assert UNetConfig(**saved).downsample_padding == "symmetric" and UNetConfig(**saved).norm_eps == 1e-5


# --------------------------------------------------------------------------------------------------
# folders: both attention key generations, .safetensors and .bin


OLD_NAMES = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def _with_old_attention_names(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(path))
    renamed = {}
    for k, v in sd.items():
        for new, old in OLD_NAMES.items():
            k = k.replace(new, old)
        renamed[k] = v
    assert any(".query." in k for k in renamed) and not any(".to_q." in k for k in renamed)
    save_file(renamed, str(path))


@pytest.mark.parametrize("layout", ["current", "old_attention_names", pytest.param("bin", marks=SLOW)])
def test_folder_gives_the_same_eps(tmp_path, layout):
    theirs = random_diffusers(SMALL)
    theirs.save_pretrained(tmp_path / "m", safe_serialization=layout != "bin")
    if layout == "old_attention_names":
        _with_old_attention_names(tmp_path / "m")
        # diffusers itself reads the old names into the same model
        assert torch.equal(diffusers.UNet2DModel.from_pretrained(tmp_path / "m").mid_block.attentions[0].to_q.weight,
                           theirs.mid_block.attentions[0].to_q.weight)
    ours = ddlib.from_diffusers(tmp_path / "m")
    a, b = eps_both(theirs, ours, torch.float32, size=16)
    assert (a - b).abs().max().item() < 1e-5


# --------------------------------------------------------------------------------------------------
# refusals: one line naming the field


@pytest.mark.parametrize("field, value", [
    ("resnet_time_scale_shift", "scale_shift"), ("flip_sin_to_cos", True), ("freq_shift", 0),
    ("num_class_embeds", 10), ("downsample_padding", 2), ("attention_head_dim", 12), ("out_channels", 6),
    ("up_block_types", ("UpBlock2D", "AttnUpBlock2D")), ("down_block_types", ("DownBlock2D", "CrossAttnDownBlock2D")),
    ("act_fn", "gelu"), ("sample_size", (16, 32)), ("mid_block_scale_factor", 2),
])
def test_unexpressible_configs_are_refused_in_one_line(field, value):
    with pytest.raises(DDLibError) as err:
        unet_config_from_diffusers({**SMALL, field: value})
    msg = str(err.value)
    assert "\n" not in msg and field.split("[")[0] in msg.replace("[0]", "").replace("[1]", ""), msg


def test_defaults_follow_diffusers_for_missing_keys():
    """A config.json lists only what differs from UNet2DModel's defaults; the converter fills in the same ones."""
    import inspect

    sig = inspect.signature(diffusers.UNet2DModel.__init__).parameters
    from ddlib.convert import DIFFUSERS_DEFAULTS

    for name, default in DIFFUSERS_DEFAULTS.items():
        assert sig[name].default == default, name


def test_leftover_or_missing_tensors_are_refused():
    theirs = random_diffusers(SMALL)
    cfg = unet_config_from_diffusers(SMALL)
    sd = dict(theirs.state_dict())
    with pytest.raises(DDLibError, match="no place for"):
        state_dict_from_diffusers({**sd, "class_embedding.weight": torch.zeros(3, 64)}, cfg)
    sd.pop("mid_block.attentions.0.to_k.weight")
    with pytest.raises(DDLibError, match="lack"):
        state_dict_from_diffusers(sd, cfg)


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(DDLibError, match="no config.json"):
        ddlib.from_diffusers(tmp_path)
    with pytest.raises(DDLibError, match="no folder"):
        ddlib.from_diffusers(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------
# schedules, checked against diffusers' own scheduler


def test_schedules_match_diffusers_schedulers():
    from diffusers import DDPMScheduler

    from ddlib.schedules import make_schedule

    for sched_cfg in ({"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000},
                      {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}):
        theirs = DDPMScheduler(**sched_cfg)
        f = schedule_from_diffusers(sched_cfg)
        ours = make_schedule(f["schedule"], f["num_train_timesteps"], **f["schedule_params"])
        assert torch.allclose(ours.betas, theirs.betas.double(), atol=1e-6, rtol=0)
        assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod.double(), atol=1e-5, rtol=0)
    with pytest.raises(DDLibError, match="prediction_type"):
        schedule_from_diffusers({"prediction_type": "v_prediction"})
    with pytest.raises(DDLibError, match="beta_schedule"):
        schedule_from_diffusers({"beta_schedule": "scaled_linear"})


# --------------------------------------------------------------------------------------------------
# run folders and the command line (offline)


def _env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


@pytest.mark.slow
def test_converted_folder_is_a_run_that_samples(tmp_path):
    theirs = random_diffusers(SMALL)
    theirs.save_pretrained(tmp_path / "m")
    diffusers.DDPMScheduler(beta_start=2e-4, beta_end=0.03, num_train_timesteps=50).save_pretrained(tmp_path / "m")
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "ddlib", "convert", "--from-folder", str(tmp_path / "m"), "--out", str(run)],
                         capture_output=True, text=True, cwd=REPO, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    trained = load_trained(run)
    assert len(trained.schedule) == 50 and trained.config.schedule_params == {"beta_start": 2e-4, "beta_end": 0.03}
    a, b = eps_both(theirs, trained.model, torch.float32, batch=2, size=16)
    assert (a - b).abs().max().item() < 1e-5
    assert json.loads((run / "source.json").read_text())["scheduler_config"]["beta_end"] == 0.03
    s = subprocess.run([sys.executable, "-m", "ddlib", "sample", str(run), "--num", "2", "--steps", "3", "--out",
                        str(tmp_path / "s"), "--no-progress", "--device", "cpu"],
                       capture_output=True, text=True, cwd=REPO, env=_env(tmp_path))
    assert s.returncode == 0, s.stderr
    import numpy as np

    with np.load(tmp_path / "s.npz") as z:
        assert z["images"].shape == (2, 16, 16, 3) and z["images"].dtype == np.uint8


def test_write_run_without_scheduler_uses_ddpm_linear(tmp_path):
    net = UNet(unet_config_from_diffusers(SMALL))
    trained = load_trained(write_run(net, tmp_path / "run"))
    assert len(trained.schedule) == 1000
    assert trained.schedule.betas[0].item() == pytest.approx(1e-4) and trained.schedule.betas[-1].item() == pytest.approx(0.02)
    # the run's TrainConfig rebuilds the same network
    assert trained.config.make_model.__self__ is trained.config
    assert UNetConfig(**{**asdict(PRESETS[trained.config.preset]), **trained.config.unet}) == net.config


@pytest.mark.slow  # a real process: 6 s
def test_from_pretrained_offline_fails_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ddlib", "convert", "--from-pretrained", "google/ddpm-cifar10-32",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, env=_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("error: cannot download google/ddpm-cifar10-32") and out.stderr.count("\n") == 1
    assert "--from-folder" in out.stderr
