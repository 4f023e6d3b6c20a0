"""What the notebooks ask: their exercises, hand-graded questions and tests, read from nbgrader cell metadata.

A notebook source marks its "## Exercises" cells with nbgrader's metadata (``metadata.nbgrader``, schema 3) and
markers (``### BEGIN SOLUTION`` / ``### END SOLUTION``, ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``).
The ``grade_id`` ties the cells of one exercise together:

=====================  ===================================================================================
``exercises_setup_NN``  read-only code run before every exercise of that notebook (imports)
``<id>``                the student's code cell (``solution: true, grade: false``), e.g. ``q_sample``
``<id>_check``          read-only "check yourself" tests the student sees (not graded)
``<id>_tests``          the graded test cell (``grade: true``, ``points``): hidden tests between the markers
``<qid>``               a markdown answer (``solution: true, grade: true``): graded by hand; the rubric is its
                        solution region, shown only in the instructor edition
=====================  ===================================================================================
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ddlib.errors import DDLibError

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SETUP_PREFIX = "exercises_setup"


@dataclass(frozen=True)
class Exercise:
    """One autograded exercise: the student writes ``names`` in the ``solution`` cell; ``tests`` carry ``points``."""

    id: str
    notebook: str  # the source's stem, e.g. "01_ddpm_cifar10"
    setup: str  # the notebook's exercises_setup code
    solution: str  # the instructor's solution cell (with the markers)
    check: str  # the visible "check yourself" cell ("" if none)
    tests: str  # the graded test cell, hidden tests included
    points: float
    names: tuple[str, ...]  # what the solution cell defines (functions), handed to the tests


@dataclass(frozen=True)
class Question:
    """A free-text answer graded by hand against the rubric in its solution region."""

    id: str
    notebook: str
    prompt: str  # the markdown cell before the answer
    rubric: str  # the answer cell of the instructor edition
    points: float


@dataclass(frozen=True)
class Assignment:
    exercises: tuple[Exercise, ...]
    questions: tuple[Question, ...]

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)

    def exercise(self, exercise_id: str) -> Exercise:
        for e in self.exercises:
            if e.id == exercise_id:
                return e
        raise DDLibError(f"no exercise {exercise_id!r}; the notebooks have {', '.join(e.id for e in self.exercises)}")


def notebook_sources(source_dir: str | Path | None = None) -> list[Path]:
    """The notebook sources ``NN_*.py`` (or ``NN_*.ipynb``, e.g. an instructor edition) of ``source_dir``, in order."""
    d = Path(source_dir) if source_dir is not None else NOTEBOOKS_DIR
    paths = sorted(p for p in d.glob("[0-9][0-9]_*") if p.suffix in (".py", ".ipynb"))
    if not paths:
        raise DDLibError(f"no notebooks NN_*.py or NN_*.ipynb in {d}; pass the notebooks folder")
    return paths


def read_notebook(path: str | Path):
    """An nbformat notebook from a jupytext ``.py`` source or an ``.ipynb``."""
    path = Path(path)
    try:
        if path.suffix == ".py":
            import jupytext

            return jupytext.read(path)
        import nbformat

        return nbformat.read(str(path), as_version=4)
    except Exception as err:  # unreadable JSON, a syntax jupytext cannot parse
        raise DDLibError(f"cannot read notebook {path}: {err}") from None


def nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def defined_names(code: str) -> tuple[str, ...]:
    """The functions and classes a cell defines at top level (what the tests call)."""
    tree = ast.parse(code)
    return tuple(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def load_assignment(source_dir: str | Path | None = None) -> Assignment:
    """Every exercise and hand-graded question of the notebooks in ``source_dir`` (default: ``notebooks/``)."""
    exercises: list[Exercise] = []
    questions: list[Question] = []
    seen: set[str] = set()
    for path in notebook_sources(source_dir):
        nb = read_notebook(path)
        cells = {}
        setup = ""
        order = []
        for i, cell in enumerate(nb.cells):
            meta = nbgrader_meta(cell)
            gid = meta.get("grade_id")
            if not gid:
                continue
            if gid in cells:
                raise DDLibError(f"{path.name}: grade_id {gid!r} is used twice; every nbgrader cell needs its own")
            cells[gid] = (i, cell, meta)
            order.append(gid)
            if gid.startswith(SETUP_PREFIX):
                setup += cell.source + "\n"
        for gid in order:
            i, cell, meta = cells[gid]
            if not meta.get("solution"):
                continue
            if gid in seen:
                raise DDLibError(f"{path.name}: exercise {gid!r} also appears in another notebook; ids must be unique")
            seen.add(gid)
            if cell.cell_type == "markdown":
                prompt = nb.cells[i - 1].source if i > 0 and nb.cells[i - 1].cell_type == "markdown" else ""
                questions.append(Question(gid, path.stem, prompt, cell.source, float(meta.get("points", 0))))
                continue
            tests = cells.get(f"{gid}_tests")
            if tests is None or not tests[2].get("grade") or not tests[2].get("points"):
                raise DDLibError(f"{path.name}: exercise {gid!r} has no graded test cell {gid}_tests with points")
            check = cells.get(f"{gid}_check")
            try:
                names = defined_names(cell.source)
            except SyntaxError as err:
                raise DDLibError(f"{path.name}: the solution of {gid!r} is not valid Python: {err}") from None
            if not names:
                raise DDLibError(f"{path.name}: the solution cell {gid!r} defines no function for its tests to call")
            exercises.append(Exercise(
                id=gid, notebook=path.stem, setup=setup, solution=cell.source, check=check[1].source if check else "",
                tests=tests[1].source, points=float(tests[2]["points"]), names=names))
    if not exercises:
        raise DDLibError(f"no exercises (nbgrader solution cells) in {source_dir or NOTEBOOKS_DIR}")
    return Assignment(tuple(exercises), tuple(questions))
