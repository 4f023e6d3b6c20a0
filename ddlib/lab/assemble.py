"""Assembling the report (notebook 05): provenance page, Table I beside measured numbers, summary, figures.

The report notebook reads only what notebooks 01–04 wrote under ``reports/<profile>/`` (tables as CSV
and Markdown, figures with their index, ``references.json``, ``timings.json``) and the quoted numbers
of :mod:`ddlib.lab.literature`; it computes nothing expensive itself.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

from ddlib.lab.literature import LDM_NOT_TRACED, REFERENCES, SEED_TABLE_I, SEED_TABLE_VI, literature_rows
from ddlib.lab.tables import format_cell, markdown_table, read_table, relayout


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _table(out: Path, name: str) -> list[dict]:
    path = out / "tables" / f"{name}.csv"
    return read_table(path) if path.is_file() else []


def git_revision(repo: Path) -> str:
    """``<short hash>`` of HEAD, with ``+uncommitted changes`` when the work tree differs; ``unknown`` without git.

    Changes under ``reports/`` do not count: a report run rewrites its own committed outputs there.
    """
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" + uncommitted changes" if dirty else "")


def provenance_markdown(out: Path, profile: str) -> str:
    """The report's first page: which profile, hardware, reference statistics, code version and timings."""
    import torch

    import ddlib
    from ddlib.lab.context import REPO_ROOT

    hardware = sorted({str(r["hardware"]) for f in (out / "tables").glob("*.csv") for r in read_table(f)
                       if r.get("hardware") and r.get("profile") == profile})
    refs = _read_json(out / "references.json")
    timings = _read_json(out / "timings.json")
    lines = partial_banner(out, timings) + [
        f"**Profile:** `{profile}` (parameters: `notebooks/profiles/{profile}.yaml`).  ",
        f"**Generated:** {time.strftime('%Y-%m-%d %H:%M %Z')} by `make report PROFILE={profile}`; ddlib {ddlib.__version__}, "
        f"git {git_revision(REPO_ROOT)}, torch {torch.__version__}, Python {platform.python_version()}.  ",
        f"**Hardware:** {'; '.join(hardware) if hardware else 'n/a'}.",
        "",
        "**Reference statistics used for FID/KID** (Inception pool features, cached with provenance):",
        "",
    ]
    if refs:
        rows = [{"reference": label, "subset": "random, seed 0" if str(r.get("subset", "")).startswith("random")
                 else r.get("subset"), "images sha1": str(r.get("images_sha1", ""))[:12],
                 "computed": str(r.get("created", ""))[:16].replace("T", " "), "on": r.get("hardware")}
                for label, r in refs.items()]
        lines.append(markdown_table(rows))
    else:
        lines.append("*none recorded*")
    lines += ["", "Every table row below carries the profile, hardware, wall time (s) and sample count that "
                  "produced it. FID against the offline JPEG copies of the data is not comparable with published "
                  "FIDs (see the note under Table I); FID at a few hundred samples is biased upwards, so compare only "
                  "numbers with equal sample counts and references, and read KID (unbiased) beside it."]
    from ddlib.lab.export import REPORT_NOTEBOOK

    measured = {name: t for name, t in timings.items() if name != REPORT_NOTEBOOK}  # this page is being made now
    if measured:
        lines += ["", "**Notebook wall times (each notebook's last run):** " + ", ".join(
            f"{name} {t['wall_s']:.0f} s ({_made_with(t)})" for name, t in measured.items()) + ". A run reuses every cached checkpoint, "
            "sample set and score whose inputs did not change, so these can be far below the cost of computing "
            "everything; the `train_s`, `sample_s` and `wall_s` columns of the tables give the times the "
            "computations took when they ran."]
    return "\n".join(lines)


def _made_with(timing: dict) -> str:
    commit, torch = timing.get("commit"), timing.get("torch")
    return f"git {commit}, torch {torch}" if commit and torch else "code version not recorded"


def partial_banner(out: Path, timings: dict) -> list[str]:
    """A warning for the first page when some numbered notebook has no executed copy in ``out``: which ran, which
    did not, and the code and torch version each one that ran was measured with. Empty for a complete run."""
    from ddlib.lab.context import check_outputs
    from ddlib.lab.export import REPORT_NOTEBOOK
    from ddlib.lab.pipeline import notebook_paths

    expected = [p.stem for p in notebook_paths() if p.stem != REPORT_NOTEBOOK]
    missing = [name for name in expected
               if not (out / "notebooks" / f"{name}.ipynb").is_file() or check_outputs(out, name)]
    if not missing:
        return []
    ran = [f"{name} ({_made_with(timings.get(name, {}))})" for name in expected if name not in missing]
    return [f"> **Partial report.** Notebooks that did not run to the end: {', '.join(missing)}. "
            f"Notebooks whose numbers this page shows: {', '.join(ran) or 'none'}.", ""]


def _measured(method, steps, eta, row, source) -> dict:
    is_cell = row.get("inception_score")
    if isinstance(is_cell, str) and is_cell.startswith("n/a"):
        is_cell = "n/a (offline)"
    return {"method": method, "dataset": row.get("dataset"), "steps": steps, "eta": eta, "fid": row.get("fid"),
            "fid_lo": row.get("fid_lo"), "fid_hi": row.get("fid_hi"), "is": is_cell, "n_samples": row.get("n_samples"), "reference": row.get("reference"),
            "source": source, "profile": row.get("profile"), "hardware": row.get("hardware"), "wall_s": row.get("wall_s")}


def _leader(rows: list[dict]) -> dict | None:
    """The row a table's ranking marked lowest (:func:`ddlib.lab.intervals.rank_rows`), else the lowest FID."""
    marked = [r for r in rows if r.get("fid_vs_lowest") == "lowest"]
    if marked:
        return marked[0]
    return min((r for r in rows if isinstance(r.get("fid"), (int, float))), key=lambda r: r["fid"], default=None)


def _lead_word(row: dict) -> str:
    """"best" only when the row's paired comparisons resolved it against every other setting."""
    return "best" if row.get("fid_lead_resolved") is True else "lowest-FID (not resolved)"


def _verdict(row: dict) -> str | None:
    """A row's ranking in words: the paired-bootstrap sentence of its table, if it has one."""
    return row.get("fid_ranking") or None


def literature_table(ctx) -> object:
    """Table I: the seed report's Table I row for row (with where each number was checked), each followed by this
    package's measurement of the same setting; then Table I (continued): the further published rows this report
    quotes, with measurements where they exist. Returns both for display."""
    from ddlib.lab.context import markdown

    out = ctx.out
    ddpm = _table(out, "ddpm")
    ddim = _table(out, "ddim_steps")
    sweep = _table(out, "guidance_sweep")

    def measured_for(steps, eta) -> list[dict]:
        if eta is None and steps == 1000 and ddpm:
            return [_measured("DDPM (this package)", ddpm[0].get("steps"), None, ddpm[0], "measured: 01")]
        match = [r for r in ddim if r.get("steps") == steps and eta is not None and float(r.get("eta") or 0) == float(eta)]
        label = f"DDIM (S={steps}, this package)" if float(eta or 0) == 0 else f"DDIM η={eta:g} (S={steps}, this package)"
        return [_measured(label, steps, eta, match[0], "measured: 02")] if match else []

    rows = []
    for seed in SEED_TABLE_I:
        rows.append({**seed, "source": seed["seed_source"], "profile": "seed report, Table I", "hardware": "as printed",
                     "wall_s": None, "n_samples": None, "reference": None})
        if seed["dataset"] == "CIFAR-10":
            rows += measured_for(seed["steps"], seed["eta"])
        elif sweep:
            best = _leader(sweep)
            if best:
                rows.append(_measured(f"latent DDIM + CFG, {_lead_word(best)} s={best.get('scale')} (this package)",
                                      best.get("steps"), None, best, "measured: 03"))
    columns = ["method", "dataset", "steps", "eta", "fid", "is", "source", "checked"]
    caveat = ("Measured rows use small models, few samples and the offline JPEG copies; their FIDs are not comparable "
              "with the published ones, only with each other at equal n and reference. IS: the standard Inception "
              "Score needs the network's 1008-way head, which the offline FID weights lack, so measured IS reads n/a.")
    first = ctx.table("literature", rows, "Table I. The seed report's Table I, checked, beside this package's measurements",
                      columns=columns, notes=["The seed rows are its Table I as printed; checked says where each "
                                              "number was looked up. " + LDM_NOT_TRACED, caveat])

    seed_keys = {(r["steps"], r["eta"]) for r in SEED_TABLE_I if r["dataset"] == "CIFAR-10"}
    more = []
    for lit in literature_rows():
        if lit["method"].startswith(("DDPM", "DDIM")) and (lit["steps"], lit["eta"]) in seed_keys:
            continue  # in Table I, as the seed printed it
        more.append(lit)
        if lit["method"].startswith("DDIM"):
            more += measured_for(lit["steps"], lit["eta"])
    second = ctx.table("literature_quoted", more, "Table I (continued). Further published results, beside this "
                       "package's measurements", columns=columns[:-1],
                       notes=["Quoted from the papers named in the source column (50,000 samples against the original "
                              "training sets). " + caveat, "Sources: " + " ".join(f"[{k}] {v}" for k, v in REFERENCES.items())])
    return markdown(f"{getattr(first, 'data', first)}\n\n{getattr(second, 'data', second)}")


def summary_table(ctx) -> object:
    """Table VI analogue: one row per experiment of this report, with its headline metric and provenance."""
    out = ctx.out
    prov = ("profile", "hardware", "wall_s", "n_samples", "reference")

    def scores(r: dict) -> dict:  # FID/KID with their intervals (absent in tables made before intervals existed)
        return {"n": r.get("n_samples") if r.get("fid") is not None else None,
                **{k: r.get(k) for k in ("fid", "fid_lo", "fid_hi", "kid", "kid_lo", "kid_hi")}}

    rows = [{"experiment": f"seed report: {r['model']}, {r['dataset']}", "setting": f"S={r['sampling_steps']}",
             **scores({}), "fid": r["fid"], "verdict": None, "train_steps": r["train_steps"],
             "batch_size": r["batch_size"], "profile": "seed report", "hardware": "not stated", "wall_s": None,
             "n_samples": None, "reference": "not stated"} for r in SEED_TABLE_VI]
    train = (_table(out, "train_ddpm") or [{}])[0]
    trained = {"train_steps": train.get("steps"), "batch_size": train.get("batch_size")}
    latent = next((r for r in _table(out, "train_latent") if r.get("run") == "latent UNet"), {})  # not the VAE's row
    latent_trained = {"train_steps": latent.get("steps"), "batch_size": latent.get("batch_size")}
    for r in _table(out, "ddpm")[:1]:
        rows.append({"experiment": "DDPM, CIFAR-10 (01)", "setting": r.get("sampler"), **scores(r), "verdict": None,
                     **trained, **{k: r.get(k) for k in prov}})
    ddim = _table(out, "ddim_steps")
    lead = _leader(ddim) if ddim else None
    for eta in sorted({r.get("eta") for r in ddim}):
        best = min((r for r in ddim if r.get("eta") == eta), key=lambda r: r.get("fid") or float("inf"))
        rows.append({"experiment": f"DDIM η={eta:g}, lowest-FID S (02)", "setting": f"S={best.get('steps')}",
                     **scores(best), "verdict": (_verdict(best) if best is lead else best.get("fid_vs_lowest")),
                     **trained, **{k: best.get(k) for k in prov}})
    for r in _table(out, "fid_final"):
        real = r.get("sampler") == "—"
        ddpm = str(r.get("sampler", "")).startswith("DDPM")
        role = _lead_word(r) if r.get("fid_vs_lowest") == "lowest" else "contender"
        what = "real images: the FID floor (02)" if real else f"headline: {role} {'DDPM' if ddpm else 'DDIM'} setting (02)"
        setting = r.get("model") if real else (f"{r.get('steps')} steps" if ddpm else f"S={r.get('steps')}, η={r.get('eta')}")
        rows.append({"experiment": what, "setting": setting,
                     **scores(r), "verdict": None if real else (_verdict(r) if r.get("fid_vs_lowest") == "lowest"
                                                                 else r.get("fid_vs_lowest")),
                     **({} if real else trained), **{k: r.get(k) for k in prov}})
    for r in _table(out, "speed_memory"):
        rows.append({"experiment": f"sampling cost {r.get('sampler')} (02)", "setting": f"batch {r.get('batch_size')}",
                     **scores({}), "verdict": None, **{k: r.get(k) for k in prov}})
    for name, what, setting in (("guidance_sweep", lambda r: "latent DDIM + CFG (03)", lambda r: f"scale s={r.get('scale')}"),
                                ("schedules", lambda r: f"{r.get('schedule')} schedule (04)",
                                 lambda r: f"{r.get('train_steps')} steps, {r.get('sampler')}"),
                                ("schedules_ddpm", lambda r: f"{r.get('schedule')} schedule under DDPM (04)",
                                 lambda r: r.get("sampler"))):
        for r in _table(out, name):
            rows.append({"experiment": what(r), "setting": setting(r), **scores(r),
                         "verdict": _verdict(r) if r.get("fid_vs_lowest") == "lowest" else r.get("fid_vs_lowest"),
                         **(latent_trained if name == "guidance_sweep" else {}), **{k: r.get(k) for k in prov}})
    if not rows:
        rows.append({"experiment": "no experiment results found", "setting": None, **scores({}), "verdict": None,
                     "profile": ctx.profile, "hardware": ctx.hardware, "wall_s": None, "n_samples": None, "reference": None})
    fid_columns = split_by_n(rows)
    return ctx.table("summary", rows, "Table VI (analogue). Measured results of this report, one row per experiment",
                     columns=["experiment", "setting", *fid_columns, "verdict", "train_steps", "batch_size"],
                     notes=["The first rows are the seed report's Table VI as printed: it states neither the number of "
                            "samples behind its FIDs nor their reference; its DDIM section samples with S = 250 steps.",
                            "wall_s: sampling + scoring time of that row (for the sampling-cost rows: the median "
                            "sampling time of one batch); training time is in each notebook's table.",
                            "FIDs of different n stand in different columns: FID is biased upwards by roughly c/n, "
                            "so only a column's own rows compare (each cell: FID [95 % interval]). verdict: the "
                            "paired-bootstrap comparison of the row within its own table (the lowest-FID row's "
                            "sentence, or the others' difference from it)."])


def split_by_n(rows: list[dict]) -> list[str]:
    """Give every row one FID cell per sample count (``"FID, n = 64"``: "FID [lo, hi]"), so that no column of Table VI
    holds FIDs of different n; FIDs without a stated n (the seed report's) get their own column. Returns the new
    column names in order (n ascending). The rows keep ``fid``/``fid_lo``/``fid_hi``/``n`` for the CSV."""
    def cell(r: dict) -> str:
        lo, hi = r.get("fid_lo"), r.get("fid_hi")
        return f"{r['fid']:.4g} [{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else f"{r['fid']:.4g}"

    scored = lambda r: isinstance(r.get("fid"), (int, float))  # noqa: E731
    ns = sorted({int(r["n"]) for r in rows if scored(r) and r.get("n")})
    unstated = any(scored(r) and not r.get("n") for r in rows)
    names = {n: f"FID, n = {n}" for n in ns}
    for r in rows:
        for n in ns:
            r[names[n]] = cell(r) if scored(r) and r.get("n") and int(r["n"]) == n else None
        if unstated:
            r["FID, n not stated"] = cell(r) if scored(r) and not r.get("n") else None
    return (["FID, n not stated"] if unstated else []) + list(names.values())


def errata():
    """``docs/errata.md`` (where the seed report's equations and claims are wrong, and the correct forms) for display,
    without its title (the report gives the section its own heading)."""
    from ddlib.lab.context import REPO_ROOT, markdown

    text = (REPO_ROOT / "docs" / "errata.md").read_text()
    return markdown(text.split("\n", 1)[1].strip() if text.startswith("# ") else text)


def show_table(out: Path, name: str, missing: str = "not run in this profile"):
    """The Markdown of ``tables/<name>.md`` for display (laid out as today's tables are), or a note when the
    table is absent."""
    from ddlib.lab.context import markdown

    path = Path(out) / "tables" / f"{name}.md"
    return markdown(relayout(path.read_text()) if path.is_file() else f"*Table `{name}`: {missing}.*")


def figures(out: Path) -> list[tuple[Path, str, str]]:
    """Every indexed figure as (path, caption, notebook), in notebook then creation order."""
    index = _read_json(Path(out) / "figures" / "index.json")
    items = sorted(index.items(), key=lambda kv: (kv[1].get("notebook", ""), kv[1].get("order", 0)))
    return [(Path(out) / "figures" / f"{name}.png", e.get("caption", name), e.get("notebook", "")) for name, e in items
            if (Path(out) / "figures" / f"{name}.png").is_file()]


def show_figures(out: Path, width: int = 640) -> int:
    """Display every figure with a numbered caption; returns how many were shown."""
    from IPython.display import Image, Markdown, display

    shown = 0
    for k, (path, caption, notebook) in enumerate(figures(out), start=1):
        display(Markdown(f"**Figure {k}** ({notebook}). {caption}"))
        display(Image(filename=str(path), width=width))
        shown += 1
    return shown


def claims_text(out: Path) -> str:
    """The speed/memory verdict notebook 02 wrote (``tables/speed_memory_claims.txt``), if any."""
    path = Path(out) / "tables" / "speed_memory_claims.txt"
    return path.read_text().strip() if path.is_file() else "*Speed/memory comparison not run in this profile.*"


def note_text(out: Path, name: str, missing: str = "not run in this profile") -> str:
    """A finding a notebook wrote with ``ctx.note(name, …)`` (``tables/<name>.txt``), or a note when it is absent."""
    path = Path(out) / "tables" / f"{name}.txt"
    return path.read_text().strip() if path.is_file() else f"*`{name}`: {missing}.*"


__all__ = ["claims_text", "errata", "figures", "format_cell", "git_revision", "literature_table", "note_text",
           "provenance_markdown", "show_figures", "show_table", "summary_table"]
