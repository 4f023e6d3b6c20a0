"""The report run: numbered notebooks executed by papermill for a profile, then report.html / report.pdf.

Command line (also ``python -m ddlib report …`` / ``python -m ddlib pdf …``)::

    python -m ddlib.pipeline report --profile smoke      # notebooks → reports/smoke/, then report.html
    python -m ddlib.pipeline pdf --profile smoke         # reports/smoke/report.pdf (needs xelatex, pandoc)

What ``report`` does, for profile P (``notebooks/profiles/P.yaml``, a flat papermill parameter file):

1. marks ``reports/P/`` incomplete: deletes ``report.html``/``report.pdf`` and the previous run's
   ``notebooks/``, ``tables/`` and ``figures/``, and writes ``STATUS`` = ``incomplete …``;
2. runs ``notebooks/NN_*.ipynb`` in order with the kernel ``ddlib`` (installed by ``make setup``; the
   run installs it into this interpreter's prefix if it is missing), working directory the repository
   root, each notebook getting the profile's parameters it declares in its ``parameters`` cell, plus
   ``profile``, ``reports_dir`` and ``cache_dir``; executed copies go to ``reports/P/notebooks/``;
3. after each notebook checks that the tables and figures it must write exist and are non-empty;
4. on the first failure prints ``notebook NN_name failed in cell K: <error>`` (K is the ``In [K]``
   label of the failing cell in the executed copy), writes ``STATUS`` = ``FAILED …`` and exits 1 —
   no report.html is written, so nothing looks complete;
5. converts the executed ``05_report`` notebook to ``report.html`` with its code hidden, and writes
   ``STATUS`` = ``complete``.

Expensive steps inside the notebooks are cached by config hash (:mod:`ddlib.cache`), so a second run
only re-executes the notebooks and reuses checkpoints and metrics; ``FORCE=1`` recomputes.

Notebooks call :func:`start` to get a :class:`Context`: where to write, the profile's provenance
(hardware, device), cached training and scoring, and table/figure writers that add provenance.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ddlib.errors import DDLibError

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES_DIR = NOTEBOOKS_DIR / "profiles"
KERNEL_NAME = "ddlib"
REPORT_NOTEBOOK = "05_report"
PROVENANCE_COLUMNS = ("profile", "hardware", "wall_s", "n_samples", "reference")
PDF_PACKAGES = "texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc fonts-dejavu-core poppler-utils"

# What each notebook must leave behind (names under tables/ and figures/); checked after it runs.
EXPECTED_OUTPUTS: dict[str, dict[str, list[str]]] = {
    "01_ddpm_cifar10": {"tables": ["train_ddpm", "ddpm"], "figures": ["forward_process", "schedule_linear", "loss_ddpm",
                                                                       "samples_ddpm", "trajectory_ddpm"]},
    "02_ddim_cifar10": {"tables": ["ddim_steps", "speed_memory"], "figures": ["ddim_fid_vs_steps", "ddim_kid_vs_steps",
                                                                               "samples_ddim", "trajectory_ddim",
                                                                               "speed_memory"]},
    "03_latent_cfg": {"tables": ["vae", "train_latent", "guidance_sweep"],
                      "figures": ["vae_reconstructions", "loss_latent", "guidance_sweep", "guidance_consistency",
                                  "samples_per_class"]},
    "04_cosine_schedule": {"tables": ["schedules"], "figures": ["schedules_alpha_snr", "loss_schedules",
                                                               "samples_schedules"]},
    "05_report": {"tables": ["literature", "summary"], "figures": []},
}


# --------------------------------------------------------------------------------------------------
# profiles and notebooks


def notebook_paths(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """``NN_*.ipynb`` in reading order."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def load_profile(profile: str, profiles_dir: Path = PROFILES_DIR) -> dict:
    """The parameters of ``notebooks/profiles/<profile>.yaml`` (or of a path to a YAML file)."""
    import yaml

    path = Path(profile) if profile.endswith((".yaml", ".yml")) else profiles_dir / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir.glob("*.yaml"))) or "none"
        raise DDLibError(f"no profile {profile!r} (looked for {path}); profiles: {known}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise DDLibError(f"{path} must hold a mapping of parameter names to values")
    params.setdefault("profile", path.stem)
    return params


def notebook_parameters(path: Path) -> dict:
    """The names (and defaults) declared in a notebook's ``parameters`` cell."""
    import papermill

    return {k: v.get("default") for k, v in papermill.inspect_notebook(str(path)).items()}


def check_profile(params: dict, notebooks: Sequence[Path]) -> None:
    """Every profile key must be a parameter of some notebook (a typo would otherwise be silently ignored)."""
    declared: set[str] = set()
    for nb in notebooks:
        declared |= set(notebook_parameters(nb))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise DDLibError(f"profile parameter(s) {', '.join(unknown)} are not declared by any notebook's parameters cell")


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Install the ``ddlib`` kernel spec into this interpreter's prefix if Jupyter does not know it."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name in KernelSpecManager().find_kernel_specs():
        return
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name,
                    "--display-name", "Python (ddlib)"], check=True, capture_output=True)


@dataclass
class NotebookFailure(Exception):
    notebook: str
    cell: int | None
    error: str
    output: Path | None = None

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "setup"
        return f"notebook {self.notebook} failed in {where}: {self.error}"


def _error_line(ename: str, evalue: str) -> str:
    lines = [ln for ln in str(evalue).strip().splitlines() if ln.strip()]
    return f"{ename}: {lines[-1] if lines else ''}".strip().rstrip(":")


def execute_notebook(path: Path, output: Path, parameters: dict, *, kernel: str = KERNEL_NAME,
                     cwd: Path = REPO_ROOT, log: Callable[[str], None] = print) -> float:
    """Run one notebook with papermill; returns its wall time. Raises :class:`NotebookFailure`."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    declared = notebook_parameters(path)
    params = {k: v for k, v in parameters.items() if k in declared}
    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(path), str(output), parameters=params, kernel_name=kernel, cwd=str(cwd),
                                   progress_bar=False, log_output=False, request_save_on_cell_execute=True)
    except PapermillExecutionError as err:
        raise NotebookFailure(path.stem, err.exec_count, _error_line(err.ename, err.evalue), output) from None
    except Exception as err:  # kernel died, timeout, bad notebook file
        raise NotebookFailure(path.stem, None, _error_line(type(err).__name__, str(err)), output) from None
    return time.perf_counter() - t0


def check_outputs(out_dir: Path, notebook: str) -> list[str]:
    """Missing or empty tables/figures a notebook should have written (empty list: all there)."""
    exp = EXPECTED_OUTPUTS.get(notebook, {})
    want = [out_dir / "tables" / f"{t}.{ext}" for t in exp.get("tables", []) for ext in ("csv", "md")]
    want += [out_dir / "figures" / f"{f}.png" for f in exp.get("figures", [])]
    return [str(p.relative_to(out_dir)) for p in want if not p.is_file() or p.stat().st_size == 0]


def _write_status(out_dir: Path, text: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "STATUS").write_text(text.rstrip() + "\n")


def run_report(profile: str, *, reports_dir: str | Path | None = None, notebooks: Sequence[str] | None = None,
               overrides: dict | None = None, notebooks_dir: Path = NOTEBOOKS_DIR, kernel: str = KERNEL_NAME,
               html: bool = True, log: Callable[[str], None] = print) -> Path:
    """Execute the numbered notebooks for ``profile`` into ``<reports_dir>/<profile>/``; returns that folder.

    ``notebooks``: run only these (names or ``NN`` prefixes; the folder is then not cleared and no HTML
    is built unless ``05_report`` is among them). ``overrides`` replace profile parameters.
    Raises :class:`NotebookFailure` on the first failing notebook, after marking the report FAILED.
    """
    params = {**load_profile(profile), **(overrides or {})}
    profile_name = params["profile"]
    root = Path(reports_dir) if reports_dir is not None else REPO_ROOT / "reports"
    out_dir = (root if root.is_absolute() else REPO_ROOT / root).resolve() / profile_name
    params["reports_dir"] = str(out_dir.parent)
    all_nbs = notebook_paths(notebooks_dir)
    if not all_nbs:
        raise DDLibError(f"no numbered notebooks in {notebooks_dir}")
    check_profile({k: v for k, v in params.items() if k not in ("reports_dir",)}, all_nbs)
    selected = all_nbs if not notebooks else [p for p in all_nbs if any(p.stem == n or p.stem.startswith(f"{n}_")
                                                                      for n in notebooks)]
    if notebooks and not selected:
        raise DDLibError(f"no notebook matches {', '.join(notebooks)}; have {', '.join(p.stem for p in all_nbs)}")
    full = selected == all_nbs

    for name in ("report.html", "report.pdf"):
        (out_dir / name).unlink(missing_ok=True)
    if full:
        for sub in ("notebooks", "tables", "figures"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        for name in ("timings.json", "references.json"):
            (out_dir / name).unlink(missing_ok=True)
    _write_status(out_dir, f"incomplete: running profile {profile_name} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    ensure_kernel(kernel)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # libgomp's default spin-waiting makes PyTorch's CPU threads crawl (measured: 200× slower for a small UNet)
    # when the cores are shared with other work; passive waiting costs little when they are not.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t_all = time.perf_counter()
    for nb in selected:
        output = out_dir / "notebooks" / nb.name
        log(f"[{profile_name}] {nb.stem} …")
        try:
            seconds = execute_notebook(nb, output, params, kernel=kernel, log=log)
            missing = check_outputs(out_dir, nb.stem)
            if missing:
                raise NotebookFailure(nb.stem, None, f"finished but did not write {', '.join(missing)}", output)
        except NotebookFailure as failure:
            _write_status(out_dir, f"FAILED: {failure}\nexecuted notebook: {failure.output}")
            log(str(failure))
            raise
        timings[nb.stem] = {"wall_s": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        timings_path.write_text(json.dumps(timings, indent=1) + "\n")
        log(f"[{profile_name}] {nb.stem} done in {seconds:.0f} s")
    if html and any(nb.stem == REPORT_NOTEBOOK for nb in selected):
        path = build_html(out_dir)
        log(f"[{profile_name}] wrote {path}")
    total = time.perf_counter() - t_all
    # a partial run (--only) completes the report only when every notebook's outputs are there
    done = all((out_dir / "notebooks" / nb.name).is_file() and not check_outputs(out_dir, nb.stem) for nb in all_nbs)
    if full or (done and (out_dir / "report.html").is_file()):
        _write_status(out_dir, f"complete: profile {profile_name}, {len(selected)} of {len(all_nbs)} notebooks run in "
                               f"{total:.0f} s, finished {time.strftime('%Y-%m-%d %H:%M:%S')}")
    else:
        _write_status(out_dir, f"incomplete: ran {', '.join(nb.stem for nb in selected)}; run the whole profile "
                               f"(or {REPORT_NOTEBOOK}) for a report")
    return out_dir


# --------------------------------------------------------------------------------------------------
# HTML and PDF


def _load_report_notebook(out_dir: Path):
    import nbformat

    path = out_dir / "notebooks" / f"{REPORT_NOTEBOOK}.ipynb"
    if not path.is_file():
        raise DDLibError(f"no executed {REPORT_NOTEBOOK} notebook in {out_dir / 'notebooks'}; run the report first "
                         f"(make report PROFILE={out_dir.name})")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["title"] = f"ddlib report — profile {out_dir.name}"
    nb.metadata["authors"] = [{"name": "generated by ddlib (make report)"}]
    return nb


def _exporter_config():
    from traitlets.config import Config

    c = Config()
    c.TemplateExporter.exclude_input = True
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = ("remove_cell", "parameters", "injected-parameters")
    c.TagRemovePreprocessor.remove_all_outputs_tags = ("remove_output",)
    return c


def build_html(out_dir: str | Path) -> Path:
    """``report.html`` from the executed report notebook, code hidden (written atomically)."""
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    nb = _load_report_notebook(out_dir)
    body, _ = HTMLExporter(config=_exporter_config()).from_notebook_node(nb)
    path = out_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
    return path


def pdf_requirements() -> list[str]:
    """The programs ``pdf`` needs that are missing (xelatex, pandoc)."""
    return [p for p in ("xelatex", "pandoc") if shutil.which(p) is None]


def build_pdf(out_dir: str | Path) -> Path:
    """``report.pdf`` via nbconvert's LaTeX route (xelatex), code hidden; needs a complete report."""
    from nbconvert import PDFExporter

    out_dir = Path(out_dir)
    status = (out_dir / "STATUS").read_text().strip() if (out_dir / "STATUS").is_file() else "missing"
    if not status.startswith("complete"):
        raise DDLibError(f"{out_dir} holds no complete report (STATUS: {status.splitlines()[0]}); "
                         f"run make report PROFILE={out_dir.name} first")
    missing = pdf_requirements()
    if missing:
        raise DDLibError(f"PDF needs {', '.join(missing)}: on Debian/Ubuntu `apt-get install -y --no-install-recommends "
                         f"{PDF_PACKAGES}` (or run make pdf-deps)")
    nb = _load_report_notebook(out_dir)
    exporter = PDFExporter(config=_exporter_config(), template_name="ddlib_report",
                           extra_template_basedirs=[str(Path(__file__).resolve().parent / "templates")])
    try:
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": "report", "path": str(out_dir)}})
    except Exception as err:  # LaTeX errors: nbconvert raises LatexFailed with the log
        log = str(err).strip().splitlines()
        bad = [ln for ln in log if ln.startswith("!")][:3]
        raise DDLibError(f"xelatex failed: {'; '.join(bad) or (log[-1] if log else type(err).__name__)}") from None
    path = out_dir / "report.pdf"
    tmp = path.with_name(".report.pdf.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------
# inside a notebook: the Context


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
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".index.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, path)

    def table(self, name: str, rows: Sequence[dict], title: str, *, columns: Sequence[str] | None = None,
              notes: Sequence[str] = (), digits: int = 4):
        """Write ``tables/<name>.csv`` (all columns) and ``.md`` (``columns`` + provenance); return it for display.

        Every row must carry the provenance columns (use :meth:`row`).
        """
        from ddlib.report import write_table

        for r in rows:
            missing = [c for c in PROVENANCE_COLUMNS if c not in r]
            if missing:
                raise DDLibError(f"table {name!r}: a row lacks provenance column(s) {', '.join(missing)}; build rows with ctx.row()")
        columns = list(columns) if columns is not None else [c for c in rows[0] if c not in PROVENANCE_COLUMNS]
        md_rows = [{**{c: r.get(c) for c in columns}, "provenance": provenance_cell(r)} for r in rows]
        _, md = write_table(rows, self.tables_dir / name, title, md_rows=md_rows, notes=notes, digits=digits)
        self._index(self.tables_dir, name, {"title": title})
        return markdown(md.read_text())

    def note(self, name: str, text: str):
        """Write ``tables/<name>.txt`` (a finding in words, e.g. a claim's verdict) and return it for display."""
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        (self.tables_dir / f"{name}.txt").write_text(text.strip() + "\n")
        return markdown(text)

    def figure(self, name: str, caption: str) -> Path:
        """The path ``figures/<name>.png`` for a figure helper to write, indexed with its caption."""
        self._index(self.figures_dir, name, {"caption": caption})
        return self.figures_dir / f"{name}.png"

    # ---- cached computation ----------------------------------------------------------------------

    def train(self, config, **kwargs):
        """:func:`ddlib.cache.cached_train` in this context's cache and on its device."""
        from ddlib.cache import cached_train

        return cached_train(config, self.cache_root, device=self.device, **kwargs)

    def cached(self, kind: str, key: dict, fn: Callable[[], dict]) -> dict:
        from ddlib.cache import cached_result

        return cached_result(kind, key, fn, self.cache_root)

    def cached_images(self, kind: str, key: dict, fn):
        from ddlib.cache import cached_images

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
        path = self.out / "references.json"
        refs = json.loads(path.read_text()) if path.is_file() else {}
        refs[label] = {"spec": reference, "count": count, **{k: st.provenance.get(k) for k in keep}}
        tmp = path.with_name(f".references.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(refs, indent=1, default=str) + "\n")
        os.replace(tmp, path)
        return label

    def image_reference(self, images, name: str) -> str:
        """Register uint8 ``images`` (e.g. the validation images of the classes a model was trained on) as a
        FID reference called ``name``; their Inception features are cached under the images' sha1.
        Returns the label to put in tables; pass ``name`` as ``reference`` to :meth:`score`.
        """
        import hashlib

        import numpy as np

        from ddlib.metrics import compute_features

        sha = hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest()
        path = self.cache_root / "features" / f"{sha[:20]}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            feats = compute_features(images, device=self.device_str, progress=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
            np.savez(tmp, features=feats, seconds=time.perf_counter() - t0)
            os.replace(tmp, path)
        label = f"{name} ({len(images)} images)"
        self._image_refs[name] = (path, label)
        refs_path = self.out / "references.json"
        refs = json.loads(refs_path.read_text()) if refs_path.is_file() else {}
        refs[label] = {"spec": name, "count": len(images), "subset": "given images", "images_sha1": sha,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime)),
                       "hardware": self.hardware}
        refs_path.write_text(json.dumps(refs, indent=1, default=str) + "\n")
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
        from ddlib.metrics import FIDStatistics, compute_features, fid, kid

        t0 = time.perf_counter()
        ref_feats, ref = self._reference(reference, count)
        feats = compute_features(images, device=self.device_str, progress=False)
        value = fid(FIDStatistics.from_features(feats), ref, features_a=feats)
        kid_mean, kid_std = kid(feats, ref_feats, subset_size=min(1000, len(feats), len(ref_feats)))
        return {"fid": round(value, 3), "kid": round(kid_mean, 5), "kid_std": round(kid_std, 5),
                "n_samples": int(len(feats)), "reference_n": int(ref.n), "score_s": round(time.perf_counter() - t0, 1)}

    @property
    def device_str(self) -> str:
        return str(self.device)

    def samples(self, run, *, n: int, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0, seed: int = 0,
                batch_size: int = 100, guidance: float = 1.0, label: int | None = None) -> dict:
        """``n`` uint8 samples of a cached run, themselves cached: ``{"images", "sample_s", "key"}``.

        Image i starts from x_T seeded with ``seed + i`` (:mod:`ddlib.generate`), so the first k images
        of a larger set are the images a smaller request would show; figures reuse the scored sets.
        ``sample_s`` is the time the sampling took when it ran (also when read back from the cache).
        """
        from ddlib.generate import generate

        key = {"run": run.key, "n": n, "sampler": sampler, "num_steps": num_steps if sampler == "ddim" else None,
               "eta": eta if sampler == "ddim" else None, "seed": seed, "batch_size": batch_size,
               "guidance": guidance, "label": label}
        timing = {}

        def make():
            trained = run.load(self.device)
            kw = {"guidance": guidance, "label": label} if trained.model.config.num_classes is not None else {}
            t0 = time.perf_counter()
            images, _ = generate(trained.model, trained.schedule, n, sampler=sampler, num_steps=num_steps, eta=eta,
                                 seed=seed, batch_size=batch_size, progress=False, **kw)
            timing["sample_s"] = time.perf_counter() - t0
            return images

        images = self.cached_images("samples", key, make)
        info = self.cached("sample_time", key, lambda: {"sample_s": round(timing.get("sample_s", float("nan")), 2)})
        return {"images": images, "sample_s": info["sample_s"], "key": key}

    def sample_and_score(self, run, *, n: int, sampler: str = "ddim", num_steps: int = 50, eta: float = 0.0,
                         reference: str, reference_count: int | None = None, batch_size: int = 100, seed: int = 0,
                         guidance: float = 1.0, label: int | None = None, inception_score: bool = False) -> dict:
        """FID/KID of :meth:`samples` against a reference; cached by (samples, reference).

        The result holds fid, kid, kid_std, n_samples, reference_n, sample_s (sampling seconds),
        score_s (Inception seconds) and wall_s (both); with ``inception_score`` also ``inception_score``,
        the cell of :func:`ddlib.metrics.inception_score_cell` ("n/a: …" where the network's head is missing).
        """
        from ddlib.inception import PREPROCESSING_ID

        s = self.samples(run, n=n, sampler=sampler, num_steps=num_steps, eta=eta, seed=seed, batch_size=batch_size,
                         guidance=guidance, label=label)
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
    """The provenance columns of a row as one table cell: ``profile · hardware · wall s · n · reference``."""
    from ddlib.report import format_cell

    wall = row.get("wall_s")
    parts = [str(row.get("profile")), str(row.get("hardware")),
             f"{format_cell(float(wall), 3)} s" if wall is not None else "wall —",
             f"n = {row['n_samples']}" if row.get("n_samples") is not None else "n —",
             f"ref {row['reference']}" if row.get("reference") else "no ref"]
    return " · ".join(parts)


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

    from ddlib.cache import default_root, hardware_string
    from ddlib.train import resolve_device

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


# --------------------------------------------------------------------------------------------------
# command line


def add_arguments(p: argparse.ArgumentParser, pdf: bool = False) -> None:
    p.add_argument("--profile", default="quick", help="profile name (notebooks/profiles/NAME.yaml) or a YAML path")
    p.add_argument("--reports-dir", default="reports", help="output root; the report goes to REPORTS_DIR/PROFILE/")
    if not pdf:
        p.add_argument("--only", nargs="+", default=None, metavar="NN", help="run only these notebooks (e.g. 01 02)")
        p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                       help="override profile parameters (values parsed as YAML), e.g. --set train_steps=200")
        p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)


def _overrides(pairs: Sequence[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise DDLibError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_report(args: argparse.Namespace) -> int:
    try:
        out = run_report(args.profile, reports_dir=args.reports_dir, notebooks=args.only, overrides=_overrides(args.set),
                         notebooks_dir=Path(getattr(args, "notebooks_dir", NOTEBOOKS_DIR)))
    except NotebookFailure:
        return 1  # already printed: "notebook NN_name failed in cell K: …"
    print(f"report: {out / 'report.html'}" if (out / "report.html").is_file() else f"outputs in {out}")
    return 0


def cmd_pdf(args: argparse.Namespace) -> int:
    root = _resolve_reports_dir(args.reports_dir)
    name = load_profile(args.profile)["profile"] if not (root / args.profile).is_dir() else args.profile
    path = build_pdf(root / name)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddlib.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("report", help="run the notebooks of a profile and build report.html"))
    add_arguments(sub.add_parser("pdf", help="convert a finished report to report.pdf"), pdf=True)
    args = parser.parse_args(argv)
    try:
        return cmd_report(args) if args.command == "report" else cmd_pdf(args)
    except DDLibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
