"""Notebook 02's lab pieces: the old clipping convention's DDIM step, its sampling loop, the Pareto front, the
ablation's wiring, and the figure options (asymmetric intervals, the real-image floor)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ddlib.lab import experiments, figures
from ddlib.samplers import ddim_sample, ddim_step
from ddlib.schedules import make_schedule


def _abar(T: int, b0: float, b1: float) -> np.ndarray:
    """ᾱ of a linear β schedule, in numpy (independent of ddlib.schedules)."""
    return np.cumprod(1.0 - np.linspace(b0, b1, T, dtype=np.float64))


def test_raw_eps_step_is_the_hand_computation_in_float64():
    T = 20
    s, abar = make_schedule("linear", T, beta_start=0.01, beta_end=0.3), _abar(T, 0.01, 0.3)
    x_t = torch.tensor([[0.3, -2.5, 4.0, 0.0]], dtype=torch.float64)  # values chosen so that the clamp acts on some
    eps = torch.tensor([[1.0, 0.5, -0.7, 2.0]], dtype=torch.float64)
    for t, t_prev in ((15, 7), (7, 0), (3, -1)):
        a, ap = abar[t], (abar[t_prev] if t_prev >= 0 else 1.0)
        want = []
        for xv, ev in zip(x_t[0].tolist(), eps[0].tolist()):
            x0 = min(max((xv - math.sqrt(1 - a) * ev) / math.sqrt(a), -1.0), 1.0)
            want.append(math.sqrt(ap) * x0 + math.sqrt(1 - ap) * ev)
        got = experiments.ddim_step_raw_eps(s, eps, t, t_prev, x_t)
        assert got.dtype == torch.float64
        assert torch.allclose(got, torch.tensor([want], dtype=torch.float64), atol=1e-12, rtol=0)


def test_raw_eps_step_differs_from_the_library_only_where_the_clamp_acts():
    s = make_schedule("linear", 20, beta_start=0.01, beta_end=0.3)
    g = torch.Generator().manual_seed(0)
    x_t, eps = (torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    small = 0.01 * x_t  # x̂₀ well inside [-1, 1] at t = 2: no clamp, all three conventions agree
    for conv_b in (True, False):
        assert torch.allclose(experiments.ddim_step_raw_eps(s, 0.01 * eps, 2, 1, small),
                              ddim_step(s, 0.01 * eps, 2, 1, small, clip=conv_b), atol=1e-12)
    big = 5 * x_t  # the clamp acts: (c) differs from (b) and from (a)
    c = experiments.ddim_step_raw_eps(s, eps, 15, 5, big)
    assert not torch.allclose(c, ddim_step(s, eps, 15, 5, big, clip=True))
    assert not torch.allclose(c, ddim_step(s, eps, 15, 5, big, clip=False))


class _Shrink(nn.Module):
    """A stand-in ε-model with a UNet-like config: ε̂ = 0.9 x_t (x̂₀ then grows past 1, so the clamp acts)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(num_classes=None, in_channels=1, image_size=4)

    def forward(self, x, t):
        return 0.9 * x + 0 * self.p


def test_raw_eps_loop_uses_generates_per_image_seeds_and_batches_do_not_matter():
    from ddlib.data import to_uint8
    from ddlib.generate import initial_noise
    from ddlib.samplers import ddim_timesteps

    model, s = _Shrink(), make_schedule("linear", 30, beta_start=0.01, beta_end=0.3)
    got = experiments.sample_raw_eps(model, s, 5, num_steps=6, seed=3, batch_size=2)
    x = initial_noise((1, 4, 4), [3, 4, 5, 6, 7], "cpu")  # image i from seed + i, as ddlib.generate draws it
    ts = ddim_timesteps(30, 6)
    for t, tp in zip(ts, ts[1:] + [-1]):
        x = experiments.ddim_step_raw_eps(s, 0.9 * x, t, tp, x)
    assert torch.equal(got, to_uint8(x))
    assert torch.equal(got, experiments.sample_raw_eps(model, s, 5, num_steps=6, seed=3, batch_size=5))
    # same x_T as the library's clip=True sampler: the two differ only by the convention
    lib = ddim_sample(model, s, (5, 1, 4, 4), num_steps=6, clip=True, x_T=initial_noise((1, 4, 4), [3, 4, 5, 6, 7], "cpu"),
                      progress=False)
    assert not torch.equal(got, to_uint8(lib))


def test_pareto_front():
    pts = [(1.0, 10.0), (2.0, 8.0), (3.0, 9.0), (4.0, 5.0), (4.0, 6.0), (0.5, 12.0), (1.0, 10.0)]
    assert experiments.pareto_front(pts) == [True, True, False, True, False, True, True]


def test_plot_lines_draws_asymmetric_intervals_and_the_floor(tmp_path, monkeypatch):
    calls = {}
    import matplotlib.axes

    orig_err, orig_hline = matplotlib.axes.Axes.errorbar, matplotlib.axes.Axes.axhline

    def errorbar(self, x, y, yerr=None, **kw):
        calls.setdefault("yerr", []).append(yerr)
        return orig_err(self, x, y, yerr=yerr, **kw)

    def axhline(self, y=0, **kw):
        calls.setdefault("floor", []).append(y)
        return orig_hline(self, y, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", axhline)
    rows = [{"steps": 10, "fid": 100.0, "fid_lo": 90.0, "fid_hi": 130.0, "floor_fid": 40.0, "floor_fid_lo": 35.0,
             "floor_fid_hi": 50.0, "floor_n": 8},
            {"steps": 40, "fid": 80.0, "fid_lo": 75.0, "fid_hi": 81.0, "floor_fid": 40.0, "floor_fid_lo": 35.0,
             "floor_fid_hi": 50.0, "floor_n": 8}]
    p = figures.plot_lines(rows, "steps", "fid", tmp_path / "f.png", interval=("fid_lo", "fid_hi"), floor="floor_fid")
    assert p.is_file() and p.stat().st_size > 0
    assert calls["yerr"] == [[[10.0, 5.0], [30.0, 1.0]]]  # below, above: asymmetric
    assert calls["floor"] == [40.0]
    calls.clear()
    figures.plot_lines([{k: v for k, v in r.items() if not k.startswith("floor")} for r in rows], "steps", "fid",
                       tmp_path / "g.png", interval=("fid_lo", "fid_hi"), floor="floor_fid")
    assert "floor" not in calls  # rows without a floor draw none
    q = figures.plot_pareto([{**r, "setting": f"S={r['steps']}", "s": r["steps"] / 10, "pareto": True} for r in rows],
                            "s", "fid", tmp_path / "p.png", label="setting", interval=("fid_lo", "fid_hi"), floor="floor_fid")
    assert q.is_file() and q.stat().st_size > 0


class _FakeCtx:
    """Records what the lab asks of a Context; scores are made up, paired comparisons are the real code path's API."""

    profile, hardware = "unit", "test cpu"

    def __init__(self):
        self.sample_calls = []

    def row(self, *, wall_s, n_samples, reference, **values):
        return {**values, "profile": self.profile, "hardware": self.hardware, "wall_s": wall_s,
                "n_samples": n_samples, "reference": reference}

    def reference_label(self, reference, count):
        return f"{reference} ({count})"

    def samples(self, run, **kw):
        self.sample_calls.append(kw)
        return {"images": torch.full((kw["n"], 1, 2, 2), 10 if kw["clip"] else 20, dtype=torch.uint8), "sample_s": 1.0}

    def cached_images(self, kind, key, fn):
        self.raw_key = key
        return torch.full((key["n"], 1, 2, 2), 30, dtype=torch.uint8)

    def cached(self, kind, key, fn):
        return {"sample_s": 2.0}


def test_clip_ablation_reuses_the_sweeps_cells_and_ranks_within_each_s(monkeypatch):
    ctx = _FakeCtx()
    fids = {10: 1.0, 20: 3.0, 30: 2.0}  # image value → FID: (b) clip=True lowest, (c) raw ε̂ next, (a) none last
    monkeypatch.setattr(experiments, "score_interval", lambda c, images, ref, count: {
        "fid": fids[int(images[0, 0, 0, 0])], "fid_lo": 0.0, "fid_hi": 9.0, "kid": 0.1, "kid_lo": 0.0, "kid_hi": 0.2,
        "kid_std": 0.01, "features": f"f{int(images[0, 0, 0, 0])}", "n_samples": len(images)})
    ranked = []

    def fake_rank(c, rows, labels, reference, count):
        ranked.append(labels)
        low = min(rows, key=lambda r: r["fid"])
        for r in rows:
            r["fid_vs_lowest"] = "lowest" if r is low else "not resolved: +0 [-1, +1]"
        return rows

    monkeypatch.setattr(experiments, "rank_rows", fake_rank)
    rows = experiments.clip_ablation(ctx, SimpleNamespace(key="k", config=SimpleNamespace(dataset="d")), steps=[10, 40],
                                     n=8, reference="ref", reference_count=None, batch_size=4)
    assert [(r["steps"], r["convention"]) for r in rows] == [(S, c) for S in (10, 40)
                                                             for c in experiments.CLIP_CONVENTION_LABELS.values()]
    # (a) and (b) are the library's sample sets, with the sweep's key (η = 0, same n, batch, seed)
    assert ctx.sample_calls == [dict(n=8, sampler="ddim", num_steps=S, eta=0.0, seed=0, batch_size=4, clip=c)
                                for S in (10, 40) for c in (False, True)]
    assert ctx.raw_key["clip"] == "x0, raw eps" and ctx.raw_key["num_steps"] == 40
    assert len(ranked) == 2 and all(len(g) == 3 for g in ranked)  # one paired ranking per S
    assert [r["convention"] for r in rows if r["fid_vs_lowest"] == "lowest"] == ["(b) clip x̂₀, ε̂ re-derived"] * 2


def test_vs_cell_reads_b_against_a():
    from ddlib.metrics.uncertainty import Interval

    d = Interval("Δfid", -10.0, -15.0, -4.0, 3.0, 8, 0.95, 200)  # FID(A) − FID(B) = −10: B is higher by 10
    assert experiments._vs_cell(d, True) == "higher by 10 [4, 15]"
    d = Interval("Δfid", 10.0, 4.0, 15.0, 3.0, 8, 0.95, 200)
    assert experiments._vs_cell(d, True) == "lower by 10 [4, 15]"
    d = Interval("Δfid", 1.0, -2.0, 3.0, 1.0, 8, 0.95, 200)
    assert experiments._vs_cell(d, False) == "not resolved: -1 [-3, +2]"


def test_headline_says_rescored_only_when_n_differs():
    assert experiments.headline_scope(64, 64) == "at the sweep's n = 64"
    assert experiments.headline_scope(256, 64) == "rescored at n = 256 (the sweep used n = 64)"


def test_quality_vs_time_scores_ddpm_on_the_sweeps_seeds_and_marks_the_front(monkeypatch):
    from ddlib.metrics.uncertainty import Comparison, Interval

    ctx = _FakeCtx()
    asked = {}

    def fake_scored(c, run, *, reference, reference_count, **sample):
        asked.update(sample)
        return {"fid": 50.0, "fid_lo": 45.0, "fid_hi": 56.0, "kid": 0.1, "kid_lo": 0.0, "kid_hi": 0.2, "kid_std": 0.01,
                "features": "ddpm", "n_samples": sample["n"], "sample_s": 64.0, "wall_s": 70.0}

    deltas = {"a": (-30.0, -40.0, -20.0), "b": (-1.0, -5.0, 3.0)}  # FID(DDPM) − FID(DDIM)

    def fake_compare(c, a, b, labels, reference, count, metric="fid"):
        assert a["features"] == "ddpm"
        est, lo, hi = deltas[b["features"]]
        return Comparison(labels[0], labels[1], "fid", Interval("Δfid", est, lo, hi, 1.0, 8, 0.95, 200), True)

    monkeypatch.setattr(experiments, "scored", fake_scored)
    monkeypatch.setattr(experiments, "compare_rows", fake_compare)
    sweep = [{"steps": 10, "eta": 0.0, "fid": 80.0, "features": "a", "sample_s": 1.0, "n_samples": 8,
              "fid_vs_lowest": "worse", "fid_ranking": "x"},
             {"steps": 40, "eta": 1.0, "fid": 51.0, "features": "b", "sample_s": 4.0, "n_samples": 8}]
    run = SimpleNamespace(key="k", config=SimpleNamespace(dataset="d", num_train_timesteps=1000))
    rows = experiments.quality_vs_time(ctx, run, sweep, n=8, reference="ref", reference_count=None, batch_size=4,
                                       seed=0, clip=True)
    assert asked == dict(n=8, sampler="ddpm", batch_size=4, seed=0, clip=True)  # same seeds, n, batch, clip
    assert [r["setting"] for r in rows] == ["DDIM S=10, η=0", "DDIM S=40, η=1", "DDPM-1000"]
    assert [r["s_per_image"] for r in rows] == [0.125, 0.5, 8.0]
    assert [r["pareto"] for r in rows] == [True, True, True]  # each is faster or lower than every other
    assert rows[0]["fid_vs_ddpm"] == "higher by 30 [20, 40]" and rows[1]["fid_vs_ddpm"].startswith("not resolved")
    assert "fid_vs_lowest" not in rows[0] and sweep[0]["fid_vs_lowest"] == "worse"  # the sweep's rows are untouched


def test_ablation_sentences_come_from_the_rankings_and_paired_comparisons(monkeypatch):
    seen = []

    def fake_compare(c, a, b, labels, reference, count, metric="fid"):
        seen.append((a["steps"], b["steps"], a["convention"], labels))
        return SimpleNamespace(sentence=f"{labels[0]} vs {labels[1]}: generated")

    monkeypatch.setattr(experiments, "compare_rows", fake_compare)
    rows = [{"steps": S, "convention": c, "fid_vs_lowest": "lowest" if c.startswith("(b)") else "worse",
             "fid_ranking": f"lead sentence at {S}"} for S in (25, 100) for c in experiments.CLIP_CONVENTION_LABELS.values()]
    out = experiments.clip_ablation_sentences(None, rows, "ref", None)
    assert out[:2] == ["At S = 25: lead sentence at 25", "At S = 100: lead sentence at 100"]
    assert [(a, b, c) for a, b, c, _ in seen] == [(100, 25, c) for c in experiments.CLIP_CONVENTION_LABELS.values()]
    assert len(out) == 5 and all(s.endswith("generated") for s in out[2:])
    assert all(lab == (f"{c} at S=100", f"{c} at S=25") for _, _, c, lab in seen)  # both sides name the convention
