"""Notebook 03's lab helpers: proportion intervals, the paired consistency comparison, the guidance floor, the
equal-values bicubic baseline, the per-class grid across scales, and their figures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ddlib.generate import generate
from ddlib.lab import experiments as E
from ddlib.lab import figures
from ddlib.lab.sweep import guidance_sweep
from ddlib.latent import bicubic_reconstruction
from ddlib.metrics.classifier import SmallCNN, predict
from ddlib.schedules import make_schedule
from ddlib.unet import unet_from_preset


# ---- Wilson interval ------------------------------------------------------------------------------


def _wilson_by_roots(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval as the roots in p of (k/n − p)² − z² p(1 − p)/n = 0 (solved by numpy, not by formula)."""
    ph = k / n
    # (1 + z²/n) p² − (2 p̂ + z²/n) p + p̂² = 0
    roots = np.sort(np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph]).real)
    return max(0.0, roots[0]), min(1.0, roots[1])


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (8, 10), (10, 10), (37, 128), (1, 1)])
def test_wilson_interval_is_the_score_test_inversion(k, n):
    p, lo, hi = E.wilson_interval(k, n)
    rlo, rhi = _wilson_by_roots(k, n)
    assert p == k / n and lo == pytest.approx(rlo, abs=1e-9) and hi == pytest.approx(rhi, abs=1e-9)
    assert 0 <= lo <= p <= hi <= 1


def test_wilson_interval_matches_a_published_value():
    # 8 of 10: the Wilson 95 % interval is [0.4902, 0.9433] (e.g. Newcombe 1998, Table I style computations)
    _, lo, hi = E.wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    with pytest.raises(ValueError):
        E.wilson_interval(3, 2)


# ---- paired comparison of consistencies ----------------------------------------------------------


def test_paired_difference_of_identical_outcomes_is_zero_and_not_resolved():
    a = [True, False, True, True, False] * 8
    d = E.paired_proportion_difference(a, a)
    assert d["delta"] == 0 and d["lo"] == 0 and d["hi"] == 0 and not d["resolved"] and d["n"] == 40


def test_paired_difference_estimate_and_resolution():
    a = [False] * 50
    b = [True] * 50
    d = E.paired_proportion_difference(a, b)
    assert d["delta"] == 1 and d["resolved"] and d["lo"] == pytest.approx(1) and d["hi"] == pytest.approx(1)
    d = E.paired_proportion_difference(b, a)
    assert d["delta"] == -1 and d["resolved"]


def test_paired_difference_interval_has_the_width_of_the_normal_approximation():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.4
    b = np.where(rng.random(2000) < 0.8, a, rng.random(2000) < 0.6)  # mostly the same outcome: strongly paired
    diff = b.astype(float) - a.astype(float)
    d = E.paired_proportion_difference(a.tolist(), b.tolist())
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert d["delta"] == pytest.approx(diff.mean())
    assert d["hi"] - d["lo"] == pytest.approx(2 * 1.96 * se, rel=0.25)
    with pytest.raises(ValueError):
        E.paired_proportion_difference([True], [True, False])


# ---- the guidance sweep's per-sample outcomes and the table built on them --------------------------


def test_guidance_sweep_records_per_sample_correctness_in_index_order():
    torch.manual_seed(0)
    small = unet_from_preset("test", image_size=16, num_classes=4).eval()
    clf = SmallCNN(4, 3, 8).eval()
    seen = []
    recs = guidance_sweep(small, make_schedule("linear", 1000), [0.0, 2.0], 8, clf, num_steps=2,
                          metrics=lambda images: seen.append(images) or {})
    for r, images in zip(recs, seen):
        labels = torch.arange(8) % 4
        assert r["correct"] == (predict(clf, images) == labels).tolist()
        assert sum(r["correct"]) / 8 == pytest.approx(r["class_consistency"])


class FakeCtx:
    hardware = "test"

    def __init__(self, records):
        self.records = records

    def cached(self, name, key, fn):
        assert name == "guidance_sweep" and key["per_sample"] == 1
        return {"records": self.records}

    def row(self, **kw):
        return dict(kw)


def _record(scale, correct):
    return {"scale": scale, "n": len(correct), "class_consistency": sum(correct) / len(correct), "correct": correct,
            "sample_seconds": 1.0, "fid": 100.0 + scale, "fid_lo": 90.0, "fid_hi": 110.0, "kid": 0.1, "kid_lo": 0.05,
            "kid_hi": 0.15, "kid_std": 0.01, "features": None}


def test_guidance_table_carries_wilson_intervals_the_paired_comparison_and_the_floor():
    c0 = [True, False, False, False] * 10
    c3 = [True, True, True, False] * 10
    ctx = FakeCtx([_record(0.0, c0), _record(1.0, c0), _record(3.0, c3)])
    run = SimpleNamespace(key="k", config=SimpleNamespace(dataset="d"))
    info = {"val_accuracy": 0.9, "val_lo": 0.8, "val_hi": 0.95, "val_n": 100}
    floor = {"fid": 20.0, "fid_lo": 15.0, "fid_hi": 25.0, "kid": 0.0, "n_samples": 40, "dataset": "val, same classes"}
    rows = E.guidance_table(ctx, run, run, None, info, scales=[0.0, 1.0, 3.0], n=40, num_steps=5, reference="r",
                            reference_label="r", batch_size=8, classes=[0, 1], floor=floor)
    _, lo, hi = E.wilson_interval(10, 40)
    assert (rows[0]["class_consistency_lo"], rows[0]["class_consistency_hi"]) == (round(lo, 4), round(hi, 4))
    assert "consistency_comparison" not in rows[0]  # s = 0 is the baseline
    assert rows[1]["consistency_vs_lowest_scale"].endswith("not resolved")  # identical outcomes
    assert "+0.500" in rows[2]["consistency_comparison"] and rows[2]["consistency_comparison"].endswith("resolved at n = 40.")
    assert "not resolved" not in rows[2]["consistency_comparison"]
    assert all(r["floor_fid"] == 20.0 and r["floor_n"] == 40 and r["classifier_val_n"] == 100 for r in rows)
    text = E.guidance_summary(rows)
    assert any("Real-image floor at n = 40" in t for t in text) and any("s = 3 against s = 0" in t for t in text)
    assert any("100 real validation images" in t for t in text)


def test_guidance_floor_takes_n_held_out_images_of_the_same_classes(monkeypatch):
    monkeypatch.setattr(E, "score_interval", lambda ctx, images, reference: {"fid": 1.0, "n_samples": len(images),
                                                                              "images": images})
    labels = torch.tensor([0, 1, 2, 3] * 10)
    images = labels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).to(torch.uint8).clone()  # pixel value = label
    res = E.guidance_floor(None, images, labels, [1, 3], 12, reference="r", dataset="val")
    assert res["n_samples"] == 12 and set(res["images"].unique().tolist()) == {1, 3}
    assert len({tuple(x.flatten().tolist()) for x in res["images"]}) <= 2
    short = E.guidance_floor(None, images, labels, [1, 3], 30, reference="r", dataset="val")
    assert short["fid"] is None and short["reason"].startswith("n/a: only 20")


# ---- equal values per image ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [1, 192, 256, 1024, 4096, 3000])
def test_equal_values_side_is_the_closest_square_image(values):
    best = min(range(1, 200), key=lambda h: (abs(3 * h * h - values), h))
    assert E.equal_values_side(values, 3) == best
    assert E.equal_values_side(1024) == 18 and E.equal_values_side(256) == 9  # 972 and 243 values


def test_bicubic_to_size_at_h_over_f_is_the_factor_f_baseline():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    a, b = E.bicubic_to_size(images, 8), bicubic_reconstruction(images, 4)
    assert (a.int() - b.int()).abs().max() <= 1
    assert (E.bicubic_to_size(images, 32).int() - images.int()).abs().max() <= 1  # full size: the identity


def test_values_sentence_states_the_ratios():
    rows = [{"method": "real images (no model)"},
            {"method": "VAE test (f=4)", "latent_shape": "4×16×16", "values_per_image": 1024},
            {"method": "bicubic ↓4 ↑4 (baseline)", "values_per_image": 768},
            {"method": "bicubic via 18×18 (≈ the latent's values)", "values_per_image": 972}]
    s = E.values_sentence(rows)
    assert "keeps 1024 values" in s and "768 (latent/baseline = 1.33)" in s and "972 (latent/baseline = 1.05)" in s


# ---- the same x_T at every scale ------------------------------------------------------------------


class LabelBlind(nn.Module):
    """A class-conditional ε-model that ignores its label: every guidance scale gives the same ε̃."""

    def __init__(self):
        super().__init__()
        self.net = unet_from_preset("test", image_size=8, num_classes=3).eval()
        self.config = self.net.config

    def forward(self, x, t, y=None):
        return self.net(x, t, torch.zeros_like(y))


def test_per_class_samples_at_each_scale_start_from_the_same_noise():
    # per_class_samples calls generate with the same labels, seed and batch at every s: with a model whose
    # conditional and unconditional predictions agree, the images must then agree exactly across scales
    torch.manual_seed(0)
    model = LabelBlind()
    labels = torch.tensor([0, 0, 2, 2])
    out = [generate(model, make_schedule("linear", 100), 4, num_steps=3, labels=labels, guidance=s, seed=5,
                    batch_size=4, progress=False)[0] for s in (0.0, 1.0, 3.0)]
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])


def test_per_class_scale_grid_asks_the_same_classes_seed_and_steps_at_every_scale(monkeypatch):
    calls = []
    monkeypatch.setattr(E, "per_class_samples", lambda ctx, ldm, vae, **kw: calls.append(kw) or [kw["scale"]])
    grid = E.per_class_scale_grid(None, None, None, classes=[0, 4], per_class=2, scales=[0, 1, 3.0], num_steps=7, seed=3)
    assert list(grid) == [0.0, 1.0, 3.0] and grid[3.0] == [3.0]
    assert all({k: v for k, v in c.items() if k != "scale"} == {"classes": [0, 4], "per_class": 2, "num_steps": 7,
                                                                 "seed": 3} for c in calls)


# ---- figures ----------------------------------------------------------------------------------------


def test_interval_plot_and_scale_grid_write_pngs(tmp_path):
    rows = [{"scale": s, "fid": 10 + s, "fid_lo": 9 + s, "fid_hi": 12 + s} for s in (0.0, 1.0, 3.0)]
    p = figures.plot_intervals(rows, "scale", "fid", tmp_path / "a.png", lo="fid_lo", hi="fid_hi",
                               bands=[("floor", 5.0, 4.0, 6.0), ("n/a floor", None, None, None)], lines=[("chance", 0.25)])
    assert p.is_file() and p.stat().st_size > 0
    img = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    q = figures.save_scale_grid({0.0: [img, img], 3.0: [img, img]}, tmp_path / "b.png", row_labels=["a", "b"])
    assert q.is_file() and q.stat().st_size > 0


def test_held_out_keeps_every_image_of_the_trained_classes_only():
    from ddlib.data import load_dataset

    full = load_dataset("synthetic:test", progress=False)
    held = E.held_out("synthetic:test", [1, 3])
    want = (full.labels == 1) | (full.labels == 3)
    assert set(held.labels.tolist()) == {1, 3} and len(held.images) == int(want.sum())
    assert torch.equal(held.images, full.images[want])
