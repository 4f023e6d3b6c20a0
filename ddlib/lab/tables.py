"""Report tables: lists of dicts (one per row) written as ``<name>.csv`` (every column, full precision) and
``<name>.md`` (a heading with the table's title, a Markdown pipe table, then optional notes), the form the
report notebook shows and the PDF prints."""

from __future__ import annotations

import csv
import math
import re
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
    headers = [c.replace("_", " ") for c in columns]  # spaces let LaTeX wrap long headers; the CSV keeps the names
    return "\n".join(_layout(headers, body))


def _layout(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    headers, body = _merge_intervals(headers, body)
    return ["| " + " | ".join(headers) + " |", _separator(headers, body)] + ["| " + " | ".join(r) + " |" for r in body]


def _merge_intervals(headers: Sequence[str], body: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """A score and its interval in one cell, ``v [lo, hi]``: the columns ``m``, ``m lo``, ``m hi`` (``m`` may end in
    `` (n = …)``) become one headed ``m [lo, hi]`` — three fewer numbers side by side on a page, and an interval
    read where its value is. The CSV keeps the three columns."""
    keep, merged = [], []
    for i, h in enumerate(headers):
        m = re.fullmatch(r"(.*?)( \(n = [^)]*\))?", h)
        if headers[i + 1:i + 3] == [f"{m[1]} lo", f"{m[1]} hi"]:
            merged.append(i)
            keep.append((i, f"{m[1]} [lo, hi]{m[2] or ''}"))
        elif not any(j in merged for j in (i - 1, i - 2)):
            keep.append((i, h))

    def cell(row, i):
        if i in merged and (row[i + 1], row[i + 2]) != ("—", "—"):
            return f"{row[i]} [{row[i + 1]}, {row[i + 2]}]"
        return row[i]

    return [h for _, h in keep], [[cell(row, i) for i, _ in keep] for row in body]


# Characters of a digit's width in one line of a PDF table (footnotesize DejaVu Serif at 0.92 on the template's
# 7.3 in text width: 525 pt, a digit 4.7 pt), less 12 pt of space per column.
def _pdf_line_chars(n_columns: int) -> int:
    return int((525 - 12 * n_columns) / 4.7)


def column_widths(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[int]:
    """Dashes under each header of a pipe table. pandoc gives a wide table's columns shares of the line in
    proportion to them, and LaTeX wraps a cell only at spaces, so every column first gets its longest word (a
    number never breaks); what is left of the line goes to the columns whose text is longer than that, in
    proportion to the extra they need to sit on one line (at most 30 characters)."""
    cells = [[h, *(row[i] for row in body)] for i, h in enumerate(headers)]
    longest_word = [max(3, *(len(w) for c in col for w in _words(c))) for col in cells]
    one_line = [max(lw, min(max(len(c) for c in col), 30)) for lw, col in zip(longest_word, cells)]
    line = _pdf_line_chars(len(headers))
    if sum(one_line) <= line:
        return one_line
    spare, extra = line - sum(longest_word), [o - lw for o, lw in zip(one_line, longest_word)]
    if spare <= 0:
        return longest_word
    return [lw + int(spare * e / sum(extra)) for lw, e in zip(longest_word, extra)]


def _words(cell: str) -> list[str]:
    """The pieces LaTeX may break a cell into: at spaces, and after a hyphen that follows letters."""
    return [w for word in cell.split() for w in re.split(r"(?<=[^\W\d_]{2}-)", word)]


def _separator(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    return "|" + "|".join(" " + "-" * w + " " for w in column_widths(headers, body)) + "|"


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def relayout(md: str) -> str:
    """``md`` with every pipe table laid out again as :func:`markdown_table` lays it out today (intervals merged,
    column widths for the PDF), so a table written by an earlier version prints like a new one."""
    lines, out, i = md.split("\n"), [], 0
    while i < len(lines):
        if (lines[i].startswith("|") and i + 1 < len(lines)
                and re.fullmatch(r"\|( *:?-+:? *\|)+", lines[i + 1].strip())):
            end = i + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            out += _layout(_split_row(lines[i]), [_split_row(r) for r in lines[i + 2:end]])
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out)


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
