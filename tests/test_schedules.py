"""Schedules against closed forms computed independently in plain Python floats."""

import math

import pytest
import torch

from ddlib.errors import DDLibError
from ddlib.schedules import SCHEDULES, extract, make_schedule


def py_cumprod(xs):
    out, acc = [], 1.0
    for x in xs:
        acc *= x
        out.append(acc)
    return out


def test_linear_matches_closed_form():
    T, b0, b1 = 1000, 1e-4, 0.02
    s = make_schedule("linear", T, beta_start=b0, beta_end=b1)
    betas = [b0 + k * (b1 - b0) / (T - 1) for k in range(T)]
    abar = py_cumprod([1 - b for b in betas])
    assert s.betas.dtype == torch.float64 and s.alphas_cumprod.shape == (T,)
    assert max(abs(a - b) for a, b in zip(s.betas.tolist(), betas)) < 1e-15
    assert max(abs(a - b) for a, b in zip(s.alphas_cumprod.tolist(), abar)) < 1e-12
    # the literature's value for DDPM's linear schedule: ᾱ_T ≈ 4.04e-5
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)


def test_linear_beta_start_is_a_parameter():
    s = make_schedule("linear", 1000, beta_start=2e-4)
    assert s.betas[0].item() == pytest.approx(2e-4) and s.betas[-1].item() == pytest.approx(0.02)


def test_cosine_matches_nichol_dhariwal():
    T, sv = 1000, 0.008
    f = [math.cos((k / T + sv) / (1 + sv) * math.pi / 2) ** 2 for k in range(T + 1)]
    # without the cap, ᾱ_t = f(t+1)/f(0) exactly (eq. 17)
    s = make_schedule("cosine", T, s=sv, max_beta=1.0)
    assert max(abs(a - f[k + 1] / f[0]) for k, a in enumerate(s.alphas_cumprod.tolist()[:-1])) < 1e-12
    # with the default cap β ≤ 0.999, only the last steps change
    capped = make_schedule("cosine", T)
    betas = [min(1 - f[k + 1] / f[k], 0.999) for k in range(T)]
    assert max(abs(a - b) for a, b in zip(capped.betas.tolist(), betas)) < 1e-12
    assert capped.betas.max().item() == pytest.approx(0.999)


def test_seed_cosine_is_the_seed_formula_read_literally():
    # β_t = 1 − cos²(π/2·t/T) / (cos²(π/2·(t−1)/T) + ε) for t = 1…T, at 0-based index t − 1 (the seed's §V.C)
    T, eps = 1000, 1e-4
    c = [math.cos(math.pi / 2 * t / T) ** 2 for t in range(T + 1)]
    c[T] = 0.0  # cos(π/2) = 0; math.cos returns 6e-17
    betas = [1 - c[t] / (c[t - 1] + eps) for t in range(1, T + 1)]
    s = make_schedule("seed-cosine", T, max_beta=1.0)
    assert s.params["eps"] == eps
    assert max(abs(a - b) for a, b in zip(s.betas.tolist(), betas)) < 1e-12
    assert max(abs(a - b) for a, b in zip(s.alphas_cumprod.tolist(), py_cumprod([1 - b for b in betas]))) < 1e-12
    # without the clip the last step destroys all signal: β_T = 1, ᾱ_T = 0 (zero terminal SNR)
    assert s.betas[-1].item() == 1.0 and s.alphas_cumprod[-1].item() == 0.0 and s.snr[-1].item() == 0.0
    # the first step: β_1 = 1 − cos²(π/(2T)) / (1 + ε) ≈ ε + π²/(4T²)
    assert s.betas[0].item() == pytest.approx(eps + math.pi ** 2 / (4 * T ** 2), rel=1e-3)
    # the default clip at 0.999 changes only the last step
    clipped = make_schedule("seed-cosine", T)
    assert clipped.betas[-1].item() == 0.999 and torch.equal(clipped.betas[:-1], s.betas[:-1])
    # ε compounds: ᾱ ends far below the unadjusted cos²(π/2·t/T) and below the ε-floored reading
    assert clipped.alphas_cumprod[-2].item() < 1e-10 < c[T - 1]


def test_seed_cosine_floored_matches_its_formula():
    T, eps = 1000, 1e-4
    s = make_schedule("seed-cosine-floored", T, eps=eps)
    expected = [(1 - eps) * math.cos(math.pi / 2 * (k + 1) / T) ** 2 + eps for k in range(T)]
    assert max(abs(a - b) for a, b in zip(s.alphas_cumprod.tolist(), expected)) < 1e-12
    assert s.alphas_cumprod[-1].item() == pytest.approx(eps)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_alpha_bar_strictly_decreasing_and_in_unit_interval(kind):
    s = make_schedule(kind, 1000)
    a = s.alphas_cumprod
    assert bool((a[1:] < a[:-1]).all())
    assert 0 < a[-1].item() < a[0].item() < 1


def test_snr_and_posterior_closed_forms():
    s = make_schedule("linear", 50, beta_start=1e-3, beta_end=0.2)
    abar = py_cumprod([1 - b for b in s.betas.tolist()])
    for t in (0, 7, 49):
        assert s.snr[t].item() == pytest.approx(abar[t] / (1 - abar[t]), rel=1e-12)
        prev = abar[t - 1] if t > 0 else 1.0
        beta = s.betas[t].item()
        assert s.posterior_variance[t].item() == pytest.approx((1 - prev) / (1 - abar[t]) * beta, rel=1e-12, abs=1e-300)
    assert s.posterior_variance[0].item() == 0.0  # ᾱ_{-1} = 1: the last step is deterministic
    assert s.alpha_bar(-1).item() == 1.0 and s.alpha_bar(3).item() == pytest.approx(abar[3], rel=1e-12)


def test_add_noise_closed_form_and_t0():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    x_t = s.add_noise(x0, noise, t)
    abar = py_cumprod([1 - b for b in s.betas.tolist()])
    for i, ti in enumerate(t.tolist()):
        expected = math.sqrt(abar[ti]) * x0[i] + math.sqrt(1 - abar[ti]) * noise[i]
        assert torch.allclose(x_t[i], expected, atol=1e-12)
    # at t = 0 only √β_0 = 1% of noise is mixed in
    assert (x_t[0] - x0[0]).abs().max().item() < 0.05
    assert x_t.dtype == torch.float64
    assert s.add_noise(x0.float(), noise.float(), t).dtype == torch.float32


def test_predict_x0_inverts_add_noise():
    s = make_schedule("cosine", 1000)
    x0 = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 600, 998])
    assert torch.allclose(s.predict_x0(eps, t, s.add_noise(x0, eps, t)), x0, atol=1e-9)


def test_extract_broadcasts():
    a = torch.arange(10, dtype=torch.float64)
    out = extract(a, torch.tensor([3, 7]), (2, 3, 5, 5))
    assert out.shape == (2, 1, 1, 1) and out.flatten().tolist() == [3.0, 7.0]
    assert extract(a, torch.tensor([1]), (1, 4), dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: make_schedule("quadratic"), "unknown schedule 'quadratic'"),
        (lambda: make_schedule("linear", 0), "positive integer"),
        (lambda: make_schedule("linear", beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
        (lambda: make_schedule("cosine", beta_start=0.1), "takes s, max_beta"),
        (lambda: make_schedule("linear").add_noise(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([1000])), "0..999"),
    ],
)
def test_bad_input_is_one_clear_line(call, words):
    with pytest.raises(DDLibError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_schedule_moves_its_tables_once_per_device():
    s = make_schedule("linear", num_train_timesteps=10)
    assert s.to("cpu") is s
    moved = s.to("meta")  # a device without data: checks where the tables go, not their values
    assert moved is s.to("meta") and moved.to("cpu") is s  # made once, and the way back is the original
    assert all(getattr(moved, k).device.type == "meta" for k in ("betas", "alphas_cumprod", "posterior_variance",
                                                                  "posterior_mean_coef_x0", "_alpha_bar_padded"))
    assert moved.name == s.name and len(moved) == 10 and s.betas.device.type == "cpu"
