"""Notebook 04's per-t loss: ‖ε − ε_θ(x_t, t)‖² at fixed t on held-out images, checked with stand-in models whose
loss is known in closed form (an oracle → 0, a zero model → E‖ε‖² = 1, x_t/√(1 − ᾱ_t) → SNR(t)·mean(x₀²)), and the
η-choice / schedule-ranking wiring of :func:`ddlib.lab.experiments.schedule_samplers` with stand-in scores."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ddlib.lab import experiments as E
from ddlib.schedules import make_schedule

T = 50


class Oracle(nn.Module):
    """Returns the true ε: (x_t − √ᾱ_t x₀)/√(1 − ᾱ_t), knowing x₀ (batches arrive in order)."""

    def __init__(self, schedule, x0, batch):
        super().__init__()
        self.s, self.x0, self.batch, self.calls = schedule, x0, batch, 0

    def forward(self, x_t, t):
        n_batches = math.ceil(len(self.x0) / self.batch)
        a = (self.calls % n_batches) * self.batch
        self.calls += 1
        x0 = self.x0[a:a + len(x_t)]
        abar = self.s.alphas_cumprod[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


class Zero(nn.Module):
    def forward(self, x_t, t):
        return torch.zeros_like(x_t)


class Scaled(nn.Module):
    """x_t / √(1 − ᾱ_t): its loss is SNR(t) · mean(x₀²) exactly when x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε."""

    def __init__(self, schedule):
        super().__init__()
        self.s = schedule

    def forward(self, x_t, t):
        abar = self.s.alphas_cumprod[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return x_t / (1 - abar).sqrt()


def _data(n=24, shape=(3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((n, *shape), generator=g, dtype=torch.float64) * 2 - 1
    return x0, E.heldout_noise((n, *shape), seed=100)


def test_t_grid_is_even_and_includes_both_ends():
    assert E.t_grid(1000, 20)[0] == 0 and E.t_grid(1000, 20)[-1] == 999 and len(E.t_grid(1000, 20)) == 20
    assert E.t_grid(40, 6) == [0, 8, 16, 23, 31, 39]
    assert E.t_grid(5, 20) == [0, 1, 2, 3, 4]  # more points than steps: every t once


def test_heldout_noise_is_per_image_so_a_prefix_is_a_smaller_set():
    a, b = E.heldout_noise((6, 3, 4, 4), seed=7), E.heldout_noise((3, 3, 4, 4), seed=7)
    assert torch.equal(a[:3], b)
    assert torch.equal(a[1], torch.randn((3, 4, 4), generator=torch.Generator().manual_seed(8)))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_a_model_that_returns_epsilon_has_zero_loss(kind):
    s = make_schedule(kind, T)
    x0, eps = _data()
    ts = E.t_grid(T, 6)
    losses = E.loss_per_t(Oracle(s, x0, 10), s, x0, eps, ts, batch_size=10)
    assert losses.shape == (len(ts), len(x0)) and losses.dtype == torch.float64
    assert float(losses.max()) < 1e-18


def test_a_model_that_returns_zero_has_loss_e_eps_squared_one():
    s = make_schedule("linear", T)
    x0, eps = _data(n=64, shape=(3, 16, 16))
    losses = E.loss_per_t(Zero(), s, x0, eps, [0, 25, 49], batch_size=16)
    D, n = 3 * 16 * 16, 64
    # each image's loss is the mean of D squared N(0, 1) draws: mean 1, variance 2/D; over n images 2/(nD)
    tol = 5 * math.sqrt(2 / (n * D))
    assert abs(float(losses.mean()) - 1.0) < tol
    summ = E.loss_per_t_summary(losses, [0, 25, 49], s)
    half = summ["hi"][0] - summ["mean"][0]  # 1.96 s/√n with s ≈ √(2/D): the spread of mean(ε²) over images
    assert 0.7 < half / (1.96 * math.sqrt(2 / D) / math.sqrt(n)) < 1.3
    assert summ["mean"][0] == summ["mean"][1] == summ["mean"][2]  # the same ε at every t


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_x_t_is_built_with_sqrt_alpha_bar(kind):
    """ε − x_t/√(1−ᾱ) = −√ᾱ x₀/√(1−ᾱ): loss = SNR(t)·mean(x₀²) per image (with ᾱ instead of √ᾱ it would be
    ᾱ²/(1−ᾱ)·mean(x₀²), and the noise would not cancel)."""
    s = make_schedule(kind, T)
    x0, eps = _data()
    ts = [0, 10, 25, 49]
    losses = E.loss_per_t(Scaled(s), s, x0, eps, ts, batch_size=7)
    want = torch.stack([s.snr[t] * (x0 ** 2).flatten(1).mean(1) for t in ts])
    torch.testing.assert_close(losses, want, rtol=1e-9, atol=0)


def test_summary_intervals_and_the_uniform_t_mean():
    losses = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    s = make_schedule("linear", 10)
    r = E.loss_per_t_summary(losses, [0, 9], s)
    assert r["mean"] == [2.5, 1.0]
    half = 1.96 * math.sqrt(5 / 3) / 2  # sample sd of (1, 2, 3, 4) is √(5/3), n = 4
    assert r["lo"][0] == pytest.approx(2.5 - half) and r["hi"][0] == pytest.approx(2.5 + half)
    # per image over t: (0.5, 1, 2.5, 3), mean 1.75
    assert r["uniform_t_mean"] == pytest.approx(1.75)
    sd = torch.tensor([0.5, 1, 2.5, 3]).std().item()
    assert r["uniform_t_hi"] - r["uniform_t_mean"] == pytest.approx(1.96 * sd / 2)
    assert r["log10_snr"][0] == pytest.approx(math.log10(float(s.snr[0])))
    assert r["n_images"] == 4


class _Ctx(SimpleNamespace):
    def cached(self, kind, key, fn):
        self.keys.append((kind, key))
        return fn()


def test_schedule_loss_per_t_uses_the_same_images_and_eps_for_every_schedule():
    """Two 'models' with different schedules that return 0: each image's loss is mean(ε²), so equal per-t means
    across schedules and across t say the same held-out images got the same ε; x_t/√(1−ᾱ) checks the images."""
    runs = {}
    for kind in ("linear", "cosine"):
        s = make_schedule(kind, T)
        runs[kind] = SimpleNamespace(key=kind, config=SimpleNamespace(num_train_timesteps=T),
                                     load=lambda device, s=s: SimpleNamespace(model=Zero(), schedule=s))
    ctx = _Ctx(device="cpu", hardware="test", keys=[])
    res = E.schedule_loss_per_t(ctx, runs, heldout="synthetic:test", n_images=6, t_points=4, batch_size=4)
    assert res["linear"]["mean"] == res["cosine"]["mean"]
    assert len(set(res["linear"]["mean"])) == 1 and res["linear"]["t"] == [0, 16, 33, 49]
    assert [k for k, _ in ctx.keys] == ["loss_per_t", "loss_per_t"]
    assert ctx.keys[0][1]["run"] == "linear" and ctx.keys[0][1]["n_images"] == 6


def test_loss_findings_call_a_difference_only_where_intervals_do_not_overlap():
    s = make_schedule("linear", 10)
    base = {"t": [0, 9], "log10_snr": [0, 0], "uniform_t_mean": 0.5, "uniform_t_lo": 0.4, "uniform_t_hi": 0.6,
            "n_images": 8}
    hard_low = {**base, "mean": [0.9, 0.01], "lo": [0.8, 0.0], "hi": [1.0, 0.02]}
    overlap = {**base, "mean": [0.5, 0.4], "lo": [0.3, 0.2], "hi": [0.7, 0.6]}
    hard_high = {**base, "mean": [0.01, 0.9], "lo": [0.0, 0.8], "hi": [0.02, 1.0]}
    lines = E.loss_findings({"a": hard_low, "b": overlap, "c": hard_high}, {"a": s, "b": s, "c": s})
    assert "higher at low noise" in lines[0] and "not resolved" in lines[1] and "near pure noise" in lines[2]
    # linear T = 10, β up to 0.02: ᾱ_9 ≈ 0.9 > 0.01, so no measured t counts as near pure noise
    assert "none of the measured t" in lines[0]
    s2 = make_schedule("linear", 10, beta_start=0.5, beta_end=0.9)  # ᾱ_0 = 0.5, ᾱ_9 ≪ 0.01
    line = E.loss_findings({"a": hard_low}, {"a": s2})[0]
    assert "(1 of 2) the mean loss is 0.01, over the rest 0.9" in line


def test_schedule_samplers_picks_the_resolved_eta_else_the_default_and_scores_ddpm_at_its_own_n(monkeypatch):
    """Stand-in scores: linear's η = 1 is far better (resolved), cosine's two η are close (not resolved → default
    η = 0). Every sample set uses the same seed and batch (paired by image index, and 02's sweep cells are reused);
    DDPM is scored at ddpm_n with the floor at ddpm_n."""
    fids = {("linear", "ddim", 0.0): 300.0, ("linear", "ddim", 1.0): 200.0, ("cosine", "ddim", 0.0): 250.0,
            ("cosine", "ddim", 1.0): 249.0, ("linear", "ddpm", None): 230.0, ("cosine", "ddpm", None): 210.0}
    calls, floors = [], []

    def scored(ctx, run, *, reference, reference_count, n, sampler, num_steps=None, eta=None, batch_size, seed, clip):
        calls.append(dict(run=run.key, n=n, sampler=sampler, num_steps=num_steps, eta=eta, batch_size=batch_size,
                          seed=seed, clip=clip))
        f = fids[(run.key, sampler, eta if sampler == "ddim" else None)]
        return {"fid": f, "fid_lo": f - 1, "fid_hi": f + 1, "kid": 0.1, "kid_lo": 0.0, "kid_hi": 0.2, "kid_std": 0.01,
                "features": f"{run.key}-{sampler}-{eta}-{n}", "n_samples": n, "wall_s": 1.0, "sample_s": 1.0}

    def real_floor(ctx, dataset, n, **kw):
        floors.append(n)
        return {"fid": 50.0 + n, "fid_lo": 40.0, "fid_hi": 60.0, "kid": 0.01, "n_samples": n}

    def rank_rows(ctx, rows, labels, reference, count, **kw):  # stand-in: resolved when the FIDs differ by > 10
        lead = min(rows, key=lambda r: r["fid"])
        ok = all(r is lead or r["fid"] - lead["fid"] > 10 for r in rows)
        for r, lab in zip(rows, labels):
            r["fid_vs_lowest"] = "lowest" if r is lead else ("worse" if r["fid"] - lead["fid"] > 10 else "not resolved")
        lead["fid_ranking"] = f"lead {labels[rows.index(lead)]} resolved={ok}"
        lead["fid_lead_resolved"] = ok
        return list(rows)

    monkeypatch.setattr(E, "scored", scored)
    monkeypatch.setattr(E, "real_floor", real_floor)
    monkeypatch.setattr(E, "rank_rows", rank_rows)
    monkeypatch.setattr(E, "schedule_columns", lambda name, run: {"schedule": name})

    class Ctx:
        def reference_label(self, reference, count):
            return reference

        def row(self, *, wall_s, n_samples, reference, **values):
            return {**values, "wall_s": wall_s, "n_samples": n_samples, "reference": reference}

    runs = {k: SimpleNamespace(key=k, wall_s=1.0, config=SimpleNamespace(num_train_timesteps=T))
            for k in ("linear", "cosine")}
    out = E.schedule_samplers(Ctx(), runs, n=64, ddim_steps=100, ddpm_n=32, reference="ref", reference_count=None,
                              batch_size=64, clip=True, real_dataset="real", default_eta=0.0)
    best = {r["schedule"]: r for r in out["best"]}
    assert best["linear"]["eta"] == 1.0 and "resolved" in best["linear"]["chosen_from"]
    assert best["cosine"]["eta"] == 0.0 and "stated default" in best["cosine"]["chosen_from"]
    assert [(r["schedule"], r["eta"]) for r in out["ddim"]] == [("linear", 0.0), ("linear", 1.0), ("cosine", 0.0),
                                                                 ("cosine", 1.0)]
    assert {c["seed"] for c in calls} == {0} and {c["batch_size"] for c in calls} == {64}
    assert all(c["clip"] for c in calls)
    ddim_calls = [c for c in calls if c["sampler"] == "ddim"]
    assert all(c["n"] == 64 and c["num_steps"] == 100 and isinstance(c["eta"], float) for c in ddim_calls)
    assert [c["n"] for c in calls if c["sampler"] == "ddpm"] == [32, 32]
    assert sorted(floors) == [32, 64]
    assert {r["floor_n"] for r in out["ddpm"]} == {32} and {r["floor_n"] for r in out["ddim"] + out["best"]} == {64}
    assert out["sentences"]["ddpm"] == "lead cosine resolved=True"
    assert out["sentences"]["best"].startswith("lead linear (η=1)")
    assert set(out["sentences"]["ddim"]) == {0.0, 1.0}
