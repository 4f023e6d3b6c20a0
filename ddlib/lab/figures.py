"""Figures for notebooks and the report: schedules, forward process, trajectories, curves, bars.

Every figure helper draws one figure, writes it as a PNG and returns the path (the notebooks show it
with :func:`show`), so a figure in a notebook and the file in ``reports/<profile>/figures/`` are
always the same picture. Matplotlib runs on the non-interactive Agg backend here; figures are closed
after saving so that a notebook never shows a figure twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from ddlib.files import atomic_open
from ddlib.lab.tables import format_cell, is_number

# --------------------------------------------------------------------------------------------------
# matplotlib plumbing


def _plt():
    import matplotlib

    if "inline" not in matplotlib.get_backend().lower():
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG (atomically: temporary file, then rename) and close it."""
    path = Path(path)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def show(path: str | Path, width: int | None = None) -> None:
    """Display a saved PNG in the notebook now, wherever the call stands in its cell (a bare expression would
    display only as a cell's last line); outside IPython, print the path."""
    try:
        from IPython import get_ipython
        from IPython.display import Image as IPImage, display
    except ImportError:  # pragma: no cover
        print(path)
        return
    if get_ipython() is None:
        print(path)
        return
    display(IPImage(filename=str(path), width=width))


def _hwc(img: torch.Tensor):
    """uint8 (C, H, W) → numpy (H, W[, C]) for imshow."""
    arr = img.permute(1, 2, 0).cpu().numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


# --------------------------------------------------------------------------------------------------
# schedules and the forward process


def plot_schedules(schedules: dict, path: str | Path, title: str | None = None) -> Path:
    """ᾱ_t (left) and log₁₀ SNR(t) = log₁₀ ᾱ_t/(1 − ᾱ_t) (right) against t/T for named schedules."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, s in schedules.items():
        T = len(s)
        x = (torch.arange(T, dtype=torch.float64) + 1) / T
        axes[0].plot(x, s.alphas_cumprod, label=name)
        axes[1].plot(x, torch.log10(s.snr), label=name)
    axes[0].set(xlabel="t / T", ylabel="ᾱ_t", title="signal kept: ᾱ_t")
    axes[1].set(xlabel="t / T", ylabel="log₁₀ SNR(t)", title="SNR(t) = ᾱ_t / (1 − ᾱ_t)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_loss_per_t(results: dict, path: str | Path, title: str | None = None) -> Path:
    """Per-t ε-prediction loss of named models (:func:`ddlib.lab.experiments.loss_per_t_summary`) with 95 % bands:
    against t (left) and against log₁₀ SNR(t) (right; high noise on the left), log-scaled loss."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for name, r in results.items():
        for ax, x in zip(axes, (r["t"], r["log10_snr"])):
            line, = ax.plot(x, r["mean"], marker="o", ms=3, label=name)
            ax.fill_between(x, [max(v, 1e-12) for v in r["lo"]], r["hi"], color=line.get_color(), alpha=0.2)
    axes[0].set(xlabel="t", ylabel="‖ε − ε_θ(x_t, t)‖² (mean over pixels)", title="loss against t")
    axes[1].set(xlabel="log₁₀ SNR(t)", title="loss against log₁₀ SNR(t)")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


@torch.no_grad()
def forward_process_images(schedule, image: torch.Tensor, timesteps: Sequence[int], seed: int = 0) -> torch.Tensor:
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4) of one uint8 image (C, H, W) at each t, with one ε.

    Returns uint8 (K, C, H, W). Using the same ε for every t shows the signal fading into one noise image.
    """
    from ddlib.data import to_model_range, to_uint8

    x0 = to_model_range(image.unsqueeze(0))  # (1, C, H, W)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    ts = torch.as_tensor(list(timesteps), dtype=torch.long)
    x_t = schedule.add_noise(x0.expand(len(ts), -1, -1, -1), eps.expand(len(ts), -1, -1, -1), ts)  # (K, C, H, W)
    return to_uint8(x_t)


def _bare(ax) -> None:
    """An image panel: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _show(ax, img: torch.Tensor) -> None:
    """One uint8 (C, H, W) image in a panel, pixels unsmoothed (grey colour map for one channel)."""
    ax.imshow(_hwc(img), cmap="gray" if img.shape[0] == 1 else None, interpolation="nearest")


def save_image_rows(rows: Sequence[torch.Tensor], path: str | Path, col_labels: Sequence[str] | None = None,
                    row_labels: Sequence[str] | None = None, title: str | None = None, panel: float = 1.1) -> Path:
    """A labelled table of images: ``rows`` is a list of uint8 (K, C, H, W) tensors, one per row."""
    plt = _plt()
    nrows, ncols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + (0.8 if row_labels else 0), panel * nrows + 0.5),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i][j]
            _bare(ax)
            if j < len(row):
                _show(ax, row[j])
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# sampling trajectories


@torch.no_grad()
def record_trajectory(model, schedule, num: int = 4, *, sampler: str = "ddpm", num_steps: int = 50, eta: float = 0.0,
                      frames: int = 8, seed: int = 0, clip: bool = False, **model_kwargs) -> dict:
    """Sample ``num`` images and keep ``frames`` snapshots of x_t and of the prediction x̂_0 along the way.

    Returns ``{"t": [t of each frame], "x": uint8 (F, N, C, H, W), "x0": uint8 (F, N, C, H, W)}``; the last
    frame is the final sample (t = 0). Uses the samplers' ``callback`` (see :mod:`ddlib.samplers`).
    """
    from ddlib.data import to_uint8
    from ddlib.generate import initial_noise
    from ddlib.samplers import ddim_sample, ddpm_sample

    cfg = model.config
    device = next(model.parameters()).device
    shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
    x_T = initial_noise(shape, list(range(seed, seed + num)), device)
    total = len(schedule) if sampler == "ddpm" else num_steps
    keep = {int(round(k)) for k in torch.linspace(0, total - 1, frames).tolist()}
    snaps: dict[str, list] = {"t": [], "x": [], "x0": []}

    def callback(d):
        if d["i"] in keep:
            snaps["t"].append(int(d["t"]))
            snaps["x"].append(to_uint8(d["x"]).cpu())
            snaps["x0"].append(to_uint8(d["x0"]).cpu())

    g = torch.Generator(device=device).manual_seed(seed)
    common = dict(generator=g, progress=False, callback=callback, x_T=x_T, device=device, clip=clip, **model_kwargs)
    if sampler == "ddpm":
        ddpm_sample(model, schedule, x_T.shape, **common)
    else:
        ddim_sample(model, schedule, x_T.shape, num_steps=num_steps, eta=eta, **common)
    return {"t": snaps["t"], "x": torch.stack(snaps["x"]), "x0": torch.stack(snaps["x0"])}


def save_trajectory(traj: dict, path: str | Path, title: str | None = None, samples: int = 2) -> Path:
    """Rows: for each of the first ``samples`` images, x_{t-1} and x̂_0 at each kept step (columns)."""
    rows, labels = [], []
    for i in range(min(samples, traj["x"].shape[1])):
        rows += [traj["x"][:, i], traj["x0"][:, i]]
        labels += [f"#{i} x_t", f"#{i} x̂₀"]
    cols = [f"t={t}" for t in traj["t"]]
    return save_image_rows(rows, path, col_labels=cols, row_labels=labels, title=title)


# --------------------------------------------------------------------------------------------------
# curves


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred moving average over ``window`` points (near the ends, over the points that exist).

    Centred, so a smoothed curve does not lag the raw one: on a straight line it is the line itself.
    """
    half = window // 2
    return [sum(values[max(0, i - half):i + half + 1]) / len(values[max(0, i - half):i + half + 1])
            for i in range(len(values))]


def plot_loss_curves(logs: dict[str, list[dict]], path: str | Path, title: str = "training loss",
                     window: int = 5, logy: bool = True, ylabel: str = "‖ε − ε_θ‖² (DDPM eq. 14)") -> Path:
    """Training loss (``log.jsonl`` records: step, loss) for named runs; raw (faint) and smoothed. ``ylabel`` names
    the loss (runs with different losses, such as a VAE's, need a label that says so)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for name, log in logs.items():
        if not log:
            continue
        steps = [r["step"] for r in log]
        loss = [r["loss"] for r in log]
        line, = ax.plot(steps, smooth(loss, window), label=name)
        ax.plot(steps, loss, color=line.get_color(), alpha=0.25, lw=0.8)
    ax.set(xlabel="training step", ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)


def plot_lines(rows: Iterable[dict], x: str, y: str, path: str | Path, *, group: str | None = None,
               yerr: str | None = None, title: str = "", xlabel: str | None = None, ylabel: str | None = None,
               logx: bool = False, logy: bool = False, group_label: str | None = None,
               interval: tuple[str, str] | None = None, floor: str | None = None) -> Path:
    """``y`` against ``x`` from table rows, one line per value of ``group`` (e.g. FID vs steps per η).

    Lines are labelled ``"<group_label> = <value>"`` (``group_label`` defaults to the column name).
    Error bars: ``yerr`` (a symmetric ± column) or ``interval`` = (lo column, hi column), an asymmetric interval
    such as ``("fid_lo", "fid_hi")``. ``floor``: a column (e.g. ``"floor_fid"``) holding a real-image floor; where
    the rows carry it, it is drawn as a dashed line, with a band from ``<floor>_lo`` to ``<floor>_hi`` if present.
    """
    plt = _plt()
    rows = [r for r in rows if is_number(r.get(y)) and is_number(r.get(x))]
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.get(group) if group else None, []).append(r)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: float(r[x]))
        xs, ys = [float(r[x]) for r in rs], [float(r[y]) for r in rs]
        label = f"{group_label or group} = {format_cell(key)}" if group else None
        if interval and all(is_number(r.get(c)) for r in rs for c in interval):
            err = [[y_ - float(r[interval[0]]) for y_, r in zip(ys, rs)], [float(r[interval[1]]) - y_ for y_, r in zip(ys, rs)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
        elif yerr and all(is_number(r.get(yerr)) for r in rs):
            ax.errorbar(xs, ys, yerr=[float(r[yerr]) for r in rs], marker="o", capsize=3, label=label)
        else:
            ax.plot(xs, ys, marker="o", label=label)
    _draw_floor(ax, rows, floor)
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    if logx:
        from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted({float(r[x]) for r in rows})))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if group or ax.get_legend_handles_labels()[0]:
        ax.legend()
    return save_figure(fig, path)


def _draw_floor(ax, rows: Sequence[dict], floor: str | None) -> None:
    """The real-image floor of ``rows`` (column ``floor``, band ``floor_lo``..``floor_hi``) as a dashed line."""
    vals = [r for r in rows if floor and is_number(r.get(floor))]
    if not vals:
        return
    r = vals[0]
    n = f" at n = {r['floor_n']}" if r.get("floor_n") else ""
    ax.axhline(float(r[floor]), color="k", ls="--", lw=1, label=f"real-image floor{n}")
    if is_number(r.get(f"{floor}_lo")) and is_number(r.get(f"{floor}_hi")):
        ax.axhspan(float(r[f"{floor}_lo"]), float(r[f"{floor}_hi"]), color="k", alpha=0.1, lw=0)


def plot_pareto(rows: Sequence[dict], x: str, y: str, path: str | Path, *, label: str, interval: tuple[str, str],
                front: str = "pareto", title: str = "", xlabel: str | None = None, ylabel: str | None = None,
                floor: str | None = None, logx: bool = True) -> Path:
    """Quality against cost: one point per row (``y`` with its ``interval`` against ``x``), named by ``label``;
    rows whose ``front`` column is true are joined as the Pareto front (ringed in black)."""
    plt = _plt()
    rows = [r for r in rows if is_number(r.get(x)) and is_number(r.get(y))]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, r in enumerate(rows):
        xv, yv = float(r[x]), float(r[y])
        err = [[yv - float(r[interval[0]])], [float(r[interval[1]]) - yv]] if all(is_number(r.get(c)) for c in interval) else None
        ax.errorbar([xv], [yv], yerr=err, marker="o", capsize=3, color=f"C{i % 10}", ls="none")
        ax.annotate(str(r[label]), (xv, yv), textcoords="offset points", xytext=(5, 4), fontsize=7)
    on = sorted((r for r in rows if r.get(front)), key=lambda r: float(r[x]))
    if on:
        ax.plot([float(r[x]) for r in on], [float(r[y]) for r in on], "k-", lw=1, alpha=0.6, label="Pareto front")
        ax.scatter([float(r[x]) for r in on], [float(r[y]) for r in on], s=110, facecolors="none", edgecolors="k")
    _draw_floor(ax, rows, floor)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_bars(rows: Sequence[dict], label: str, values: Sequence[str], path: str | Path, *, title: str = "",
              ylabels: Sequence[str] | None = None) -> Path:
    """One panel per column in ``values``: a bar per row, named by the row's ``label`` column."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.4), squeeze=False)
    names = [str(r[label]) for r in rows]
    for k, (ax, col) in enumerate(zip(axes[0], values)):
        vals = [float(r[col]) if is_number(r.get(col)) else 0.0 for r in rows]
        bars = ax.bar(names, vals, color=[f"C{i}" for i in range(len(rows))])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set(ylabel=(ylabels[k] if ylabels else col))
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# intervals, bands and reference lines (notebook 03)


def plot_intervals(rows: Sequence[dict], x: str, y: str, path: str | Path, *, lo: str | None = None,
                   hi: str | None = None, bands: Sequence[tuple] = (), lines: Sequence[tuple] = (), title: str = "",
                   xlabel: str | None = None, ylabel: str | None = None, ylim: tuple | None = None,
                   label: str | None = None) -> Path:
    """``y`` against ``x`` with the rows' interval ``[lo, hi]`` as error bars, plus horizontal references.

    ``bands``: ``(label, value, band_lo, band_hi)`` drawn as a line inside a shaded band (e.g. the real-image floor
    with its interval); ``lines``: ``(label, value)`` drawn dashed (e.g. chance 1/K). Rows without a number in
    ``y`` are left out; a band whose value is None is left out (say why in the caption).
    """
    plt = _plt()
    rows = sorted((r for r in rows if is_number(r.get(y)) and is_number(r.get(x))), key=lambda r: float(r[x]))
    xs, ys = [float(r[x]) for r in rows], [float(r[y]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    if lo and hi and all(is_number(r.get(lo)) and is_number(r.get(hi)) for r in rows):
        err = [[v - float(r[lo]) for v, r in zip(ys, rows)], [float(r[hi]) - v for v, r in zip(ys, rows)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label or f"{y} (95 % interval)")
    else:
        ax.plot(xs, ys, marker="o", label=label or y)
    for k, (label, value, b_lo, b_hi) in enumerate(bands):
        if not is_number(value):
            continue
        color = f"C{k + 1}"
        ax.axhline(float(value), color=color, lw=1, label=label)
        if is_number(b_lo) and is_number(b_hi):
            ax.axhspan(float(b_lo), float(b_hi), color=color, alpha=0.15)
    for k, (label, value) in enumerate(lines):
        ax.axhline(float(value), color="gray", ls="--", lw=1, label=label)
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def save_scale_grid(grids: dict, path: str | Path, row_labels: Sequence[str] | None = None, panel: float = 1.0) -> Path:
    """Rows = classes, columns grouped by guidance scale: ``grids`` is ``{s: [uint8 (K, C, H, W) per class]}``
    (e.g. :func:`ddlib.lab.experiments.per_class_scale_grid`); a narrow gap separates the groups, each headed
    ``s = …``, and column j of every group is the same sample index (the same x_T)."""
    plt = _plt()
    scales = list(grids)
    nrows = len(grids[scales[0]])
    per = max(len(g) for g in grids[scales[0]])
    ncols = len(scales) * per + len(scales) - 1
    widths = [(1.0 if (j % (per + 1)) < per else 0.25) for j in range(ncols)]
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, gridspec_kw={"width_ratios": widths},
                             figsize=(panel * sum(widths) + (0.9 if row_labels else 0), panel * nrows + 0.6))
    for i in range(nrows):
        for j in range(ncols):
            ax = axes[i][j]
            _bare(ax)
            g, k = divmod(j, per + 1)
            if k == per:
                ax.axis("off")
                continue
            row = grids[scales[g]][i]
            if k < len(row):
                _show(ax, row[k])
            if i == 0 and k == 0:
                ax.set_title(f"s = {scales[g]:g}", fontsize=9, loc="left")
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_figure(fig, path)
