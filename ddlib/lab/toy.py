"""The exact toy lab of notebook 00: sampling 2-D mixtures with the library's samplers, scoring and plotting.

Every sampler call goes through :mod:`ddlib.samplers` and :class:`ddlib.guidance.GuidedModel` unchanged; the
model is :class:`ddlib.mixture.ExactEps` (no model error) or a trained :class:`ddlib.mixture.MixtureMLP`.
Rows carry the notebook's provenance columns (:meth:`ddlib.lab.context.Context.row`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import torch

from ddlib.guidance import GuidedModel
from ddlib.lab.figures import _plt, save_figure
from ddlib.mixture import GaussianMixture, class_mass, energy_distance, kl_divergence, nll, sample_entropy
from ddlib.samplers import ddim_sample, ddpm_sample

CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def sample(model, schedule, n: int, *, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
           spacing: str = "leading", seed: int = 0, label: int | None = None, scale: float | None = None):
    """``n`` points from ``model`` with the library's samplers, and the seconds it took.

    x_T and the per-step noise come from ``seed`` (the same x_T for every setting with the same seed and n);
    ``label`` with ``scale`` samples class ``label`` through :class:`GuidedModel` at guidance scale ``scale``.
    """
    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    kw = {}
    net = model
    if label is not None:
        net = GuidedModel(model, 1.0 if scale is None else scale)
        kw["y"] = torch.full((n,), label, dtype=torch.long)
    common = dict(generator=gen, progress=False, x_T=x_T, dtype=torch.float64, **kw)
    t0 = time.perf_counter()
    with torch.no_grad():
        if sampler == "ddpm":
            x = ddpm_sample(net, schedule, (n, 2), **common)
        else:
            x = ddim_sample(net, schedule, (n, 2), num_steps=num_steps, eta=eta, spacing=spacing, **common)
    return x, time.perf_counter() - t0


def score(ctx, x: torch.Tensor, mixture: GaussianMixture, reference: torch.Tensor, entropy: float, *, wall_s: float,
          blocks: int = 5, label: int | None = None, **values) -> dict:
    """A table row of measures, each with a 95 % interval: the mean NLL under the true density and its excess over
    the entropy H (0 for exact samples), KL(q ‖ p) (exact NLL minus a nearest-neighbour entropy: slightly biased,
    compare with the exact-samples row), the energy distance to exact samples (0 when equal), and for a requested
    class its mass p(c | x₀) and diversity (the samples' entropy)."""
    nl = nll(x, mixture, label)
    ed = energy_distance(x, reference, blocks=blocks)
    kl = kl_divergence(x, mixture, label, blocks=blocks)
    row = dict(values, nll=round(nl.value, 4), nll_ci=f"[{nl.lo:.3f}, {nl.hi:.3f}]",
               nll_minus_h=round(nl.value - entropy, 4),
               nll_minus_h_ci=f"[{nl.lo - entropy:.3f}, {nl.hi - entropy:.3f}]", kl=round(kl.value, 4), kl_ci=f"[{kl.lo:.3f}, {kl.hi:.3f}]",
               energy=round(ed.value, 5), energy_ci=f"[{ed.lo:.4f}, {ed.hi:.4f}]", energy_lo=ed.lo, energy_hi=ed.hi,
               nll_lo=nl.lo - entropy, nll_hi=nl.hi - entropy, kl_lo=kl.lo, kl_hi=kl.hi)
    if label is not None:
        cm, dv = class_mass(x, mixture, label), sample_entropy(x, blocks=blocks)
        row.update(class_mass=round(cm.value, 4), class_mass_ci=f"[{cm.lo:.4f}, {cm.hi:.4f}]", mass_lo=cm.lo,
                   mass_hi=cm.hi, entropy=round(dv.value, 4), entropy_ci=f"[{dv.lo:.3f}, {dv.hi:.3f}]",
                   ent_lo=dv.lo, ent_hi=dv.hi)
    return ctx.row(wall_s=wall_s, n_samples=len(x), reference=f"{len(reference)} exact samples", **row)


def exact_row(ctx, mixture: GaussianMixture, reference: torch.Tensor, entropy: float, *, n: int, seed: int,
              blocks: int = 5, label: int | None = None, **values) -> dict:
    """The same measures on ``n`` fresh exact samples: the floor every sampler row is read against."""
    x, _ = mixture.sample(n, torch.Generator().manual_seed(seed), label=label)
    return score(ctx, x, mixture, reference, entropy, wall_s=0.0, blocks=blocks, label=label, **values)


def sampler_rows(ctx, model, schedule, mixture, reference, entropy, *, n: int, ddim_steps: Sequence[int],
                 etas: Sequence[float], eta_steps: int, seed: int, blocks: int, model_name: str,
                 spacing: str = "leading") -> tuple[list[dict], dict]:
    """DDPM with all T steps, DDIM η = 0 over ``ddim_steps``, DDIM with each η at ``eta_steps``; rows and samples."""
    T = len(schedule)
    rows, samples = [], {}
    settings = [("ddpm", T, 1.0)] + [("ddim", S, 0.0) for S in ddim_steps if S <= T]
    settings += [("ddim", eta_steps, e) for e in etas if e != 0.0 or eta_steps not in ddim_steps]
    for sampler, S, eta in settings:
        x, wall = sample(model, schedule, n, sampler=sampler, num_steps=S, eta=eta, spacing=spacing, seed=seed)
        name = f"DDPM-{T}" if sampler == "ddpm" else f"DDIM-{S} η={eta:g}"
        samples[name] = x
        rows.append(score(ctx, x, mixture, reference, entropy, wall_s=wall, blocks=blocks, model=model_name,
                          sampler=name, steps=S, eta=eta if sampler == "ddim" else None))
    return rows, samples


def schedule_rows(ctx, schedules: dict, mixture, reference, entropy, *, n: int, steps: Sequence[int], seed: int,
                  blocks: int, spacings: Sequence[str] = ("leading",)) -> list[dict]:
    """DDIM η = 0 at each small S for each schedule (exact ε*): the discretisation error of the schedule alone."""
    from ddlib.mixture import ExactEps

    rows = []
    for name, s in schedules.items():
        model = ExactEps(mixture, s)
        for spacing in spacings:
            for S in steps:
                x, wall = sample(model, s, n, num_steps=S, spacing=spacing, seed=seed)
                rows.append(score(ctx, x, mixture, reference, entropy, wall_s=wall, blocks=blocks, schedule=name,
                                  spacing=spacing, sampler=f"DDIM-{S} η=0", steps=S))
    return rows


def guidance_rows(ctx, model, schedule, mixture, *, label: int, scales: Sequence[float], n: int, num_steps: int,
                  seed: int, blocks: int, model_name: str, entropy: float) -> tuple[list[dict], dict]:
    """Class ``label`` sampled at each guidance scale s (DDIM η = 0), scored against exact class samples."""
    ref, _ = mixture.sample(n, torch.Generator().manual_seed(seed + 99), label=label)
    rows, samples = [], {}
    for s in scales:
        x, wall = sample(model, schedule, n, num_steps=num_steps, seed=seed, label=label, scale=s)
        samples[f"s = {s:g}"] = x
        rows.append(score(ctx, x, mixture, ref, entropy, wall_s=wall, blocks=blocks, label=label, model=model_name,
                          scale=s, sampler=f"DDIM-{num_steps} η=0"))
    return rows, samples


# --------------------------------------------------------------------------------------------------
# figures


def _density_background(ax, mixture: GaussianMixture, lim: float, label: int | None = None) -> None:
    g = torch.linspace(-lim, lim, 160, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    logp = mixture.log_prob(torch.stack([X.flatten(), Y.flatten()], 1), 1.0, label).reshape(X.shape)
    ax.contour(X.numpy(), Y.numpy(), logp.numpy(), levels=[-6, -4, -2, 0], colors="0.6", linewidths=0.6)


def scatter_panels(panels: dict, mixture: GaussianMixture, path: str | Path, *, label: int | None = None,
                   lim: float = 2.0, ncols: int | None = None, title: str | None = None, max_points: int = 1500) -> Path:
    """One scatter per named point set, coloured by the true most likely class p(c | x₀), over contours of log p."""
    plt = _plt()
    names = list(panels)
    ncols = ncols or min(len(names), 5)
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        x = panels[name][:max_points].to(torch.float64)
        cls = mixture.class_posterior(x).argmax(1)
        _density_background(ax, mixture, lim, label)
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, c=[CLASS_COLOURS[int(c) % len(CLASS_COLOURS)] for c in cls])
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[], aspect="equal")
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_with_intervals(series: dict, path: str | Path, *, x_key: str, y_key: str, lo_key: str, hi_key: str,
                        xlabel: str, ylabel: str, title: str, logx: bool = False, hline: float | None = None,
                        hline_label: str | None = None, ax_count: int = 1, second: dict | None = None) -> Path:
    """Named series of rows as points with 95 % interval bars; ``second`` (same keys) draws a second panel."""
    plt = _plt()
    specs = [dict(y_key=y_key, lo_key=lo_key, hi_key=hi_key, ylabel=ylabel, hline=hline, hline_label=hline_label)]
    if second:
        specs.append(second)
    fig, axes = plt.subplots(1, len(specs), figsize=(5.2 * len(specs), 3.6), squeeze=False)
    for ax, sp in zip(axes.flat, specs):
        for name, rows in series.items():
            xs = [r[x_key] for r in rows]
            ys = [r[sp["y_key"]] for r in rows]
            err = [[max(0.0, y - r[sp["lo_key"]]) for y, r in zip(ys, rows)],  # ≥ 0: y may be rounded
                   [max(0.0, r[sp["hi_key"]] - y) for y, r in zip(ys, rows)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=3, label=name)
        if sp.get("hline") is not None:
            ax.axhline(sp["hline"], color="k", ls="--", lw=0.8, label=sp.get("hline_label"))
        if logx:
            ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel=sp["ylabel"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_losses(losses: Sequence[float], path: str | Path, title: str, window: int = 50) -> Path:
    """Per-step training loss (faint) and its moving average."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    t = torch.tensor(losses, dtype=torch.float64)
    ax.plot(t.numpy(), alpha=0.25, lw=0.6)
    if len(t) >= window:
        ax.plot(range(window - 1, len(t)), t.unfold(0, window, 1).mean(1).numpy(), lw=1.5)
    ax.set(xlabel="step", ylabel="‖ε − ε_θ‖² (L_simple)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


@torch.no_grad()
def loss_per_t(model, schedule, mixture: GaussianMixture, ts: Sequence[int], *, n: int, seed: int) -> list[dict]:
    """E‖ε − ε_θ(x_t, t)‖² at each t over ``n`` fresh (x_0, ε) pairs, with a t interval: with the exact ε* this is
    the irreducible part of L_simple at t (ε is not a function of x_t), the floor any network's loss sits on."""
    from ddlib.mixture import mean_estimate

    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in ts:
        x0, _ = mixture.sample(n, gen)
        eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        tt = torch.full((n,), int(t))
        err = ((eps - model(schedule.add_noise(x0, eps, tt), tt).to(torch.float64)) ** 2).sum(1)  # (n,)
        est = mean_estimate(err)
        out.append({"t": int(t), "t_frac": (int(t) + 1) / len(schedule), "loss": est.value, "lo": est.lo, "hi": est.hi,
                    "alpha_bar": float(schedule.alphas_cumprod[int(t)])})
    return out
