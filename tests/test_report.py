"""The notebook report: profiles, caches, table/figure writers, a failing notebook, and the smoke report end to end.

The end-to-end test runs ``python -m ddlib report --profile smoke`` (what ``make report
PROFILE=smoke`` runs) into a temporary folder, checks every executed notebook for error outputs and
every expected table and figure, then builds the PDF (``make pdf``'s command) when xelatex and pandoc
are installed (``make pdf-deps``) and checks that its text holds every table's heading.
Cached checkpoints and metrics under ``.cache/ddlib/report`` are reused when present, as in a second
``make report``; a clean clone computes everything (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from ddlib.lab import context, export, pipeline
from ddlib.lab.cache import cached_result, cached_train, run_key
from ddlib.data import synthetic_dataset
from ddlib.errors import DDLibError
from ddlib.lab.figures import smooth
from ddlib.lab.tables import column_widths, format_cell, markdown_table, read_table, relayout, write_table
from ddlib.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "notebooks" / "profiles").glob("*.yaml"))


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'").replace("\u2018", "'")).strip()


# --------------------------------------------------------------------------------------------------
# notebooks and profiles


def test_notebooks_are_numbered_and_have_one_literal_parameters_cell():
    nbs = pipeline.notebook_paths()
    assert [p.stem[:2] for p in nbs] == ["00", "01", "02", "03", "04", "05"]
    assert not list(pipeline.NOTEBOOKS_DIR.glob("*.ipynb")), "notebook sources are the jupytext .py files alone"
    for path in nbs:
        nb = pipeline.read_notebook(path)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name} needs exactly one cell tagged parameters"
        for node in ast.parse(params[0].source).body:  # plain literals only: papermill must be able to replace them
            assert isinstance(node, ast.Assign), f"{path.name}: only assignments in the parameters cell"
            ast.literal_eval(node.value)
        for cell in nb.cells:
            if cell.cell_type == "code":
                exercise = "nbgrader" in cell.metadata  # the Exercises cells define the functions students write
                assert exercise or not re.search(r"^\s*(def|class)\s", cell.source, re.M), f"{path.name} defines logic: {cell.source[:60]}"
                assert not cell.get("outputs"), f"{path.name} is committed with outputs"


def test_notebook_defaults_are_the_quick_profile():
    """Run top to bottom in JupyterLab, a notebook does what `make report` (PROFILE=quick) does."""
    quick = pipeline.load_profile("quick")
    for path in pipeline.notebook_paths():
        for name, default in pipeline.notebook_parameters(path).items():
            if name in quick:
                assert ast.literal_eval(default) == quick[name], f"{path.name}: {name} = {default}, quick has {quick[name]!r}"


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_profiles_only_set_declared_parameters(profile):
    params = pipeline.load_profile(profile.stem)
    assert params["profile"] == profile.stem
    notebooks = pipeline.notebook_paths(pipeline.profile_notebooks_dir(params))  # pretrained: notebooks/pretrained/
    pipeline.check_profile({k: v for k, v in params.items() if k != "notebooks_dir"}, notebooks)  # raises on a typo


def test_unknown_profile_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"profile": "bad", "train_stepz": 3}))
    with pytest.raises(DDLibError, match="train_stepz"):
        pipeline.check_profile(pipeline.load_profile(str(bad)), pipeline.notebook_paths())


# --------------------------------------------------------------------------------------------------
# caches


TINY = dict(dataset="synthetic:train", preset="test", batch_size=8, lr=1e-3, warmup_steps=1, log_every=1,
            checkpoint_every=2, unet={"base_channels": 8, "norm_groups": 4, "attention_levels": []})


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a shared machine cannot slow one thread's spin-waits."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cached_train_reuses_resumes_and_forces(tmp_path, monkeypatch, one_thread):
    data = synthetic_dataset(32)
    monkeypatch.delenv("FORCE", raising=False)
    monkeypatch.delenv("DDLIB_FORCE_SINCE", raising=False)
    cfg = TrainConfig(steps=4, **TINY)
    first = cached_train(cfg, tmp_path, data=data, device="cpu")
    assert not first.reused and first.run_dir == tmp_path / "runs" / run_key(cfg)
    assert (first.run_dir / "done.json").is_file() and len(first.log()) == 4
    again = cached_train(cfg, tmp_path, data=data, device="cpu")
    assert again.reused and again.wall_s == first.wall_s and again.run_dir == first.run_dir
    # log_every does not change the weights: same folder; steps does: a new one
    assert run_key(TrainConfig(steps=4, **{**TINY, "log_every": 2})) == run_key(cfg)
    longer = TrainConfig(steps=6, **TINY)
    assert run_key(longer) != run_key(cfg)
    # an interrupted run (checkpoint at step 2, no done.json) resumes from its checkpoint
    partial_dir = tmp_path / "runs" / run_key(longer)
    train(TrainConfig(steps=2, **TINY), partial_dir, data=data, device="cpu", progress=False)
    resumed = cached_train(longer, tmp_path, data=data, device="cpu")
    assert resumed.resumed_from == 2 and not resumed.reused
    monkeypatch.setenv("FORCE", "1")
    forced = cached_train(cfg, tmp_path, data=data, device="cpu")
    assert not forced.reused and forced.resumed_from == 0
    import time

    monkeypatch.setenv("DDLIB_FORCE_SINCE", repr(time.time() - 3600))  # a report run that began an hour ago
    assert cached_train(cfg, tmp_path, data=data, device="cpu").reused  # trained during it: not again


def test_cached_result_keys_and_force(tmp_path, monkeypatch):
    monkeypatch.delenv("FORCE", raising=False)
    calls = []

    def fn():
        calls.append(1)
        return {"fid": 12.5}

    a = cached_result("score", {"run": "x", "n": 10}, fn, tmp_path)
    b = cached_result("score", {"run": "x", "n": 10}, fn, tmp_path)
    c = cached_result("score", {"run": "x", "n": 20}, fn, tmp_path)
    assert a["fid"] == b["fid"] == 12.5 and not a["cached"] and b["cached"] and not c["cached"] and len(calls) == 2
    monkeypatch.setenv("FORCE", "1")
    monkeypatch.delenv("DDLIB_FORCE_SINCE", raising=False)
    cached_result("score", {"run": "x", "n": 10}, fn, tmp_path)
    assert len(calls) == 3
    # inside a report run (which sets DDLIB_FORCE_SINCE to its start), FORCE recomputes an entry once:
    # what an earlier notebook of the same run wrote is reused
    import time

    monkeypatch.setenv("DDLIB_FORCE_SINCE", repr(time.time() + 1e-3))
    time.sleep(0.01)
    cached_result("score", {"run": "x", "n": 20}, fn, tmp_path)  # written before the run began: recomputed
    cached_result("score", {"run": "x", "n": 20}, fn, tmp_path)  # written during the run: reused
    assert len(calls) == 4


# --------------------------------------------------------------------------------------------------
# tables and provenance


def test_tables_carry_provenance_and_round_trip(tmp_path):
    ctx = context.start("unit", "00_test", reports_dir=tmp_path, cache_dir=tmp_path / "cache", device="cpu")
    rows = [ctx.row(wall_s=1.234, n_samples=50, reference="cifar10:test (10000 images)", sampler="DDIM", steps=50,
                    fid=12.3456789, note="a | b")]
    shown = ctx.table("demo", rows, "Demo table", columns=["sampler", "steps", "fid"])
    md = (ctx.tables_dir / "demo.md").read_text()
    assert md.startswith("### Demo table\n") and "a \\| b" not in md  # only the chosen columns + provenance
    assert "| sampler | steps | fid | n | wall s | prov. |" in md and "| n samples |" not in md
    assert "| DDIM | 50 | 12.35 | 50 | 1.234 | a |" in md
    assert f"*Provenance: [a] unit · {ctx.hardware} · ref cifar10:test (10000 images).*" in md
    assert shown is not None
    back = read_table(ctx.tables_dir / "demo.csv")
    assert back[0]["fid"] == pytest.approx(12.3456789) and back[0]["n_samples"] == 50 and back[0]["profile"] == "unit"
    assert json.loads((ctx.tables_dir / "index.json").read_text())["demo"]["title"] == "Demo table"
    with pytest.raises(DDLibError, match="provenance"):
        ctx.table("bad", [{"fid": 1.0}], "Bad")
    assert "\\|" in markdown_table([{"a": "x|y"}])
    with pytest.raises(ValueError):
        write_table([], tmp_path / "empty", "Empty")


def test_a_score_and_its_interval_share_a_cell():
    rows = [{"model": "a", "fid": 286.91, "fid_lo": 275.2, "fid_hi": 297.5, "n": 64},
            {"model": "b", "fid": 3.17, "fid_lo": None, "fid_hi": None, "n": None}]
    md = markdown_table(rows).splitlines()
    assert md[0] == "| model | fid [lo, hi] | n |"
    assert md[2:] == ["| a | 286.9 [275.2, 297.5] | 64 |", "| b | 3.17 | — |"]
    # headers that name n keep it after the interval; a lone "x lo" column is left as it is
    md = markdown_table([{"fid (n = 64)": 1.0, "fid lo": 0.5, "fid hi": 2.0, "kid lo": 0.1}]).splitlines()
    assert md[0] == "| fid [lo, hi] (n = 64) | kid lo |" and md[2] == "| 1 [0.5, 2] | 0.1 |"


def test_pdf_column_widths_give_every_column_its_longest_word():
    """pandoc shares a wide table's line out in proportion to the dashes, and LaTeX breaks cells only at spaces
    (and after a hyphen in a word), so a column narrower than its longest word prints into its neighbour."""
    narrow = column_widths(["s", "fid"], [["10", "12.5"]])
    assert narrow == [3, 4]  # fits on one line: every column as wide as its text (at least 3 dashes)
    headers = ["method", "dataset", "fid [lo, hi]", "source", "checked", "n"]
    body = [["DDPM (this package, the seed's ancestral sampler)", "tiny-imagenet-100:train", "286.9 [275.2, 297.5]",
             "Ho et al. (2020), Table 1 and the appendix", "agrees: Ho et al. 2020, Tab. 1, as printed", "50000"]] * 3
    w = column_widths(headers, body)
    line = int((525 - 12 * len(headers)) / 4.7)  # the template's 7.3 in at a digit's 4.7 pt, less the column gaps
    assert sum(w) <= line < sum(min(len(c), 30) for c in body[0])  # too wide for one line: shared out
    longest = [9, 9, 7, 8, 7, 5]  # "ancestral", "imagenet-", "[275.2,", "appendix", "agrees:", "50000"
    assert all(wi >= lw for wi, lw in zip(w, longest)), w
    assert w[0] > w[5] and w[3] > w[5]  # the spare goes to the columns with text to wrap


def test_relayout_prints_an_older_table_like_a_new_one():
    rows = [{"setting": "DDIM S=10", "fid": 327.4, "fid_lo": 313.2, "fid_hi": 340.6, "kid": 0.2, "kid_lo": 0.19,
             "kid_hi": 0.21}]
    old = ("### T\n\n| setting | fid | fid lo | fid hi | kid | kid lo | kid hi |\n"
           "| ------------------------------ | ----- | ------ | ------ | --- | --- | --- |\n"
           "| DDIM S=10 | 327.4 | 313.2 | 340.6 | 0.2 | 0.19 | 0.21 |\n\n*a note*\n")
    new = relayout(old)
    assert new == "### T\n\n" + markdown_table(rows) + "\n\n*a note*\n"
    assert relayout(new) == new


# --------------------------------------------------------------------------------------------------
# a failing notebook stops the run


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "ddlib", "display_name": "Python (ddlib)", "language": "python"}
    jupytext.write(nb, path, fmt="py:percent")


@pytest.mark.slow  # a real papermill run: 12 s on 2 cores
def test_failing_notebook_stops_the_report_with_its_name_and_error(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_fine.py", "x = 1 + 1", "print(x)")
    _notebook(nbs / "02_broken.py", "y = 2", "raise ValueError('the model diverged')", "print('never')")
    _notebook(nbs / "03_after.py", "print('not reached')")
    profile = tmp_path / "t.yaml"
    profile.write_text("profile: t\n")
    out = tmp_path / "reports"
    (out / "t").mkdir(parents=True)
    (out / "t" / "report.html").write_text("stale")  # a previous run's report must not survive a failure

    proc = subprocess.run([sys.executable, "-m", "ddlib", "report", "--profile", str(profile),
                           "--reports-dir", str(out), "--notebooks-dir", str(nbs)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("notebook "))
    m = re.fullmatch(r"notebook 02_broken failed in cell (\d+): ValueError: the model diverged", line)
    assert m, line
    executed = nbformat.read(out / "t" / "notebooks" / "02_broken.ipynb", as_version=4)
    failing = [c for c in executed.cells if c.cell_type == "code" and c.get("execution_count") == int(m.group(1))]
    assert len(failing) == 1 and "raise ValueError" in failing[0].source
    assert (out / "t" / "notebooks" / "01_fine.ipynb").is_file()
    assert not (out / "t" / "notebooks" / "03_after.ipynb").exists()
    assert not (out / "t" / "report.html").exists()
    assert (out / "t" / "STATUS").read_text().startswith("FAILED: notebook 02_broken failed in cell")
    with pytest.raises(DDLibError, match="no complete report"):
        export.build_pdf(out / "t")


# --------------------------------------------------------------------------------------------------
# the smoke report end to end


def _errors(nb) -> list[str]:
    found = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                found.append(f"{o.ename}: {o.evalue}")
            elif o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text:
                found.append(o.text[-300:])
    return found


def _check_in_browser(html: Path, screenshot: Path) -> None:
    """Headless Chromium, network off: every image loads, every formula is laid out as MathML, no raw ``$…$``.
    CI installs Chromium (make browser-deps); elsewhere the check is skipped when it is missing."""
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        return
    seen = export.browser_check(html, screenshot)
    assert seen["images"] > 0 and seen["broken"] == 0, seen
    assert seen["math"] > 0 and seen["typeset"] == seen["math"] and seen["raw"] == 0, seen
    assert screenshot.stat().st_size > 10_000


def test_report_mathematics_is_rendered_at_build_time():
    html = ('<html><head><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js"></script></head>'
            '<body><p>Loss $L_\\text{simple}$ costs $5, and $$\\bar\\alpha_t = \\prod_s (1-\\beta_s)$$.</p>'
            '<pre>$x$ stays code</pre><p>a formula over a line $\\sigma_t^2 =\n\\beta_t$ break</p></body></html>')
    out = export.render_math(html)
    assert "cdnjs" not in out and out.count("<math") == 3
    assert 'display="block"' in out and "<msub><mi>L</mi><mtext>simple</mtext></msub>" in out
    assert "costs $5, and" in out and "<pre>$x$ stays code</pre>" in out
    with pytest.raises(DDLibError, match="cannot render the formula"):
        export.render_math("<p>$\\frac{1}{$</p>")


def _figures_not_displayed(out: Path) -> list[str]:
    """Figures (figures/index.json) whose PNG bytes are not among the image outputs of the notebook that wrote them."""
    import base64

    missing = []
    for name, entry in json.loads((out / "figures" / "index.json").read_text()).items():
        nb = nbformat.read(out / "notebooks" / f"{entry['notebook']}.ipynb", as_version=4)
        shown = {"".join(o["data"]["image/png"]).replace("\n", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []) if "image/png" in o.get("data", {})}
        if base64.b64encode((out / "figures" / f"{name}.png").read_bytes()).decode() not in shown:
            missing.append(f"{entry['notebook']}: {name}")
    return missing


@pytest.mark.slow
def test_smoke_report_end_to_end(tmp_path):
    out_root = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "ddlib", "report", "--profile", "smoke", "--reports-dir",
                           str(out_root)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = out_root / "smoke"
    assert (out / "STATUS").read_text().startswith("complete")

    for path in pipeline.notebook_paths():
        executed = out / "notebooks" / f"{path.stem}.ipynb"
        assert executed.is_file(), f"{path.name} was not executed"
        assert not _errors(nbformat.read(executed, as_version=4)), f"{path.name}: {_errors(nbformat.read(executed, as_version=4))}"
        assert not context.check_outputs(out, path.stem), f"{path.stem} missing {context.check_outputs(out, path.stem)}"

    # every figure a notebook writes is displayed in that notebook
    figure_index = json.loads((out / "figures" / "index.json").read_text())
    for path in pipeline.notebook_paths():
        executed = nbformat.read(out / "notebooks" / f"{path.stem}.ipynb", as_version=4)
        shown = sum("image/png" in o.get("data", {}) for c in executed.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
        written = [n for n, e in figure_index.items() if e["notebook"] == path.stem]
        assert shown >= len(written), f"{path.stem} writes {len(written)} figures but displays {shown}"

    index = json.loads((out / "tables" / "index.json").read_text())
    titles = {name: entry["title"] for name, entry in index.items()}
    for name in titles:
        for ext in ("csv", "md"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0
        rows = read_table(out / "tables" / f"{name}.csv")
        assert rows and all(set(context.PROVENANCE_COLUMNS) <= set(r) and r["profile"] for r in rows), name
    for name in json.loads((out / "figures" / "index.json").read_text()):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    assert not _figures_not_displayed(out), f"figures written but not displayed: {_figures_not_displayed(out)}"

    html = (out / "report.html").read_text()
    assert "profile" in html and "smoke" in html
    for title in titles.values():
        assert title.replace("&", "&amp;") in html, title
    assert html.count("data:image/png;base64") >= len(json.loads((out / "figures" / "index.json").read_text()))
    assert "<math" in html and "cdnjs" not in html and not re.search(r"<script[^>]*mathjax", html, re.I)  # offline
    _check_in_browser(out / "report.html", tmp_path / "report.png")

    # a second run of a notebook reuses the cached model and metrics
    proc = subprocess.run([sys.executable, "-m", "ddlib", "report", "--profile", "smoke", "--reports-dir",
                           str(out_root), "--only", "01"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert read_table(out / "tables" / "train_ddpm.csv")[0]["reused"] is True
    assert (out / "STATUS").read_text().startswith("incomplete")  # 05 must run again to make a report
    proc = subprocess.run([sys.executable, "-m", "ddlib", "report", "--profile", "smoke", "--reports-dir",
                           str(out_root), "--only", "05"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0 and (out / "STATUS").read_text().startswith("complete: profile smoke; this run: 05_summary")

    if export.pdf_requirements() or shutil.which("pdftotext") is None:
        pytest.skip("PDF check skipped: xelatex, pandoc or pdftotext missing (make pdf-deps installs them)")
    proc = subprocess.run([sys.executable, "-m", "ddlib", "pdf", "--profile", "smoke", "--reports-dir",
                           str(out_root)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    pdf = out / "report.pdf"
    assert pdf.stat().st_size > 10_000
    text = _normalise(subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                                     check=True).stdout)
    for title in titles.values():
        assert _normalise(title) in text, f"PDF lacks the heading {title!r}"
    assert "Profile: smoke" in text
    pages = [_normalise(pg) for pg in subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                                                      text=True, check=True).stdout.split("\f")]
    start = next(i for i, pg in enumerate(pages) if "Table I. The seed report" in pg)
    assert "LDM" in pages[start] and "Provenance: [a] seed report" in pages[start], "Table I runs over a page"
    measured = [format_cell(r[k]) for r in read_table(out / "tables" / "literature.csv") if r.get("fid_lo") is not None
                for k in ("fid", "fid_lo", "fid_hi")]
    assert measured
    for v in measured:  # each number stands apart: a column narrower than a number prints it into its neighbour
        assert re.search(rf"(?<![\d.]){re.escape(v)}(?![\d.])", pages[start]), f"{v} runs into a neighbour in Table I"


def test_smoothing_is_centred_so_curves_do_not_lag():
    line = [3.0 * i + 1 for i in range(20)]
    assert smooth(line, 5)[2:-2] == pytest.approx(line[2:-2])  # a straight line is its own centred average
    assert smooth([1.0, 2.0, 6.0], 3) == pytest.approx([1.5, 3.0, 4.0])  # ends average the points that exist


@pytest.mark.slow
def test_make_lab_serves_the_notebooks_with_the_ddlib_kernel():
    """`make lab` starts JupyterLab (as root too) with the notebooks and the .venv's "Python (ddlib)" kernel."""
    import os
    import time
    import urllib.error
    import urllib.request

    if not (REPO / ".venv" / ".ddlib-installed").is_file() or shutil.which("make") is None:
        pytest.skip("needs the .venv that `make setup` builds")
    env = {**os.environ, "JUPYTER_TOKEN": "ddlib-test", "BROWSER": "true"}
    proc = subprocess.Popen(["make", "-s", "lab"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        url, deadline, seen = None, time.time() + 120, []
        while url is None and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
            m = re.search(r"http://(?:localhost|127\.0\.0\.1):(\d+)/lab", line)
            url = f"http://127.0.0.1:{m.group(1)}" if m else None
        assert url, "JupyterLab did not start:\n" + "".join(seen[-15:])

        def get(path, tries=30):
            req = urllib.request.Request(url + path, headers={"Authorization": "token ddlib-test"})
            for i in range(tries):  # the server may print its address a moment before it answers
                try:
                    return json.loads(urllib.request.urlopen(req, timeout=30).read())
                except urllib.error.URLError:
                    if i == tries - 1:
                        raise
                    time.sleep(1)

        specs = get("/api/kernelspecs")["kernelspecs"]
        assert specs["ddlib"]["spec"]["display_name"] == "Python (ddlib)"
        assert Path(os.path.abspath(specs["ddlib"]["spec"]["argv"][0])).is_relative_to(Path(os.path.abspath(REPO / ".venv")))
        names = {c["name"] for c in get("/api/contents")["content"]}
        assert {p.name for p in pipeline.notebook_paths()} <= names
        nb = get("/api/contents/01_ddpm_cifar10.py?type=notebook")["content"]  # jupytext's contents manager
        assert nb["metadata"]["kernelspec"]["name"] == "ddlib"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_distance_to_last_row_in_uint8_levels():
    import torch

    from ddlib.lab.experiments import distance_to_last

    base = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    assert distance_to_last([base + 10, base - 5, base]) == [10.0, 5.0, 0.0]


def test_git_revision_ignores_the_reports_a_run_rewrites(tmp_path):
    import subprocess

    from ddlib.lab.assemble import git_revision

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "t.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_revision(tmp_path)
    assert len(clean) >= 7 and "uncommitted" not in clean
    (tmp_path / "reports" / "t.md").write_text("new\n")  # what a report run does
    assert git_revision(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_revision(tmp_path) == clean + " + uncommitted changes"


# --------------------------------------------------------------------------------------------------
# Table I, Table VI and the first page


SEED = REPO.parent / "shared" / "seed" / "000_cad9da13067567e0.txt"


def _seed_table_one() -> list[list[str]]:
    """The seed report's Table I, parsed from the report's own text (tab-separated rows under its caption)."""
    lines = SEED.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("TABLE I:"))
    rows = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            if rows:
                break
            continue
        rows.append(ln.split("\t"))
    assert rows[0] == ["Model", "Dataset", "IS", "FID", "Source"]
    return rows[1:]


@pytest.mark.skipif(not SEED.is_file(), reason="the seed report lies in ../shared/seed beside the repository")
def test_table_one_holds_every_row_of_the_seed_table_with_where_it_was_checked(tmp_path):
    from ddlib.lab import assemble

    ctx = context.start("t", "05_summary", reports_dir=tmp_path, device="cpu")
    assemble.literature_table(ctx)
    rows = read_table(tmp_path / "t" / "tables" / "literature.csv")
    seed_rows = [r for r in rows if r["profile"] == "seed report, Table I"]
    printed = _seed_table_one()
    assert len(seed_rows) == len(printed) == 5
    for row, (model, dataset, is_, fid, source) in zip(seed_rows, printed):
        assert (row["method"], row["dataset"]) == (model, dataset)
        assert row["fid"] == float(fid) and (row["is"] is None if is_ == "-" else row["is"] == float(is_))
        assert row["source"] == source and row["checked"]
    assert seed_rows[-1]["checked"].startswith("NOT TRACED")  # the LDM/ImageNet 27.0 row
    assert [r["checked"] for r in seed_rows[:4]] == ["agrees: Ho et al. 2020, Tab. 1"] + ["agrees: Song et al. 2021, Tab. 1"] * 3
    md = (tmp_path / "t" / "tables" / "literature.md").read_text()
    assert "Provenance: [a]" in md and "| prov. |" in md  # provenance as footnote keys, not a wrapping column


def test_provenance_is_a_footnote_key_per_distinct_origin():
    rows = [dict(method=m, fid=f, profile=p, hardware="cpu", wall_s=w, n_samples=n, reference="ref")
            for m, f, p, w, n in [("A", 3.0, "quick", 1.0, 32), ("B", 4.0, "quick", 2.0, 64), ("C", None, "lit", None, 50000)]]
    md_rows, keys = context.provenance_keys(rows, ["method", "fid"])
    assert [r["prov."] for r in md_rows] == ["a", "a", "b"] and [r["n"] for r in md_rows] == [32, 64, 50000]
    assert keys == {"quick · cpu · ref ref": "a", "lit · cpu · ref ref": "b"}
    assert [context._letters(i) for i in (0, 25, 26, 27)] == ["a", "z", "aa", "ab"]


def test_first_page_says_when_a_report_is_partial_and_what_each_part_was_measured_with(tmp_path):
    from ddlib.lab import assemble

    out = tmp_path / "p"
    (out / "notebooks").mkdir(parents=True)
    (out / "notebooks" / "01_ddpm_cifar10.ipynb").write_text("{}")
    for name in context.EXPECTED_OUTPUTS["01_ddpm_cifar10"]["tables"]:
        for ext in ("csv", "md"):
            (out / "tables").mkdir(exist_ok=True)
            (out / "tables" / f"{name}.{ext}").write_text("x")
    for name in context.EXPECTED_OUTPUTS["01_ddpm_cifar10"]["figures"]:
        (out / "figures").mkdir(exist_ok=True)
        (out / "figures" / f"{name}.png").write_bytes(b"x")
    banner = " ".join(assemble.partial_banner(out, {"01_ddpm_cifar10": {"commit": "abc1234", "torch": "2.11.0"}}))
    assert banner.startswith("> **Partial report.**")
    assert "02_ddim_cifar10" in banner.split("did not run to the end:")[1].split(".")[0]
    assert "01_ddpm_cifar10 (git abc1234, torch 2.11.0)" in banner


def test_table_six_never_puts_fids_of_different_n_in_one_column():
    from ddlib.lab.assemble import split_by_n

    rows = [{"fid": 47.9, "n": None}, {"fid": 300.0, "fid_lo": 280.0, "fid_hi": 320.0, "n": 32},
            {"fid": 250.0, "fid_lo": 240.0, "fid_hi": 262.5, "n": 64}, {"fid": None, "n": None},
            {"fid": 170.0, "fid_lo": 160.0, "fid_hi": 181.0, "n": 64}]
    cols = split_by_n(rows)
    assert cols == ["FID, n not stated", "FID, n = 32", "FID, n = 64"]
    assert [r["FID, n = 64"] for r in rows] == [None, None, "250 [240, 262.5]", None, "170 [160, 181]"]
    assert [r["FID, n = 32"] for r in rows] == [None, "300 [280, 320]", None, None, None]
    assert [r["FID, n not stated"] for r in rows] == ["47.9", None, None, None, None]


def test_table_six_takes_the_latent_unet_row_for_guidance_and_the_ddpm_schedule_rows(tmp_path):
    from ddlib.lab import assemble

    ctx = context.start("t", "05_summary", reports_dir=tmp_path, device="cpu")
    prov = dict(wall_s=1.0, n_samples=None, reference=None)
    ctx.table("train_latent", [ctx.row(**prov, run="VAE", steps=800, batch_size=16),
                               ctx.row(**prov, run="latent UNet", steps=2500, batch_size=64)], "training")
    ctx.table("guidance_sweep", [ctx.row(wall_s=1.0, n_samples=128, reference="r", scale=3.0, fid=240.0)], "sweep")
    ctx.table("schedules_ddpm", [ctx.row(wall_s=1.0, n_samples=64, reference="r", schedule="cosine",
                                         sampler="DDPM-1000", fid=265.0)], "ddpm")
    assemble.summary_table(ctx)
    rows = {r["experiment"]: r for r in read_table(tmp_path / "t" / "tables" / "summary.csv")}
    guided = rows["latent DDIM + CFG (03)"]
    assert (guided["train_steps"], guided["batch_size"]) == (2500, 64)  # the latent UNet's, not the VAE's
    assert str(rows["cosine schedule under DDPM (04)"]["FID, n = 64"]) == "265"
