"""The exact toy lab's mixture: ε* against autograd and Monte Carlo, measures against closed forms, and the
library's samplers and guidance wrapper running on the exact model unchanged."""

import math

import pytest
import torch
from scipy import special

from ddlib.errors import DDLibError
from ddlib.guidance import GuidedModel
from ddlib.mixture import (ExactEps, MLPConfig, MLPTraining, MixtureMLP, energy_distance, entropy, kl_divergence,
                           mean_distance, nll, ring_mixture, sample_entropy, train_mlp, class_mass)
from ddlib.samplers import ddpm_sample
from ddlib.schedules import make_schedule


@pytest.fixture(scope="module")
def mix():
    return ring_mixture()


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is fastest, also on a shared machine
    yield
    torch.set_num_threads(before)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("abar", [1.0, 0.7, 0.05, 0.0])
@pytest.mark.parametrize("y", [None, 1, 3])  # 3 = the null class: unconditional
def test_score_is_the_gradient_of_the_log_density(mix, abar, y):
    x = (torch.randn(64, 2, generator=gen(0), dtype=torch.float64) * 1.2).requires_grad_(True)
    logp = mix.log_prob(x, abar, None if y is None else torch.full((64,), y))
    (grad,) = torch.autograd.grad(logp.sum(), x)
    got = mix.score(x.detach(), abar, None if y is None else torch.full((64,), y))
    assert torch.allclose(got, grad, atol=1e-10, rtol=1e-9)
    eps = mix.eps_star(x.detach(), abar, y)
    assert torch.allclose(eps, -math.sqrt(1 - abar) * grad, atol=1e-10)


@pytest.mark.parametrize("y", [None, 0])
def test_eps_star_is_the_monte_carlo_posterior_mean_of_the_noise(mix, y):
    """E[ε | x_t] by self-normalised importance sampling over x_0 ~ p(x_0 [| c]), and q_t(x_t) by plain averaging."""
    abar = 0.5
    x0, _ = mix.sample(400_000, gen(1), label=y)
    x_t = torch.tensor([[0.3, -0.2], [1.1, 0.4], [-0.6, 0.9]], dtype=torch.float64)
    for x in x_t:
        eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)  # (N, 2): the ε that maps each x_0 to x
        logw = -0.5 * (eps**2).sum(1)  # log N(x; √ᾱ x_0, (1 − ᾱ) I) up to a constant
        w = torch.softmax(logw, 0)
        mc = (w[:, None] * eps).sum(0)
        exact = mix.eps_star(x[None], abar, y)[0]
        assert torch.allclose(mc, exact, atol=0.01), (mc, exact)
        dens = torch.exp(logw).mean() / (2 * math.pi * (1 - abar))
        assert float(dens.log()) == pytest.approx(float(mix.log_prob(x[None], abar, y)), abs=0.01)


def test_samples_have_the_mixture_moments(mix):
    pi, mu, sig, _ = mix.tensors()
    mean = (pi[:, None] * mu).sum(0)
    cov = (pi[:, None, None] * (sig + mu[:, :, None] * mu[:, None, :])).sum(0) - torch.outer(mean, mean)
    x, y = mix.sample(200_000, gen(2))
    assert torch.allclose(x.mean(0), mean, atol=0.01) and torch.allclose(torch.cov(x.T), cov, atol=0.01)
    _, _, _, cls = mix.tensors()
    freq = torch.bincount(y, minlength=3).double() / len(y)
    assert torch.allclose(freq, torch.stack([pi[cls == c].sum() for c in range(3)]), atol=0.005)


def test_class_posterior_is_bayes_rule(mix):
    x = torch.randn(50, 2, generator=gen(3), dtype=torch.float64)
    pi, _, _, cls = mix.tensors()
    for abar in (1.0, 0.3):
        post = mix.class_posterior(x, abar)
        joint = torch.stack([pi[cls == c].sum().log() + mix.log_prob(x, abar, torch.full((50,), c)) for c in range(3)], 1)
        assert torch.allclose(post, torch.softmax(joint, 1), atol=1e-12)
        assert torch.allclose(post.sum(1), torch.ones(50, dtype=torch.float64))


def test_exact_model_has_the_library_signature_and_guidance_wraps_it(mix):
    s = make_schedule("linear", 100, beta_start=1e-3, beta_end=0.2)
    model = ExactEps(mix, s)
    x, t = torch.randn(8, 2, generator=gen(4), dtype=torch.float64), torch.full((8,), 40)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    abar = float(s.alphas_cumprod[40])
    assert torch.allclose(model(x, t), mix.eps_star(x, abar)) and torch.equal(model(x, t), model(x, t, torch.full((8,), 3)))
    cond, uncond = mix.eps_star(x, abar, y), mix.eps_star(x, abar)
    assert torch.allclose(GuidedModel(model, 1.0)(x, t, y), cond)
    assert torch.allclose(GuidedModel(model, 0.0)(x, t, y), uncond)
    assert torch.allclose(GuidedModel(model, 3.0)(x, t, y), uncond + 3.0 * (cond - uncond))  # ε̃ = ε_u + s(ε_c − ε_u)
    assert model(x.float(), t).dtype == torch.float32


def test_ddpm_with_the_exact_model_reproduces_the_mixture(mix):
    """With ε* the only error is the sampler's; DDPM's 1000 small steps leave none resolvable at n = 1000 (with
    T = 300 and β ≤ 0.06 the NLL already resolves the Gaussian-step error: 1.02 [0.97, 1.07] against H = 1.116)."""
    s = make_schedule("linear", 1000)
    x = ddpm_sample(ExactEps(mix, s), s, (1000, 2), generator=gen(5), progress=False, dtype=torch.float64)
    ref, _ = mix.sample(1000, gen(6))
    ed = energy_distance(x, ref)
    assert ed.lo <= 0.0, ed  # no difference resolved
    assert nll(x, mix).covers(entropy(mix).value)


def rice_mean(m: float, sigma: float) -> float:
    """E|Z| for Z ~ N(m, σ² I₂): the Rice distribution's mean σ√(π/2) L_{1/2}(−m²/2σ²)."""
    v = -m * m / (2 * sigma * sigma)
    laguerre = math.exp(v / 2) * ((1 - v) * special.i0(-v / 2) - v * special.i1(-v / 2))
    return sigma * math.sqrt(math.pi / 2) * laguerre


def test_energy_distance_and_diversity_against_closed_forms():
    n, shift = 4000, 0.6
    x = torch.randn(n, 2, generator=gen(7), dtype=torch.float64)
    y = torch.randn(n, 2, generator=gen(8), dtype=torch.float64) + torch.tensor([shift, 0.0], dtype=torch.float64)
    # X − Y ~ N(−m, 2I), X − X' ~ N(0, 2I): D² = 2 E|X−Y| − 2 E|X−X'|
    expected = 2 * rice_mean(shift, math.sqrt(2)) - 2 * rice_mean(0.0, math.sqrt(2))
    ed = energy_distance(x, y)
    assert ed.covers(expected) and ed.lo > 0, (ed, expected)
    assert energy_distance(x, torch.randn(n, 2, generator=gen(9), dtype=torch.float64)).lo <= 0.0
    assert mean_distance(x).covers(math.sqrt(math.pi))  # E|X − X'| = √π for N(0, I₂)
    h = sample_entropy(x)
    assert abs(h.value - (1 + math.log(2 * math.pi))) < 0.1  # H(N(0, I₂)) = 1 + log 2π


def test_class_mass_and_kl(mix):
    x, _ = mix.sample(2000, gen(10), label=2)
    cm = class_mass(x, mix, 2)
    assert cm.value > 0.8 and cm.hi <= 1.0 + 1e-9
    assert abs(kl_divergence(x, mix, 2).value) < 0.1  # exact samples: KL ≈ 0 up to the estimator's small bias
    shifted = x + 0.3
    assert kl_divergence(shifted, mix, 2).lo > 0.3


def test_mlp_trains_reproducibly(mix):
    s = make_schedule("linear", 100, beta_start=1e-3, beta_end=0.2)
    cfg = MLPConfig(num_classes=3, width=32, depth=2, num_train_timesteps=100)
    a, b = MixtureMLP(cfg), MixtureMLP(cfg)
    la = train_mlp(a, mix, s, MLPTraining(steps=150, batch_size=128, lr=3e-3))
    lb = train_mlp(b, mix, s, MLPTraining(steps=150, batch_size=128, lr=3e-3))
    assert la == lb
    assert sum(la[-20:]) / 20 < 0.8 * sum(la[:20]) / 20
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 50)
    assert a(x, t).shape == (5, 2) and a(x, t).dtype == torch.float64
    assert torch.equal(a(x, t), a(x, t, torch.full((5,), 3)))  # None is the null class
    assert GuidedModel(a, 2.0)(x, t, torch.zeros(5, dtype=torch.long)).shape == (5, 2)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda m: m.sample(3, label=5), "class 5 out of range"),
        (lambda m: type(m)(weights=(1.0,), means=((0.0, 0.0),), covs=(((1.0, 2.0), (2.0, 1.0)),), classes=(0,)),
         "positive-definite"),
        (lambda m: energy_distance(torch.zeros(5, 2), torch.zeros(5, 2), blocks=10), "cannot make 10 blocks"),
    ],
)
def test_bad_input_is_one_clear_line(mix, call, words):
    with pytest.raises(DDLibError) as info:
        call(mix)
    assert words in str(info.value) and "\n" not in str(info.value)
