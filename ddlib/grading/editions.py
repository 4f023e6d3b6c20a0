"""The two editions of the notebooks, made from their sources with nbgrader's own preprocessors.

- ``instructor/NN_name.ipynb``: the sources as notebooks, solutions, visible and hidden tests and rubrics included,
  outputs cleared; ``instructor/RUBRIC.md`` lists every exercise's points and every hand-graded question's rubric.
- ``student/NN_name.ipynb``: what nbgrader's ``generate_assignment`` releases — read-only cells locked
  (``LockCells``), solutions replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` and answers by
  ``YOUR ANSWER HERE`` (``ClearSolutions``), hidden tests removed (``ClearHiddenTests``), outputs cleared
  (``ClearOutput``), with nbgrader's checksums (``ComputeChecksums``), so nbgrader itself accepts the edition too.

Both open in JupyterLab with the ``ddlib`` kernel (``make setup`` installs it).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ddlib.errors import DDLibError
from ddlib.grading.spec import load_assignment, notebook_sources, read_notebook

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
KERNELSPEC = {"display_name": "Python (ddlib)", "language": "python", "name": "ddlib"}


def _preprocessors(kind: str):
    try:
        from nbgrader.preprocessors import (
            CheckCellMetadata, ClearHiddenTests, ClearOutput, ClearSolutions, ComputeChecksums, LockCells,
        )
    except ImportError:
        raise DDLibError("making the exercise editions needs nbgrader: run `make setup` "
                         "(or pip install -e '.[course]')") from None
    if kind == "instructor":
        return [ClearOutput(), CheckCellMetadata()]
    return [LockCells(), ClearSolutions(), ClearOutput(), ClearHiddenTests(), ComputeChecksums(), CheckCellMetadata()]


def _write(nb, path: Path) -> None:
    import nbformat

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def edition(nb, kind: str):
    """A copy of notebook ``nb`` as the ``"student"`` or ``"instructor"`` edition."""
    if kind not in ("student", "instructor"):
        raise DDLibError(f"unknown edition {kind!r}; choose student or instructor")
    nb = copy.deepcopy(nb)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    resources: dict = {}
    for pre in _preprocessors(kind):
        try:
            nb, resources = pre.preprocess(nb, resources)
        except Exception as err:  # nbgrader's checks: a marker outside a solution cell, a missing grade_id, …
            raise DDLibError(f"nbgrader's {type(pre).__name__} refused a notebook: {err}") from None
    return nb


def rubric_markdown(source_dir: str | Path | None = None) -> str:
    a = load_assignment(source_dir)
    lines = ["# Exercises and rubric (instructor edition)", "",
             f"Autograded: {len(a.exercises)} exercises, {a.max_points:g} points (`make grade`). "
             f"Graded by hand: {len(a.questions)} questions, {sum(q.points for q in a.questions):g} points.", "",
             "| notebook | exercise | points |", "| --- | --- | --- |"]
    lines += [f"| {e.notebook} | `{e.id}` | {e.points:g} |" for e in a.exercises]
    for q in a.questions:
        rubric = "\n".join(line for line in q.rubric.splitlines() if line.strip() not in (BEGIN, END))
        lines += ["", f"## `{q.id}` ({q.notebook}, {q.points:g} points, graded by hand)", "", q.prompt, "", rubric]
    return "\n".join(lines) + "\n"


def make_editions(out_dir: str | Path, source_dir: str | Path | None = None) -> dict[str, list[Path]]:
    """Write ``out_dir/student/`` and ``out_dir/instructor/`` from the notebook sources; the paths written."""
    out_dir = Path(out_dir)
    load_assignment(source_dir)  # fails early, with a clear message, on inconsistent exercise cells
    written: dict[str, list[Path]] = {"student": [], "instructor": []}
    for path in notebook_sources(source_dir):
        nb = read_notebook(path)
        for kind in written:
            target = out_dir / kind / f"{path.stem}.ipynb"
            _write(edition(nb, kind), target)
            written[kind].append(target)
    rubric = out_dir / "instructor" / "RUBRIC.md"
    rubric.write_text(rubric_markdown(source_dir))
    written["instructor"].append(rubric)
    return written
