"""The report run: numbered notebooks executed by papermill for a profile, then report.html / report.pdf.

Command line (also ``python -m ddlib report …`` / ``python -m ddlib pdf …``)::

    python -m ddlib.lab.pipeline report --profile smoke      # notebooks → reports/smoke/, then report.html
    python -m ddlib.lab.pipeline pdf --profile smoke         # reports/smoke/report.pdf (needs xelatex, pandoc)

What ``report`` does, for profile P (``notebooks/profiles/P.yaml``, a flat papermill parameter file):

1. marks ``reports/P/`` incomplete: deletes ``report.html``/``report.pdf`` and the previous run's
   ``notebooks/``, ``tables/`` and ``figures/``, and writes ``STATUS`` = ``incomplete …``;
2. runs ``notebooks/NN_*.py`` (jupytext percent-format sources) in order with the kernel ``ddlib`` (installed by ``make setup``; the
   run installs it into this interpreter's prefix if it is missing), working directory the repository
   root, each notebook getting the profile's parameters it declares in its ``parameters`` cell, plus
   ``profile``, ``reports_dir`` and ``cache_dir``; executed copies go to ``reports/P/notebooks/``;
3. after each notebook checks that the tables and figures it must write exist and are non-empty;
4. on the first failure prints ``notebook NN_name failed in cell K: <error>`` (K is the ``In [K]``
   label of the failing cell in the executed copy), writes ``STATUS`` = ``FAILED …`` and exits 1 —
   no report.html is written, so nothing looks complete;
5. converts the executed ``05_summary`` notebook to ``report.html`` with its code hidden, and writes
   ``STATUS`` = ``complete``.

Expensive steps inside the notebooks are cached by config hash (:mod:`ddlib.lab.cache`), so a second run
only re-executes the notebooks and reuses checkpoints and metrics; ``FORCE=1`` recomputes.

Notebooks call :func:`ddlib.lab.context.start` to get a :class:`ddlib.lab.context.Context`; the HTML and PDF
come from :mod:`ddlib.lab.export`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ddlib.lab.context import REPO_ROOT, _resolve_reports_dir, check_outputs
from ddlib.errors import DDLibError, check_name, raise_interrupted
from ddlib.files import atomic_open, atomic_write_text
from ddlib.lab.export import REPORT_NOTEBOOK, build_html, build_pdf

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES_DIR = NOTEBOOKS_DIR / "profiles"
KERNEL_NAME = "ddlib"

# --------------------------------------------------------------------------------------------------
# profiles and notebooks


def notebook_paths(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebook sources ``NN_*.py`` (jupytext percent format) in reading order."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.py"))


def read_notebook(path: Path):
    """A notebook source (``.py`` in jupytext's percent format, or ``.ipynb``) as an nbformat notebook."""
    import jupytext

    try:
        return jupytext.read(path)
    except Exception as err:  # a syntax jupytext cannot parse, an unreadable file
        raise DDLibError(f"cannot read notebook {path}: {err}") from None


def write_notebook(path: Path, output: Path) -> None:
    """Write the source ``path`` as an ``.ipynb`` at ``output`` (papermill's input and output)."""
    import nbformat

    with atomic_open(output, "w", encoding="utf-8") as f:
        nbformat.write(read_notebook(path), f)


def load_profile(profile: str, profiles_dir: Path = PROFILES_DIR) -> dict:
    """The parameters of ``notebooks/profiles/<profile>.yaml`` (or of a path to a YAML file)."""
    import yaml

    path = Path(profile) if profile.endswith((".yaml", ".yml")) else profiles_dir / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir.glob("*.yaml"))) or "none"
        raise DDLibError(f"no profile {profile!r} (looked for {path}); profiles: {known}")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise DDLibError(f"profile {path} is not valid YAML{where} ({problem}); fix that line") from None
    if not isinstance(params, dict):
        raise DDLibError(f"{path} must hold a mapping of parameter names to values")
    params.setdefault("profile", path.stem)
    return params


def check_value_types(params: dict, defaults: dict, where: str = "profile") -> None:
    """Each value must be of the kind its notebook's default is (number, bool, text, list, mapping),
    and numbers finite, so that a typo is reported with the parameter's name before any notebook runs."""
    import ast
    import math

    kinds = ((bool, "true or false"), ((int, float), "a number"), (str, "text"), (list, "a list"), (dict, "a mapping"))
    for key, value in params.items():
        if value is None:  # "none"/"all" where a notebook takes it (e.g. a limit)
            continue
        try:
            default = ast.literal_eval(defaults[key]) if isinstance(defaults.get(key), str) else None
        except (ValueError, SyntaxError):
            default = None
        if isinstance(value, float) and not math.isfinite(value):
            raise DDLibError(f"{where} parameter {key} must be finite, got {value}")
        for kind, name in kinds:
            if isinstance(default, kind) and (kind is bool or not isinstance(default, bool)):
                if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                    raise DDLibError(f"{where} parameter {key} must be {name} (the notebooks' default is {default!r}), "
                                     f"got {value!r}")
                break


def notebook_parameters(path: Path) -> dict:
    """The names (and default values, as source text) declared in a notebook's ``parameters`` cell."""
    import tempfile

    import papermill

    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{path.stem}.ipynb"
        write_notebook(path, ipynb)
        return {k: v.get("default") for k, v in papermill.inspect_notebook(str(ipynb)).items()}


def profile_notebooks_dir(params: dict, default: Path = NOTEBOOKS_DIR) -> Path:
    """Where a profile's notebooks are: its ``notebooks_dir`` key (relative to the repository root), else ``default``.

    A profile with its own folder (``pretrained``: notebooks/pretrained/) runs only the notebooks there, and the
    other profiles, which read notebooks/, never run those.
    """
    folder = params.get("notebooks_dir")
    return default if folder is None else (Path(folder) if Path(folder).is_absolute() else REPO_ROOT / folder)


def check_profile(params: dict, notebooks: Sequence[Path]) -> None:
    """Every profile key must be a parameter of some notebook (a typo would otherwise be silently ignored)."""
    declared: dict = {}
    for nb in notebooks:
        declared.update(notebook_parameters(nb))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise DDLibError(f"profile parameter(s) {', '.join(unknown)} are not declared by any notebook's parameters cell")
    check_value_types(params, declared)


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
    write_notebook(path, output)  # papermill reads .ipynb: the source, converted, is executed in place
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(output), str(output), parameters=params, kernel_name=kernel, cwd=str(cwd),
                                   progress_bar=False, log_output=False, request_save_on_cell_execute=True)
    except PapermillExecutionError as err:
        raise NotebookFailure(path.stem, err.exec_count, _error_line(err.ename, err.evalue), output) from None
    except Exception as err:  # kernel died, timeout, bad notebook file
        raise NotebookFailure(path.stem, None, _error_line(type(err).__name__, str(err)), output) from None
    return time.perf_counter() - t0


def _write_status(out_dir: Path, text: str) -> None:
    atomic_write_text(out_dir / "STATUS", text.rstrip() + "\n")


def run_report(profile: str, *, reports_dir: str | Path | None = None, notebooks: Sequence[str] | None = None,
               overrides: dict | None = None, notebooks_dir: Path = NOTEBOOKS_DIR, kernel: str = KERNEL_NAME,
               html: bool = True, log: Callable[[str], None] = print) -> Path:
    """Execute the numbered notebooks for ``profile`` into ``<reports_dir>/<profile>/``; returns that folder.

    ``notebooks``: run only these (names or ``NN`` prefixes; the folder is then not cleared and no HTML
    is built unless ``05_summary`` is among them). ``overrides`` replace profile parameters.
    Raises :class:`NotebookFailure` on the first failing notebook, after marking the report FAILED.
    """
    params = {**load_profile(profile), **(overrides or {})}
    if "notebooks_dir" in params:
        notebooks_dir = profile_notebooks_dir(params)
        params.pop("notebooks_dir")
    profile_name = check_name("profile name", params["profile"])  # it names a folder that is emptied below
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
    _write_status(out_dir, f"incomplete: running profile {profile_name} since {time.strftime('%Y-%m-%d %H:%M:%S')} "
                           f"(pid {os.getpid()})")
    ensure_kernel(kernel)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # libgomp's default spin-waiting makes PyTorch's CPU threads crawl (measured: 200× slower for a small UNet)
    # when the cores are shared with other work; passive waiting costs little when they are not.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ddlib.lab.cache import FORCE_SINCE_ENV, force_enabled

    if force_enabled():  # FORCE=1 recomputes what this run touches once; later notebooks reuse it
        os.environ[FORCE_SINCE_ENV] = repr(time.time())

    timings_path = out_dir / "timings.json"
    try:
        timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    except ValueError:  # torn by a killed run: the timings of this run replace it
        timings = {}
    t_all = time.perf_counter()
    with _status_on_interrupt(out_dir, profile_name):
        _run_notebooks(selected, out_dir, params, profile_name, kernel, log, timings, timings_path)
    if html and any(nb.stem == REPORT_NOTEBOOK for nb in selected):
        path = build_html(out_dir)
        log(f"[{profile_name}] wrote {path}")
    total = time.perf_counter() - t_all
    # a partial run (--only) completes the report only when every notebook's outputs are there
    done = all((out_dir / "notebooks" / f"{nb.stem}.ipynb").is_file() and not check_outputs(out_dir, nb.stem) for nb in all_nbs)
    finished = time.strftime('%Y-%m-%d %H:%M:%S')
    if full:
        _write_status(out_dir, f"complete: profile {profile_name}, {len(all_nbs)} of {len(all_nbs)} notebooks run in "
                               f"{total:.0f} s, finished {finished}")
    elif done and (out_dir / "report.html").is_file():
        _write_status(out_dir, f"complete: profile {profile_name}; this run: {', '.join(nb.stem for nb in selected)} in "
                               f"{total:.0f} s, finished {finished}; the other notebooks' outputs are from earlier runs "
                               f"(timings.json: when, and at which commit)")
    else:
        _write_status(out_dir, f"incomplete: ran {', '.join(nb.stem for nb in selected)}; run the whole profile "
                               f"(or {REPORT_NOTEBOOK}) for a report")
    return out_dir


@contextmanager
def _status_on_interrupt(out_dir: Path, profile_name: str):
    """``STATUS`` says ``interrupted`` when SIGINT or SIGTERM stops the run (SIGTERM is turned into the same
    KeyboardInterrupt as Ctrl-C here, in the main thread). SIGKILL cannot be caught: STATUS then keeps
    ``incomplete: running … (pid N)``, and the pid tells a reader the run is gone."""
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupted)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    except KeyboardInterrupt as err:
        why = str(err) or "SIGINT"
        _write_status(out_dir, f"interrupted: profile {profile_name} stopped by {why} at "
                               f"{time.strftime('%Y-%m-%d %H:%M:%S')}; run it again to finish (cached steps are reused)")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_notebooks(selected, out_dir, params, profile_name, kernel, log, timings, timings_path) -> None:
    from importlib.metadata import version

    from ddlib.lab.assemble import git_revision

    revision, torch_version = git_revision(REPO_ROOT), version("torch")  # what each notebook's numbers were made with
    for nb in selected:
        output = out_dir / "notebooks" / f"{nb.stem}.ipynb"
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
        timings[nb.stem] = {"wall_s": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "commit": revision, "torch": torch_version}
        atomic_write_text(timings_path, json.dumps(timings, indent=1) + "\n")
        log(f"[{profile_name}] {nb.stem} done in {seconds:.0f} s")


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
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise DDLibError(f"--set {pair!r}: the value is not valid YAML; quote text values") from None
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
    check_name("profile name", name)
    path = build_pdf(root / name)
    print(f"wrote {path}")
    return 0
