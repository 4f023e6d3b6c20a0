"""The training loop: its pieces in closed form, exact resume (also after a real kill), checkpoints."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddlib.checkpoint import config_hash, load_checkpoint, save_checkpoint
from ddlib.data import synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.train import LoopConfig, TrainConfig, batch_indices, ema_decay_at, ema_update, load_trained, read_log, train, warmup_factor
from ddlib.train_vae import VAETrainConfig
from ddlib.unet import unet_from_preset

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dataset="synthetic:train", preset="test", batch_size=8, lr=1e-3, warmup_steps=5, log_every=5, checkpoint_every=10)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_warmup_and_ema_decay_closed_forms():
    assert [warmup_factor(k, 4) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    assert ema_decay_at(0, 0.9999) == pytest.approx(1 / 10) and ema_decay_at(10**7, 0.9999) == 0.9999


def test_ema_update_is_the_convex_combination():
    torch.manual_seed(0)
    model, ema = unet_from_preset("test"), unet_from_preset("test")
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    ema_update(ema, model, 0.9)
    for k, v in ema.state_dict().items():
        assert torch.allclose(v, 0.9 * before[k] + 0.1 * model.state_dict()[k], atol=1e-7)


def test_batch_indices_cover_each_epoch_once():
    n, bs = 50, 8  # 6 full batches per epoch, 2 images dropped
    epoch0 = torch.cat([batch_indices(n, bs, k, seed=0) for k in range(6)])
    assert len(set(epoch0.tolist())) == 48
    assert not torch.equal(batch_indices(n, bs, 0, 0), batch_indices(n, bs, 6, 0))  # new epoch, new order
    assert torch.equal(batch_indices(n, bs, 3, 0), batch_indices(n, bs, 3, 0))
    with pytest.raises(DDLibError, match="larger than the data set"):
        batch_indices(5, 8, 0, 0)


def test_resume_in_process_is_bit_identical_and_leaves_global_rng(tmp_path):
    data = synthetic_dataset(64, image_size=32, num_classes=4)
    rng_before = torch.get_rng_state()
    full = train(TrainConfig(**TINY, steps=20), tmp_path / "full", data=data, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    train(TrainConfig(**TINY, steps=10), tmp_path / "split", data=data, progress=False)
    resumed = train(TrainConfig(**TINY, steps=20), tmp_path / "split", data=data, progress=False)
    a, b = load_checkpoint(tmp_path / "full/checkpoint.pt"), load_checkpoint(tmp_path / "split/checkpoint.pt")
    assert a["step"] == b["step"] == 20
    assert states_equal(a["model"], b["model"]) and states_equal(a["ema"], b["ema"])
    assert states_equal(full.model.state_dict(), resumed.model.state_dict())
    assert [r["step"] for r in read_log(tmp_path / "split/log.jsonl")] == [5, 10, 15, 20]


@pytest.mark.slow  # three 40-step trainings in subprocesses
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """A real SIGKILL after the first checkpoint, then the same command again, against one straight run."""
    args = [sys.executable, "-m", "ddlib", "train", "--data", "synthetic:train", "--preset", "test", "--steps", "40",
            "--batch-size", "8", "--lr", "1e-3", "--warmup", "5", "--checkpoint-every", "10", "--log-every", "2",
            "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(args + ["--out", str(tmp_path / "straight")], check=True, cwd=REPO, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(r["step"] >= 14 for r in read_log(out / "log.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 10 <= killed_at < 40, "the kill must land mid-run, after a checkpoint"
    done = subprocess.run(args + ["--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(tmp_path / "straight/checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["step"] == b["step"] == 40
    assert states_equal(a["model"], b["model"]) and states_equal(a["ema"], b["ema"])
    # the log of the resumed run has no duplicated steps from the killed attempt
    steps = [r["step"] for r in read_log(out / "log.jsonl")]
    assert steps == list(range(2, 41, 2))


def test_checkpoint_loads_with_weights_only_and_sample_model(tmp_path):
    data = synthetic_dataset(32, image_size=32)
    train(TrainConfig(**TINY, steps=10), tmp_path, data=data, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 10 and state["kind"] == "unet"
    trained = load_trained(tmp_path)
    assert trained.step == 10 and not trained.model.training and trained.schedule.name == "linear"
    assert (tmp_path / "config.json").exists()


def test_resume_with_another_config_is_refused(tmp_path):
    data = synthetic_dataset(32, image_size=32)
    train(TrainConfig(**TINY, steps=10), tmp_path, data=data, progress=False)
    with pytest.raises(DDLibError) as info:
        train(TrainConfig(**{**TINY, "lr": 5e-4}, steps=20), tmp_path, data=data, progress=False)
    assert "different config (lr: 0.001 -> 0.0005)" in str(info.value)


def test_a_signal_during_a_checkpoint_write_waits_for_the_whole_file(tmp_path, monkeypatch):
    """SIGTERM in the middle of torch.save: raised there, it tore torch's zip writer, whose RuntimeError replaced
    it (CI: a traceback and exit 1 instead of "interrupted"). Held, the checkpoint is completed, then the signal
    reaches the handler that was in place, and that handler is back."""
    from ddlib.errors import Interrupted, raise_interrupted

    real_save = torch.save

    def save_with_a_signal_inside(obj, f):
        signal.raise_signal(signal.SIGTERM)  # delivered here if nothing holds it
        return real_save(obj, f)

    monkeypatch.setattr(torch, "save", save_with_a_signal_inside)
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        with pytest.raises(Interrupted) as err:
            save_checkpoint({"step": 7, "w": torch.arange(3.0)}, tmp_path / "c.pt")
        assert err.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is raise_interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["step"] == 7 and torch.equal(back["w"], torch.arange(3.0))


def test_corrupt_and_missing_checkpoints_are_clear_errors(tmp_path):
    path = save_checkpoint({"step": 1, "x": torch.ones(1000)}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DDLibError, match="corrupt or not a ddlib checkpoint"):
        load_checkpoint(path)
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(DDLibError, match="corrupt"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(DDLibError, match="not a ddlib-checkpoint-v1 file"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(DDLibError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(DDLibError, match=r"train first \(python -m ddlib train --out .*never\)"):
        load_trained(tmp_path / "never")  # a run folder not made yet: the hint names that folder


def test_bad_training_options():
    with pytest.raises(DDLibError, match="unknown precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(DDLibError, match="unknown training option"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(DDLibError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)



BAD_LOOP_VALUES = [
    (dict(steps=0), "steps must be >= 1"), (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(lr=0.0), "lr must be > 0"), (dict(warmup_steps=-1), "warmup_steps must be >= 0"),
    (dict(grad_clip=-0.5), r"grad_clip \(0 disables clipping\) must be >= 0"),
    (dict(ema_decay=1.0), "ema_decay must lie in"), (dict(ema_decay=-0.1), "ema_decay must lie in"),
    (dict(precision="fp8"), "unknown precision"), (dict(log_every=0), "log_every must be >= 1"),
    (dict(checkpoint_every=0), "checkpoint_every must be >= 1"),
]


@pytest.mark.parametrize("bad, words", BAD_LOOP_VALUES)
@pytest.mark.parametrize("cls", [TrainConfig, VAETrainConfig], ids=["unet", "vae"])
def test_both_training_configs_refuse_the_same_bad_loop_values(cls, bad, words):
    with pytest.raises(DDLibError, match=words):
        cls(**bad)


def test_both_training_configs_share_the_loop_fields_and_the_resumable_ones():
    loop = [f.name for f in dataclasses.fields(LoopConfig)]
    assert loop == ["steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "ema_decay", "hflip",
                    "seed", "precision", "checkpoint_every", "log_every"]
    for cfg in (TrainConfig(), VAETrainConfig()):
        assert isinstance(cfg, LoopConfig) and list(cfg.to_dict())[-len(loop):] == loop  # config.json: the loop last
        assert set(cfg.to_dict()) - set(cfg.identity()) == {"steps", "checkpoint_every", "log_every"}
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DDLibError, match="unknown training option"):
        VAETrainConfig.from_dict({"stepz": 3})
    # what the run's checkpoint must match, as the two classes wrote it before they shared the loop
    assert config_hash(TrainConfig().identity()) == "6763d2345ab6bb51"
    assert config_hash(VAETrainConfig().identity()) == "a9e6f5caee3ca37a"

@pytest.mark.slow
def test_cifar10_cpu_run_lowers_the_loss(tmp_path):
    """The issue's CPU run: CIFAR-10 from ../shared/data, a small preset, a few hundred steps."""
    from ddlib import data

    if data._find_named("cifar10", "train", None) is None:
        pytest.skip("no local copy of cifar10 (../shared/data or DDLIB_DATA_DIR)")
    cmd = [sys.executable, "-m", "ddlib", "train", "--data", "cifar10:train", "--data-limit", "4096", "--preset", "tiny",
           "--steps", "300", "--batch-size", "32", "--lr", "5e-4", "--warmup", "20", "--log-every", "25",
           "--checkpoint-every", "100", "--out", str(tmp_path), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    log = read_log(tmp_path / "log.jsonl")
    print(f"CIFAR-10 tiny preset: loss {log[0]['loss']:.4f} (steps 1-25) -> {log[-1]['loss']:.4f} (steps 276-300)")
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 300


def test_channels_last_changes_rounding_not_the_algorithm(tmp_path):
    """Channels-last (the CPU default, ddlib.device.fast_memory_format) computes the same loss and gradients;
    training follows the same trajectory up to rounding (which AdamW's normalised steps amplify a little)."""
    from ddlib.device import fast_memory_format
    from ddlib.train import diffusion_loss, fit

    assert fast_memory_format("cpu") == torch.channels_last
    torch.manual_seed(0)
    model = unet_from_preset("test").train()
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([1, 10, 100, 999])
    grads = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.zero_grad()
        model.to(memory_format=fmt)
        torch.manual_seed(1)  # same dropout mask
        out = model(x.contiguous(memory_format=fmt), t)
        out.square().mean().backward()
        grads[fmt] = (out.detach().clone(), [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(grads[torch.channels_last][0], grads[torch.contiguous_format][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads[torch.channels_last][1], grads[torch.contiguous_format][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)

    cfg = TrainConfig(steps=10, **TINY)
    data = synthetic_dataset(32)
    losses = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        res = fit(cfg.make_model(data), diffusion_loss(cfg.make_schedule()), data, cfg, cfg.identity(),
                  tmp_path / str(fmt), device="cpu", progress=False, memory_format=fmt)
        losses[fmt] = [r["loss"] for r in read_log(res.out_dir / "log.jsonl")]
    assert losses[torch.channels_last] == pytest.approx(losses[torch.contiguous_format], rel=0.02)


def test_memory_format_override(monkeypatch):
    from ddlib.device import fast_memory_format

    monkeypatch.setenv("DDLIB_MEMORY_FORMAT", "contiguous")
    assert fast_memory_format("cpu") == torch.contiguous_format
    monkeypatch.setenv("DDLIB_MEMORY_FORMAT", "channels_last")
    assert fast_memory_format("cpu") == torch.channels_last
    monkeypatch.setenv("DDLIB_MEMORY_FORMAT", "nhwc")
    with pytest.raises(DDLibError, match="channels_last, contiguous"):
        fast_memory_format("cpu")
