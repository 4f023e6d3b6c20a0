"""Batched generation: per-image seeds, labels, and the `sample` command's files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddlib.data import synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.generate import class_labels, generate
from ddlib.schedules import make_schedule
from ddlib.train import TrainConfig, train
from ddlib.unet import unet_from_preset

REPO = Path(__file__).resolve().parents[1]


def test_images_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    net = unet_from_preset("test").eval()
    s = make_schedule("linear", 100)
    a, _ = generate(net, s, 5, num_steps=5, batch_size=5, seed=3, progress=False)
    b, _ = generate(net, s, 5, num_steps=5, batch_size=2, seed=3, progress=False)
    assert a.dtype == torch.uint8 and a.shape == (5, 3, 32, 32)
    # the same images up to float rounding: batched convolutions may differ in the last bits
    assert (a.int() - b.int()).abs().max() <= 1 and (a != b).float().mean() < 0.01
    c, _ = generate(net, s, 5, num_steps=5, batch_size=5, seed=4, progress=False)
    assert not torch.equal(a, c)


def test_class_labels_and_errors():
    assert class_labels(5, 3).tolist() == [0, 1, 2, 0, 1]
    assert class_labels(2, 3, label=2).tolist() == [2, 2]
    with pytest.raises(DDLibError, match="out of range"):
        class_labels(2, 3, label=3)
    net = unet_from_preset("test").eval()
    with pytest.raises(DDLibError, match="unconditional"):
        generate(net, make_schedule("linear", 10), 2, label=1, progress=False)
    with pytest.raises(DDLibError, match="unknown sampler"):
        generate(net, make_schedule("linear", 10), 2, sampler="euler", progress=False)


def test_conditional_generation_with_guidance():
    net = unet_from_preset("test", num_classes=4).eval()
    images, labels = generate(net, make_schedule("linear", 50), 6, num_steps=4, guidance=2.0, progress=False)
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 1, 2, 3, 0, 1]
    ddpm, _ = generate(net, make_schedule("linear", 20), 2, sampler="ddpm", label=3, progress=False)
    assert ddpm.shape == (2, 3, 32, 32)


@pytest.mark.slow  # a real `python -m ddlib sample` process: 9 s
def test_sample_command_writes_grid_and_npz(tmp_path):
    cfg = TrainConfig(dataset="synthetic:train", preset="test", class_conditional=True, steps=4, batch_size=8,
                      log_every=2, checkpoint_every=4, num_train_timesteps=50)
    train(cfg, tmp_path / "run", data=synthetic_dataset(32), progress=False)
    out = tmp_path / "samples" / "s"
    done = subprocess.run([sys.executable, "-m", "ddlib", "sample", str(tmp_path / "run"), "--num", "6", "--steps", "5",
                           "--guidance", "2", "--out", str(out), "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    arrays = np.load(out.with_suffix(".npz"))
    assert arrays["images"].shape == (6, 32, 32, 3) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].tolist() == [0, 1, 2, 3, 0, 1]
    assert out.with_suffix(".png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "-m", "ddlib", "sample", str(tmp_path / "run"), "--guidance", "-1",
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "--guidance: must be >= 0" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
