"""DDPM and DDIM against independent float64 references and known identities."""

import math

import numpy as np
import pytest
import torch

from ddlib.errors import DDLibError
from ddlib.samplers import ddim_sample, ddim_step, ddim_timesteps, ddim_update, ddpm_sample, ddpm_step, ddpm_update
from ddlib.schedules import make_schedule

T = 1000


@pytest.fixture(scope="module")
def sched():
    return make_schedule("linear", T)


def np_abar(s):
    return np.cumprod(1 - np.array(s.betas.tolist()))


def ref_ddpm(s, eps, t, x, z, variance):
    """DDPM Algorithm 2 in its ε form: x_{t-1} = (x_t − β_t/√(1−ᾱ_t) ε)/√α_t + σ_t z."""
    b = np.array(s.betas.tolist())
    abar = np_abar(s)
    prev = abar[t - 1] if t > 0 else 1.0
    var = (1 - prev) / (1 - abar[t]) * b[t] if variance == "fixed_small" else b[t]
    mean = (x - b[t] / math.sqrt(1 - abar[t]) * eps) / math.sqrt(1 - b[t])
    return mean + (math.sqrt(var) * z if t > 0 else 0.0)


def ref_ddim(s, eps, t, t_prev, x, z, eta):
    """DDIM eq. 12 with σ of eq. 16, written out directly."""
    abar = np_abar(s)
    a_t, a_p = abar[t], (abar[t_prev] if t_prev >= 0 else 1.0)
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    sigma = eta * math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)
    return math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - sigma**2) * eps + sigma * z


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("t", [0, 1, 37, 500, 999])
def test_ddpm_step_matches_reference(sched, variance, t):
    x, eps, z = rand(2, 3, 4, 4, seed=1), rand(2, 3, 4, 4, seed=2), rand(2, 3, 4, 4, seed=3)
    out = ddpm_step(sched, eps, torch.tensor([t, t]), x, noise=z, variance=variance)
    ref = ref_ddpm(sched, eps.numpy(), t, x.numpy(), z.numpy(), variance)
    assert np.abs(out.numpy() - ref).max() < 1e-6 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("t, t_prev", [(999, 979), (500, 250), (20, 0), (0, -1), (999, -1)])
def test_ddim_step_matches_reference(sched, eta, t, t_prev):
    x, eps, z = rand(2, 3, 4, 4, seed=4), rand(2, 3, 4, 4, seed=5), rand(2, 3, 4, 4, seed=6)
    out = ddim_step(sched, eps, t, t_prev, x, eta=eta, noise=z)
    ref = ref_ddim(sched, eps.numpy(), t, t_prev, x.numpy(), z.numpy(), eta)
    assert np.abs(out.numpy() - ref).max() < 1e-6 * max(1.0, np.abs(ref).max())


def test_ddim_eta1_all_steps_is_the_ddpm_posterior(sched):
    """σ² of DDIM with η = 1 and t_prev = t − 1 is β̃_t, and its mean is DDPM's: step by step, same noise."""
    x = rand(2, 3, 4, 4, seed=7)
    for t in range(T - 1, -1, -1):
        eps, z = rand(2, 3, 4, 4, seed=10 + t), rand(2, 3, 4, 4, seed=5000 + t)
        a = ddim_step(sched, eps, t, t - 1, x, eta=1.0, noise=z)
        b = ddpm_step(sched, eps, t, x, noise=z, variance="fixed_small")
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), t
        x = b


def ref_ddim_clipped(s, eps, t, t_prev, x, z, eta):
    """DDIM eq. 12 with x̂_0 clamped to [-1, 1] and ε̂ re-derived from it (GLIDE; diffusers' use_clipped_model_output)."""
    abar = np_abar(s)
    a_t, a_p = abar[t], (abar[t_prev] if t_prev >= 0 else 1.0)
    x0 = np.clip((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t), -1, 1)
    eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    sigma = eta * math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)
    return math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - sigma**2) * eps + sigma * z


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("t, t_prev", [(999, 979), (500, 250), (20, 0), (0, -1)])
def test_ddim_step_with_clip_rederives_eps(sched, eta, t, t_prev):
    x, eps, z = rand(2, 3, 4, 4, seed=4) * 3, rand(2, 3, 4, 4, seed=5), rand(2, 3, 4, 4, seed=6)
    assert sched.predict_x0(eps, torch.tensor([t]), x).abs().max() > 1  # the clamp is active
    out = ddim_step(sched, eps, t, t_prev, x, eta=eta, noise=z, clip=True)
    ref = ref_ddim_clipped(sched, eps.numpy(), t, t_prev, x.numpy(), z.numpy(), eta)
    assert np.abs(out.numpy() - ref).max() < 1e-6 * max(1.0, np.abs(ref).max())


def test_ddim_eta1_all_steps_is_the_ddpm_posterior_with_clipping(sched):
    """With clip=True, DDIM η = 1 (σ = √β̃_t) over all T steps is DDPM's μ̃_t(x_t, clip(x̂_0)) + √β̃_t z."""
    x = rand(2, 3, 4, 4, seed=7) * 2
    clamped = 0
    for t in range(T - 1, -1, -1):
        eps, z = rand(2, 3, 4, 4, seed=10 + t) * 2, rand(2, 3, 4, 4, seed=5000 + t)
        clamped += int((sched.predict_x0(eps, torch.tensor([t]), x).abs() > 1).any())
        a = ddim_step(sched, eps, t, t - 1, x, eta=1.0, noise=z, clip=True)
        b = ddpm_step(sched, eps, t, x, noise=z, variance="fixed_small", clip=True)
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9), t
        x = b
    assert clamped > T // 2  # the identity was tested where the clamp acts


def test_ddim_eta1_sampler_is_the_ddpm_sampler_with_clipping():
    """The loops too: same x_T and generator, all T steps, clip on; the network's x̂_0 often leaves [-1, 1]."""
    s = make_schedule("linear", 50, beta_start=1e-3, beta_end=0.2)

    def model(x, t):  # ε̂ that overshoots: x̂_0 = (x_t − √(1−ᾱ) ε̂)/√ᾱ lands outside [-1, 1] at most steps
        return -0.5 * x + torch.sin(3 * x) + 0.01 * t.to(x.dtype).reshape(-1, 1, 1, 1)

    x_T = rand(3, 2, 4, 4, seed=11)
    kw = dict(x_T=x_T, dtype=torch.float64, progress=False, clip=True)
    a = ddim_sample(model, s, x_T.shape, num_steps=50, eta=1.0, generator=torch.Generator().manual_seed(3), **kw)
    b = ddpm_sample(model, s, x_T.shape, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.allclose(a, b, atol=1e-9, rtol=1e-9)


def test_keeping_the_unclipped_eps_would_break_the_identity(sched):
    """Why ε̂ is re-derived: clip(x̂_0) with the raw ε̂ in the direction term is not DDPM's step."""
    t, x, eps, z = 500, rand(2, 3, 4, 4, seed=8) * 3, rand(2, 3, 4, 4, seed=9), rand(2, 3, 4, 4, seed=10)
    abar = np_abar(sched)
    a_t, a_p = abar[t], abar[t - 1]
    x0 = np.clip((x.numpy() - math.sqrt(1 - a_t) * eps.numpy()) / math.sqrt(a_t), -1, 1)
    sigma = math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
    raw_eps = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - sigma**2) * eps.numpy() + sigma * z.numpy()
    ddpm = ddpm_step(sched, eps, t, x, noise=z, clip=True).numpy()
    assert np.abs(raw_eps - ddpm).max() > 1e-2
    assert np.abs(ddim_step(sched, eps, t, t - 1, x, eta=1.0, noise=z, clip=True).numpy() - ddpm).max() < 1e-9


def test_ddpm_adds_no_noise_at_t0(sched):
    x, eps = rand(1, 3, 4, 4, seed=1), rand(1, 3, 4, 4, seed=2)
    a = ddpm_step(sched, eps, 0, x, noise=rand(1, 3, 4, 4, seed=3))
    b = ddpm_step(sched, eps, 0, x, noise=rand(1, 3, 4, 4, seed=4))
    assert torch.equal(a, b)
    # and the last step returns the predicted x0 itself
    assert torch.allclose(a, sched.predict_x0(eps, torch.tensor([0]), x), atol=1e-12)


def test_clip_clamps_predicted_x0(sched):
    x, eps = rand(1, 3, 4, 4, seed=1) * 10, rand(1, 3, 4, 4, seed=2)
    out = ddim_step(sched, eps, 10, -1, x, clip=True)  # t_prev = -1 returns x̂0 itself
    assert out.abs().max().item() <= 1.0
    assert ddim_step(sched, eps, 10, -1, x).abs().max().item() > 1.0


def test_ddim_timesteps_hand_computed():
    assert ddim_timesteps(1000, 10, "leading") == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert ddim_timesteps(1000, 10, "trailing") == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_timesteps(1000, 10, "linspace") == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert ddim_timesteps(10, 10, "leading") == list(range(9, -1, -1))
    assert ddim_timesteps(1000, 1, "trailing") == [999]
    for spacing in ("leading", "trailing", "linspace"):
        for S in (1, 3, 7, 50, 250, 999, 1000):
            ts = ddim_timesteps(1000, S, spacing)
            assert len(ts) == S and ts == sorted(ts, reverse=True) and 0 <= ts[-1] and ts[0] <= 999


class GaussianScore(torch.nn.Module):
    """The exact ε-predictor for data x0 ~ N(μ, σ_d² I): ε* = √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ σ_d² + 1 − ᾱ)."""

    def __init__(self, s, mu, sd):
        super().__init__()
        self.s, self.mu, self.sd = s, mu, sd

    def forward(self, x, t):
        a = self.s.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.sd**2 + 1 - a)


def gaussian_moments(s, pairs, eta, mu, sd):
    """Mean and std after sampling N(μ, σ_d²) with its exact ε: each DDIM step is then an affine map
    x ↦ c·x + d plus independent noise of variance σ², so the moments propagate in closed form."""
    abar = np_abar(s)
    m, v = 0.0, 1.0  # x_T ~ N(0, 1)
    for t, tp in pairs:
        a, ap = abar[t], (abar[tp] if tp >= 0 else 1.0)
        k = math.sqrt(1 - a) / (a * sd**2 + 1 - a)  # ε = k·(x − √a μ)
        sig = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        dirc = math.sqrt(1 - ap - sig**2)
        c = math.sqrt(ap) * (1 - math.sqrt(1 - a) * k) / math.sqrt(a) + dirc * k
        d = math.sqrt(ap) * math.sqrt(1 - a) * k * mu - dirc * k * math.sqrt(a) * mu
        m, v = c * m + d, c * c * v + sig**2
    return m, math.sqrt(v)


@pytest.mark.parametrize(
    "sampler, num_steps, eta, spacing",
    [("ddpm", T, 1.0, "leading"), ("ddim", T, 0.0, "leading"), ("ddim", 50, 0.0, "leading"),
     ("ddim", 50, 1.0, "leading"), ("ddim", 10, 0.0, "trailing"), ("ddim", 20, 0.5, "linspace")],
)
def test_samplers_match_gaussian_closed_form(sched, sampler, num_steps, eta, spacing):
    """Sampling N(0.3, 0.2²) with its exact score: the sample moments equal the closed-form ones.

    With all T steps both samplers nearly recover the data distribution (std 0.2); with few DDIM
    steps the closed form shows the discretisation's shrinkage (e.g. std 0.176 at 50 steps)."""
    mu, sd = 0.3, 0.2
    model = GaussianScore(sched, mu, sd)
    kw = dict(generator=torch.Generator().manual_seed(0), progress=False, dtype=torch.float64)
    shape = (4000, 1, 2, 2)
    if sampler == "ddpm":
        x = ddpm_sample(model, sched, shape, **kw)
        pairs = [(t, t - 1) for t in range(T - 1, -1, -1)]
    else:
        x = ddim_sample(model, sched, shape, num_steps=num_steps, eta=eta, spacing=spacing, **kw)
        ts = ddim_timesteps(T, num_steps, spacing)
        pairs = list(zip(ts, ts[1:] + [-1]))
    m, s = gaussian_moments(sched, pairs, eta, mu, sd)
    if num_steps == T:
        assert (m, s) == pytest.approx((mu, sd), abs=5e-3)  # DDPM 0.1963, DDIM-1000 0.1985
    assert x.mean().item() == pytest.approx(m, abs=0.006)
    assert x.std().item() == pytest.approx(s, abs=0.005)


def test_ddim_eta0_is_deterministic_and_generator_reproducible(sched):
    model = GaussianScore(sched, 0.0, 0.5)
    x_T = rand(3, 1, 4, 4, seed=9)
    a = ddim_sample(model, sched, x_T.shape, num_steps=20, x_T=x_T, progress=False, dtype=torch.float64)
    b = ddim_sample(model, sched, x_T.shape, num_steps=20, x_T=x_T, progress=False, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, b)
    run = lambda seed: ddpm_sample(model, make_schedule("linear", 50), (2, 1, 2, 2), progress=False,
                                   generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_callback_sees_every_step_and_kwargs_pass_through(sched):
    seen, calls = [], []

    def model(x, t, y=None, scale=None):
        calls.append((y, scale))
        return torch.zeros_like(x)

    ddim_sample(model, sched, (2, 1, 2, 2), num_steps=5, progress=False, callback=seen.append, y="label", scale=3)
    assert [d["t"] for d in seen] == [800, 600, 400, 200, 0] and seen[-1]["t_prev"] == -1
    assert set(seen[0]) == {"i", "t", "t_prev", "x", "x0"}
    assert all(c == ("label", 3) for c in calls) and len(calls) == 5


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda s: ddim_timesteps(1000, 0), "num_steps must be an integer in 1..1000"),
        (lambda s: ddim_timesteps(1000, 1001), "num_steps must be an integer in 1..1000"),
        (lambda s: ddim_timesteps(1000, 10, "log"), "unknown DDIM spacing"),
        (lambda s: ddim_step(s, torch.zeros(1, 1), 5, 4, torch.zeros(1, 1), eta=-0.1), "eta must be >= 0"),
        (lambda s: ddim_sample(lambda x, t: x, s, (1, 1), eta=-1, progress=False), "eta must be >= 0"),
        (lambda s: ddim_step(s, torch.zeros(1, 1), 5, 5, torch.zeros(1, 1)), "t_prev < t"),
        (lambda s: ddpm_step(s, torch.zeros(1, 1), 5, torch.zeros(1, 1), variance="learned"), "unknown DDPM variance"),
        (lambda s: ddpm_sample(lambda x, t: x, s, (1, 1), x_T=torch.zeros(2, 1), progress=False), "x_T has shape"),
    ],
)
def test_bad_input_is_one_clear_line(sched, call, words):
    with pytest.raises(DDLibError) as info:
        call(sched)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_updates_take_python_int_timesteps_like_tensors():
    # The sampling loops pass ints (no GPU values are read back); the result must equal the tensor path.
    s = make_schedule("linear", num_train_timesteps=20)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    noise = torch.randn(3, 2, 4, 4, generator=g)
    as_tensor = lambda v: torch.full((3,), v, dtype=torch.long)  # noqa: E731
    for eta in (0.0, 1.0):
        a = ddim_update(s, eps, 12, 7, x, eta=eta, noise=noise)[0]
        b = ddim_update(s, eps, as_tensor(12), as_tensor(7), x, eta=eta, noise=noise)[0]
        assert torch.equal(a, b)
    assert torch.equal(ddpm_update(s, eps, 5, x, noise=noise)[0], ddpm_update(s, eps, as_tensor(5), x, noise=noise)[0])
    # at t = 0 no noise is added, and none is drawn: the generator's state is untouched
    g0 = torch.Generator().manual_seed(1)
    before = g0.get_state()
    ddpm_update(s, eps, 0, x, generator=g0)
    assert torch.equal(g0.get_state(), before)
    with pytest.raises(DDLibError, match="backwards"):
        ddim_update(s, eps, 7, 12, x)
