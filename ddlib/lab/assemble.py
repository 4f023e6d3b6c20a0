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

from ddlib.lab.literature import REFERENCES, literature_rows
from ddlib.lab.tables import format_cell, markdown_table, read_table


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
    lines = [
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
    if timings:
        lines += ["", "**Notebook wall times in this run:** " + ", ".join(
            f"{name} {t['wall_s']:.0f} s" for name, t in timings.items()) + ". A run reuses every cached checkpoint, "
            "sample set and score whose inputs did not change, so these can be far below the cost of computing "
            "everything; the `train_s`, `sample_s` and `wall_s` columns of the tables give the times the "
            "computations took when they ran."]
    return "\n".join(lines)


def _measured(method, steps, eta, row, source) -> dict:
    is_cell = row.get("inception_score")
    if isinstance(is_cell, str) and is_cell.startswith("n/a"):
        is_cell = "n/a (offline)"
    return {"method": method, "dataset": row.get("dataset"), "steps": steps, "eta": eta, "fid": row.get("fid"),
            "is": is_cell, "n_samples": row.get("n_samples"), "reference": row.get("reference"),
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
    """Table I: quoted literature rows, each followed by this package's measurement of the same setting."""
    out = ctx.out
    ddpm = _table(out, "ddpm")
    ddim = _table(out, "ddim_steps")
    sweep = _table(out, "guidance_sweep")
    rows = []
    for lit in literature_rows():
        rows.append(lit)
        if lit["method"].startswith("DDPM") and ddpm:
            m = ddpm[0]
            rows.append(_measured("DDPM (this package)", m.get("steps"), None, m, "measured: notebook 01"))
        if lit["method"].startswith("DDIM"):
            match = [r for r in ddim if r.get("steps") == lit["steps"] and float(r.get("eta") or 0) == float(lit["eta"])]
            if match:
                rows.append(_measured(f"{lit['method']} (this package)", lit["steps"], lit["eta"], match[0],
                                      "measured: notebook 02"))
    if sweep:
        best = _leader(sweep)
        if best:
            rows.append(_measured(f"latent DDIM + CFG, {_lead_word(best)} scale s={best.get('scale')} (this package)",
                                  best.get("steps"), None, best, "measured: notebook 03"))
    columns = ["method", "dataset", "steps", "eta", "fid", "is", "source"]
    notes = ["Literature rows are quoted from the papers named in the source column (50,000 samples against the "
             "original training sets). Measured rows use small models, few samples and the offline JPEG copies; "
             "their FIDs are not comparable with the quoted ones, only with each other at equal sample counts. "
             "The seed report's Table I itself is not in this repository: these are the original papers' numbers.",
             "IS: the standard Inception Score needs the network's 1008-way head, which the offline FID weights "
             "lack, so measured IS reads n/a.",
             "Sources: " + " ".join(f"[{k}] {v}" for k, v in REFERENCES.items())]
    return ctx.table("literature", rows, "Table I. Published results (quoted) beside this package's measurements",
                     columns=columns, notes=notes)


def summary_table(ctx) -> object:
    """Table VI analogue: one row per experiment of this report, with its headline metric and provenance."""
    out = ctx.out
    rows = []
    prov = ("profile", "hardware", "wall_s", "n_samples", "reference")

    def scores(r: dict) -> dict:  # FID/KID with their intervals (absent in tables made before intervals existed)
        return {"n": r.get("n_samples") if r.get("fid") is not None else None,
                **{k: r.get(k) for k in ("fid", "fid_lo", "fid_hi", "kid", "kid_lo", "kid_hi")}}

    for r in _table(out, "ddpm")[:1]:
        rows.append({"experiment": "DDPM, CIFAR-10 (01)", "setting": r.get("sampler"), **scores(r), "verdict": None,
                     **{k: r.get(k) for k in prov}})
    ddim = _table(out, "ddim_steps")
    lead = _leader(ddim) if ddim else None
    for eta in sorted({r.get("eta") for r in ddim}):
        best = min((r for r in ddim if r.get("eta") == eta), key=lambda r: r.get("fid") or float("inf"))
        rows.append({"experiment": f"DDIM η={eta:g}, lowest-FID S (02)", "setting": f"S={best.get('steps')}",
                     **scores(best), "verdict": (_verdict(best) if best is lead else best.get("fid_vs_lowest")),
                     **{k: best.get(k) for k in prov}})
    for r in _table(out, "fid_final"):
        real = r.get("sampler") == "—"
        ddpm = str(r.get("sampler", "")).startswith("DDPM")
        role = _lead_word(r) if r.get("fid_vs_lowest") == "lowest" else "contender"
        what = "real images: the FID floor (02)" if real else f"headline: {role} {'DDPM' if ddpm else 'DDIM'} setting (02)"
        setting = r.get("model") if real else (f"{r.get('steps')} steps" if ddpm else f"S={r.get('steps')}, η={r.get('eta')}")
        rows.append({"experiment": what, "setting": setting,
                     **scores(r), "verdict": None if real else (_verdict(r) if r.get("fid_vs_lowest") == "lowest"
                                                                 else r.get("fid_vs_lowest")),
                     **{k: r.get(k) for k in prov}})
    for r in _table(out, "speed_memory"):
        rows.append({"experiment": f"sampling cost {r.get('sampler')} (02)", "setting": f"batch {r.get('batch_size')}",
                     **scores({}), "verdict": None, **{k: r.get(k) for k in prov}})
    for name, what, setting in (("guidance_sweep", lambda r: "latent DDIM + CFG (03)", lambda r: f"scale s={r.get('scale')}"),
                                ("schedules", lambda r: f"{r.get('schedule')} schedule (04)",
                                 lambda r: f"{r.get('train_steps')} steps, {r.get('sampler')}")):
        for r in _table(out, name):
            rows.append({"experiment": what(r), "setting": setting(r), **scores(r),
                         "verdict": _verdict(r) if r.get("fid_vs_lowest") == "lowest" else r.get("fid_vs_lowest"),
                         **{k: r.get(k) for k in prov}})
    if not rows:
        rows.append({"experiment": "no experiment results found", "setting": None, **scores({}), "verdict": None,
                     "profile": ctx.profile, "hardware": ctx.hardware, "wall_s": None, "n_samples": None, "reference": None})
    return ctx.table("summary", rows, "Table VI (analogue). Measured results of this report, one row per experiment",
                     notes=["wall_s: sampling + scoring time of that row (for the sampling-cost rows: the median "
                            "sampling time of one batch); training time is in each notebook's table.",
                            "FIDs of different n (column n) are not comparable: FID is biased upwards "
                            "by roughly c/n. verdict: the paired-bootstrap comparison of the row within its own table "
                            "(the lowest-FID row's sentence, or the others' difference from it)."])


def show_table(out: Path, name: str, missing: str = "not run in this profile"):
    """The Markdown of ``tables/<name>.md`` for display, or a note when the table is absent."""
    from ddlib.lab.context import markdown

    path = Path(out) / "tables" / f"{name}.md"
    return markdown(path.read_text() if path.is_file() else f"*Table `{name}`: {missing}.*")


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


__all__ = ["claims_text", "figures", "format_cell", "git_revision", "literature_table", "provenance_markdown",
           "show_figures", "show_table", "summary_table"]
