"""Inside a report notebook: where it writes, and the helpers that attach provenance to what it writes.

A notebook calls :func:`start` once and gets a :class:`Context`: the output folder
``<reports_dir>/<profile>/`` (tables, figures, an index of both), the device and its hardware name,
cached training, sampling and FID scoring (:mod:`ddlib.lab.cache`), and :meth:`Context.row`, which gives
every table row its provenance columns (profile, hardware, wall time, sample count, reference).
:func:`check_outputs` says what a notebook has not yet written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ddlib.errors import DDLibError
from ddlib.files import atomic_open, atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVENANCE_COLUMNS = ("profile", "hardware", "wall_s", "n_samples", "reference")

# What each notebook must leave behind (names under tables/ and figures/); checked after it runs.
EXPECTED_OUTPUTS: dict[str, dict[str, list[str]]] = {
    "00_toy_lab": {"tables": ["toy_samplers", "toy_schedules", "toy_mlp", "toy_guidance"],
                   "figures": ["toy_forward", "toy_loss_per_t", "toy_samples_exact", "toy_error_vs_steps", "toy_schedules",
                               "toy_guidance_samples", "toy_mlp_loss", "toy_samples_mlp", "toy_model_vs_sampler",
                               "toy_guidance_tradeoff"]},
    "01_ddpm_cifar10": {"tables": ["train_ddpm", "ddpm"], "figures": ["forward_process", "schedule_linear", "loss_ddpm",
                                                                       "samples_ddpm", "trajectory_ddpm"]},
    "02_ddim_cifar10": {"tables": ["ddim_steps", "clip_ablation", "speed_memory", "quality_vs_time"],
                        "figures": ["ddim_fid_vs_steps", "ddim_kid_vs_steps", "samples_ddim", "trajectory_ddim",
                                    "clip_ablation_samples", "speed_memory", "quality_vs_time"]},
    "03_latent_cfg": {"tables": ["vae", "train_latent", "guidance_sweep"],
                      "figures": ["vae_reconstructions", "loss_latent", "guidance_sweep", "guidance_consistency",
                                  "guidance_per_class"]},
    "04_cosine_schedule": {"tables": ["schedules_ddim", "schedules", "schedules_ddpm"],
                           "figures": ["schedules_alpha_snr", "loss_schedules", "loss_per_t", "samples_schedules"]},
    "05_summary": {"tables": ["literature", "literature_quoted", "summary"], "figures": []},
}



def check_outputs(out_dir: Path, notebook: str) -> list[str]:
    """Missing or empty tables/figures a notebook should have written (empty list: all there)."""
    exp = EXPECTED_OUTPUTS.get(notebook, {})
    want = [out_dir / "tables" / f"{t}.{ext}" for t in exp.get("tables", []) for ext in ("csv", "md")]
    want += [out_dir / "figures" / f"{f}.png" for f in exp.get("figures", [])]
    return [str(p.relative_to(out_dir)) for p in want if not p.is_file() or p.stat().st_size == 0]




def _resolve_reports_dir(reports_dir: str | Path) -> Path:
    p = Path(reports_dir).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass
class Context:
    """Where a notebook writes, and the helpers that attach provenance to what it writes.

    Made by :func:`start`. ``out`` is ``<reports_dir>/<profile>/``; tables go to ``out/tables``,
    figures to ``out/figures``; both are indexed (``index.json``) so that the report notebook can
    show every one of them, in the order they were made, with their titles.
    """

    profile: str
    notebook: str
    out: Path
    device: Any
    hardware: str
    cache_root: Path
    started: float = field(default_factory=time.perf_counter)
    _image_refs: dict = field(default_factory=dict, repr=False)

    @property
    def tables_dir(self) -> Path:
        return self.out / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.out / "figures"

    # ---- provenance ------------------------------------------------------------------------------

    def row(self, *, wall_s: float | None, n_samples: int | None, reference: str | None, **values) -> dict:
        """A table row: ``values`` followed by the provenance columns (profile, hardware, wall time, samples, reference)."""
        return {**values, "profile": self.profile, "hardware": self.hardware,
                "wall_s": None if wall_s is None else round(float(wall_s), 3 if float(wall_s) < 10 else 1),
                "n_samples": n_samples,
                "reference": reference}

    def _index(self, folder: Path, name: str, entry: dict) -> None:
        path = folder / "index.json"
        index = json.loads(path.read_text()) if path.is_file() else {}
        index[name] = {"notebook": self.notebook, "order": len(index) if name not in index else index[name]["order"],
                       **entry}
        atomic_write_text(path, json.dumps(index, indent=1) + "\n")

    def table(self, name: str, rows: Sequence[dict], title: str, *, columns: Sequence[str] | None = None,
              notes: Sequence[str] = (), digits: int = 4):
        """Write ``tables/<name>.csv`` (all columns) and ``.md`` (``columns`` + provenance); return it for display.

        Every row must carry the provenance columns (use :meth:`row`).
        """
        from ddlib.lab.tables import write_table

        for r in rows:
            missing = [c for c in PROVENANCE_COLUMNS if c not in r]
            if missing:
                raise DDLibError(f"table {name!r}: a row lacks provenance column(s) {', '.join(missing)}; build rows with ctx.row()")
        from ddlib.lab.intervals import table_view

        columns = list(columns) if columns is not None else [c for c in rows[0] if c not in PROVENANCE_COLUMNS]
        columns, headers, auto_notes = table_view(columns, rows)  # FID/KID intervals, n in the header, ranking
        md_rows, keys = provenance_keys(rows, columns)
        md_rows = [{headers.get(k, k): v for k, v in r.items()} for r in md_rows]
        notes = [*notes, *auto_notes, "Provenance: " + "; ".join(f"[{k}] {v}" for v, k in keys.items()) + "."]
        _, md = write_table(rows, self.tables_dir / name, title, md_rows=md_rows, notes=notes, digits=digits)
        self._index(self.tables_dir, name, {"title": title})
        return markdown(md.read_text())

    def note(self, name: str, text: str):
        """Write ``tables/<name>.txt`` (a finding in words, e.g. a claim's verdict) and return it for display."""
        atomic_write_text(self.tables_dir / f"{name}.txt", text.strip() + "\n")
        return markdown(text)

    def figure(self, name: str, caption: str) -> Path:
        """The path ``figures/<name>.png`` for a figure helper to write, indexed with its caption."""
        self._index(self.figures_dir, name, {"caption": caption})
        return self.figures_dir / f"{name}.png"

    # ---- cached computation ----------------------------------------------------------------------

    def train(self, config, **kwargs):
        """:func:`ddlib.lab.cache.cached_train` in this context's cache and on its device."""
        from ddlib.lab.cache import cached_train

        return cached_train(config, self.cache_root, device=self.device, **kwargs)

    def cached(self, kind: str, key: dict, fn: Callable[[], dict]) -> dict:
        from ddlib.lab.cache import cached_result

        return cached_result(kind, key, fn, self.cache_root)

    def cached_images(self, kind: str, key: dict, fn):
        from ddlib.lab.cache import cached_images

        return cached_images(kind, key, fn, self.cache_root)

    def reference_label(self, reference: str, count: int | None) -> str:
        """How a FID reference is named in tables, e.g. ``cifar10:test (10000 images, JPEG copy)``."""
        from ddlib.metrics import reference_statistics

        st = reference_statistics(reference, count=count, progress=False)
        kind = "all" if count is None else "random subset"
        jpeg = ", JPEG copy" if str(reference).startswith(("cifar10", "tiny-imagenet")) else ""
        label = f"{reference} ({st.n} images, {kind}{jpeg})"
        keep = ("dataset", "count", "split_size", "subset", "source", "images_sha1", "created", "hardware", "seconds",
                "preprocessing", "weights")
        self._add_reference(label, {"spec": reference, "count": count, **{k: st.provenance.get(k) for k in keep}})
        return label

    def _add_reference(self, label: str, entry: dict) -> None:
        """Record a FID reference's provenance in ``references.json`` under its table label."""
        path = self.out / "references.json"
        refs = json.loads(path.read_text()) if path.is_file() else {}
        refs[label] = entry
        atomic_write_text(path, json.dumps(refs, indent=1, default=str) + "\n")

    def image_reference(self, images, name: str) -> str:
        """Register uint8 ``images`` (e.g. the validation images of the classes a model was trained on) as a
        FID reference called ``name``; their Inception features are cached under the images' sha1.
        Returns the label to put in tables; pass ``name`` as ``reference`` to :meth:`score`.
        """
        import numpy as np

        from ddlib.data import images_sha1
        from ddlib.metrics import compute_features

        sha = images_sha1(images)
        path = self.cache_root / "features" / f"{sha[:20]}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            feats = compute_features(images, device=self.device_str, progress=False)
            with atomic_open(path) as f:
                np.savez(f, features=feats, seconds=time.perf_counter() - t0)
        label = f"{name} ({len(images)} images)"
        self._image_refs[name] = (path, label)
        self._add_reference(label, {"spec": name, "count": len(images), "subset": "given images", "images_sha1": sha,
                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime)),
                                    "hardware": self.hardware})
        return label

    def _reference(self, reference: str, count: int | None):
        """(features or None, FIDStatistics) of a data set spec or of a registered image reference."""
        import numpy as np

        from ddlib.metrics import FIDStatistics, reference_features, reference_statistics

        if reference in self._image_refs:
            with np.load(self._image_refs[reference][0]) as z:
                feats = z["features"]
            return feats, FIDStatistics.from_features(feats, {"source": reference})
        feats, _ = reference_features(reference, count=count, device=self.device_str, progress=False)
        return feats, reference_statistics(reference, count=count, progress=False)

    def score(self, images, reference: str, count: int | None = None) -> dict:
        """FID and KID of uint8 ``images`` against a cached reference (features recomputed for the images).

        ``reference``: a data set spec (``count``: a seeded random subset of it) or a name registered
        with :meth:`image_reference`.
        """
        from ddlib.lab.intervals import features
        from ddlib.metrics import Source, fid_kid

        t0 = time.perf_counter()
        ref_feats, ref = self._reference(reference, count)
        feats, _ = features(self, images)  # cached by the images' sha1: the intervals bootstrap them
        s = fid_kid(Source.from_features(feats, "samples"), Source(reference, ref, ref_feats))
        return {"fid": round(s["fid"], 3), "kid": round(s["kid_mean"], 5), "kid_std": round(s["kid_std"], 5),
                "n_samples": s["n"], "reference_n": s["reference_n"], "score_s": round(time.perf_counter() - t0, 1)}

    @property
    def device_str(self) -> str:
        return str(self.device)

    def samples(self, run, *, n: int, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0, seed: int = 0,
                batch_size: int = 100, guidance: float = 1.0, label: int | None = None, clip: bool = False) -> dict:
        """``n`` uint8 samples of a cached run, themselves cached: ``{"images", "sample_s", "key"}``.

        Image i starts from x_T seeded with ``seed + i`` (:mod:`ddlib.generate`), so the first k images
        of a larger set are the images a smaller request would show; figures reuse the scored sets.
        ``sample_s`` is the time the sampling took when it ran (also when read back from the cache).
        ``clip`` clamps x̂_0 to [-1, 1] at every step (:mod:`ddlib.samplers`).
        """
        from ddlib.generate import generate

        key = {"run": run.key, "n": n, "sampler": sampler, "num_steps": num_steps if sampler == "ddim" else None,
               "eta": eta if sampler == "ddim" else None, "seed": seed, "batch_size": batch_size,
               "guidance": guidance, "label": label,
               "clip": "x0, eps re-derived" if clip and sampler == "ddim" else clip}  # DDIM's clip convention
        timing = {}

        def make():
            trained = run.load(self.device)
            kw = {"guidance": guidance, "label": label} if trained.model.config.num_classes is not None else {}
            t0 = time.perf_counter()
            images, _ = generate(trained.model, trained.schedule, n, sampler=sampler, num_steps=num_steps, eta=eta,
                                 seed=seed, batch_size=batch_size, clip=clip, progress=False, **kw)
            timing["sample_s"] = time.perf_counter() - t0
            return images

        images = self.cached_images("samples", key, make)
        info = self.cached("sample_time", key, lambda: {"sample_s": round(timing.get("sample_s", float("nan")), 2)})
        return {"images": images, "sample_s": info["sample_s"], "key": key}

    def sample_and_score(self, run, *, n: int, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
                         reference: str, reference_count: int | None = None, batch_size: int = 100, seed: int = 0,
                         guidance: float = 1.0, label: int | None = None, inception_score: bool = False,
                         clip: bool = False) -> dict:
        """FID/KID of :meth:`samples` against a reference; cached by (samples, reference).

        The result holds fid, kid, kid_std, n_samples, reference_n, sample_s (sampling seconds),
        score_s (Inception seconds) and wall_s (both); with ``inception_score`` also ``inception_score``,
        the cell of :func:`ddlib.metrics.inception_score_cell` ("n/a: …" where the network's head is missing).
        """
        from ddlib.metrics.inception import PREPROCESSING_ID

        s = self.samples(run, n=n, sampler=sampler, num_steps=num_steps, eta=eta, seed=seed, batch_size=batch_size,
                         guidance=guidance, label=label, clip=clip)
        key = {**s["key"], "reference": reference, "reference_count": reference_count, "prep": PREPROCESSING_ID,
               "reference_file": self._image_refs[reference][0].name if reference in self._image_refs else None,
               **({"inception_score": True} if inception_score else {})}

        def compute() -> dict:
            scores = self.score(s["images"], reference, reference_count)
            if inception_score:
                from ddlib.metrics import inception_score_cell

                scores["inception_score"] = inception_score_cell(s["images"], device=self.device_str, progress=False)
            return {**scores, "hardware": self.hardware}

        res = self.cached("score", key, compute)
        return {**res, "sample_s": s["sample_s"], "wall_s": round(s["sample_s"] + res["score_s"], 1)}


def provenance_cell(row: dict) -> str:
    """Where a row's number comes from, as one footnote: ``profile · hardware · reference``."""
    return " · ".join([str(row.get("profile")), str(row.get("hardware")),
                       f"ref {row['reference']}" if row.get("reference") else "no reference"])


def provenance_keys(rows: Sequence[dict], columns: Sequence[str]) -> tuple[list[dict], dict[str, str]]:
    """The Markdown rows of a table: ``columns``, then n, wall time and a short key (``a``, ``b``, …) into the
    provenance footnotes, so that a long provenance text does not widen every row. Returns (rows, {text: key})."""
    keys: dict[str, str] = {}
    md_rows = []
    for r in rows:
        key = keys.setdefault(provenance_cell(r), _letters(len(keys)))
        md_rows.append({**{c: r.get(c) for c in columns},
                        **({} if "n_samples" in columns else {"n": r.get("n_samples")}),
                        **({} if "wall_s" in columns else {"wall s": r.get("wall_s")}), "prov.": key})
    return md_rows, keys


def _letters(i: int) -> str:
    """0 → a, 25 → z, 26 → aa, …"""
    return _letters(i // 26 - 1) + chr(97 + i % 26) if i >= 26 else chr(97 + i)


def markdown(text: str):
    """An IPython Markdown display object (the text itself outside IPython)."""
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover
        return text
    return Markdown(text)


def start(profile: str, notebook: str, *, reports_dir: str | Path = "reports", cache_dir: str | Path | None = None,
          device: str = "auto", torch_threads: int | None = None) -> Context:
    """Begin a notebook: resolve the output folder ``<reports_dir>/<profile>/`` and the device; seed nothing.

    ``reports_dir`` relative paths are taken from the repository root (so the notebook writes to the same
    place from JupyterLab, whose working directory is ``notebooks/``, and from papermill).
    """
    import torch

    from ddlib.lab.cache import default_root
    from ddlib.device import hardware_string, resolve_device

    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    dev = resolve_device(device)
    out = _resolve_reports_dir(reports_dir) / profile
    for sub in ("tables", "figures"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    root = Path(cache_dir).expanduser() if cache_dir else default_root()
    if not root.is_absolute():
        root = REPO_ROOT / root
    return Context(profile=profile, notebook=notebook, out=out, device=dev, hardware=hardware_string(dev), cache_root=root)
