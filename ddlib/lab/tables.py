"""Report tables: lists of dicts (one per row) written as ``<name>.csv`` (every column, full precision) and
``<name>.md`` (a heading with the table's title, a Markdown pipe table, then optional notes), the form the
report notebook shows and the PDF prints."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from ddlib.files import atomic_open, atomic_write_text


def is_number(v) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def format_cell(v, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, None as an em dash, other values as text."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"
        return f"{v:.{max(digits - 1, 1)}e}"
    return str(v)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A Markdown pipe table of ``rows`` (pipes and newlines in cells escaped)."""
    columns = list(columns or _columns(rows))

    def cell(v):
        return format_cell(v, digits).replace("|", "\\|").replace("\n", " ")

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    # pandoc sizes the columns of a wide table by the dashes under each header: make them follow the content
    widths = [min(max([len(c)] + [len(row[i]) for row in body]), 30) for i, c in enumerate(columns)]
    headers = [c.replace("_", " ") for c in columns]  # spaces let LaTeX wrap long headers; the CSV keeps the names
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" " + "-" * max(3, w) + " " for w in widths) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _columns(rows: Sequence[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_table(rows: Sequence[dict], path: str | Path, title: str, *, columns: Sequence[str] | None = None,
                md_columns: Sequence[str] | None = None, md_rows: Sequence[dict] | None = None,
                notes: Sequence[str] = (), digits: int = 4) -> tuple[Path, Path]:
    """Write ``<path>.csv`` (``columns``, default all) and ``<path>.md`` (``### title``, a table, notes).

    The Markdown table shows ``md_rows`` (default ``rows``) restricted to ``md_columns`` (default all of
    theirs): a compact view for reading, while the CSV keeps every column. Both files are written
    atomically. Returns (csv path, md path).
    """
    if not rows:
        raise ValueError(f"table {title!r} has no rows; a report table must hold at least one")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns or _columns(rows))
    csv_path, md_path = path.with_suffix(".csv"), path.with_suffix(".md")
    with atomic_open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    shown = md_rows if md_rows is not None else rows
    md = f"### {title}\n\n{markdown_table(shown, md_columns or _columns(shown), digits)}\n"
    if notes:
        md += "\n" + "\n".join(f"*{n}*\n" if not n.startswith(("-", "*")) else n + "\n" for n in notes)
    atomic_write_text(md_path, md)
    return csv_path, md_path


def read_table(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_table`, numbers and booleans parsed back, empty cells as None."""
    def parse(v: str):
        if v == "":
            return None
        if v in ("True", "False"):
            return v == "True"
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    with Path(path).with_suffix(".csv").open(newline="") as f:
        return [{k: parse(v) for k, v in r.items()} for r in csv.DictReader(f)]
