"""The ``pretrained`` profile, dry-run at toy size: a random small diffusers model saved to a folder, converted,
sampled with DDIM and DDPM and scored against a tiny synthetic reference, through the real notebook and pipeline.

The real run (online, a GPU) downloads google/ddpm-cifar10-32 and the original CIFAR-10; this one touches no network.
"""

from __future__ import annotations

import csv
import os

import pytest

from ddlib.lab import pipeline
from ddlib.lab.pretrained import published_fid

diffusers = pytest.importorskip("diffusers")


def test_pretrained_profile_runs_only_its_own_notebook():
    params = pipeline.load_profile("pretrained")
    nbs = pipeline.notebook_paths(pipeline.profile_notebooks_dir(params))
    assert [p.stem for p in nbs] == ["06_pretrained"]
    assert "06_pretrained" not in [p.stem for p in pipeline.notebook_paths()]  # smoke, quick, gpu, paper skip it
    assert params["ddim_steps"] == [10, 20, 50, 100] and params["reference"] == "original"


def test_published_values_are_song_et_al_table_1():
    """DDIM paper, Table 1, CIFAR-10: η = 0 at S = 10, 20, 50, 100; η = 1 (DDPM's β̃ variance) at S = 1000."""
    assert [published_fid(s, 0.0) for s in (10, 20, 50, 100)] == [13.36, 6.84, 4.67, 4.16]
    assert published_fid(1000, 1.0) == 4.73
    assert published_fid(7, 0.0) is None


@pytest.mark.slow
def test_pretrained_profile_dry_run(tmp_path, monkeypatch):
    import torch

    try:
        from ddlib.metrics import inception

        inception.resolve_weights()
    except Exception as err:  # pragma: no cover - the FID network is needed to score
        pytest.skip(f"FID weights unavailable: {err}")
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
        norm_num_groups=8)
    model.save_pretrained(tmp_path / "model")
    diffusers.DDPMScheduler(num_train_timesteps=20).save_pretrained(tmp_path / "model")
    monkeypatch.setenv("DDLIB_REPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = {"pretrained_repo": None, "pretrained_folder": str(tmp_path / "model"), "reference": "synthetic",
                 "synthetic_reference_count": 16, "ddim_steps": [5, 10], "ddim_samples": 6, "ddpm_samples": 4,
                 "sample_batch": 6, "grid_samples": 4, "device": "cpu", "torch_threads": 2}
    out = pipeline.run_report("pretrained", reports_dir=tmp_path / "reports", overrides=overrides, log=lambda m: None)
    assert (out / "STATUS").read_text().startswith("complete")
    with (out / "tables" / "pretrained_fid.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["sampler"], r["steps"], r["n_samples"]) for r in rows] == [("DDIM", "5", "6"), ("DDIM", "10", "6"), ("DDPM", "20", "4")]
    assert all(float(r["fid"]) > 0 for r in rows) and all(r["published_fid"] == "" for r in rows)  # T = 20: none quoted
    for fig in ("pretrained_samples", "pretrained_fid_vs_steps"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 0
    assert os.path.isfile(out / "notebooks" / "06_pretrained.ipynb")
