"""Grade a folder of submitted notebooks: every exercise on its own, offline, into a gradebook and feedback files.

Layout of ``submissions``: one folder per student holding that student's notebooks (any names, any depth, so
nbgrader's ``submitted/<student>/<assignment>/`` works too), or a single notebook ``<student>.ipynb``. Only the
students' solution cells are taken from their notebooks, found by nbgrader ``grade_id``; setup and tests always
come from the sources, so a student who edits a test cell changes nothing. Submissions are only read.

Output, in ``out_dir`` (same bytes when run twice on the same input):

- ``grades.csv``: ``student, exercise, points, maximum``, one row per student and autograded exercise;
- ``manual.csv``: ``student, question, points, maximum`` with ``points`` empty, for the questions graded by hand;
- ``feedback/<student>.md``: the points per exercise, every failed check and why, and the student's free-text
  answers beside each question's prompt.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ddlib.errors import DDLibError
from ddlib.grading.spec import Assignment, Exercise, load_assignment, nbgrader_meta

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Limits:
    """Per exercise: wall-clock seconds, bytes the student's code may print, bytes of memory it may add (Linux)."""

    time_limit: float = 10.0
    output_limit: int = 1_000_000
    memory_limit: int = 4 * 1024**3

    def __post_init__(self):
        if not self.time_limit > 0 or self.output_limit < 1 or self.memory_limit < 0:
            raise DDLibError(f"time limit and output cap must be positive, got {self.time_limit} s and {self.output_limit} bytes")


@dataclass(frozen=True)
class ExerciseGrade:
    student: str
    exercise: str
    points: float
    maximum: float
    failures: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    student: str
    solutions: dict  # grade_id -> cell source (solution cells only)
    notes: tuple[str, ...]  # unreadable notebooks, duplicated cells


class Sandbox:
    """A sandbox server (:mod:`ddlib.grading.sandbox`) in a subprocess; ``run(job)`` grades one exercise."""

    def __init__(self):
        if not hasattr(os, "fork"):
            raise DDLibError("the grader needs os.fork (Linux or macOS); on Windows run it in WSL or a container")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])}
        self._stderr = open(os.devnull, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ddlib.grading.sandbox"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, cwd=PACKAGE_ROOT)
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise DDLibError("the grading sandbox did not start (cannot import torch or ddlib?); run `make setup`")

    def run(self, job: dict) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise DDLibError("the grading sandbox stopped unexpectedly; rerun `make grade`")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def find_submissions(folder: str | Path) -> dict[str, list[Path]]:
    """Student name -> their notebooks, sorted; see the module docstring for the layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DDLibError(f"no submissions folder {folder}; pass SUBMISSIONS=<folder with one folder per student>")
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            nbs = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            found[entry.name] = nbs
        elif entry.suffix == ".ipynb":
            found.setdefault(entry.stem, []).append(entry)
    if not found:
        raise DDLibError(f"no submissions in {folder}: expected <student>/*.ipynb or <student>.ipynb")
    return found


def read_submission(student: str, notebooks: list[Path]) -> Submission:
    import nbformat

    solutions: dict[str, str] = {}
    notes: list[str] = []
    for path in notebooks:
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as err:  # not JSON, not a notebook
            notes.append(f"{path.name} could not be read as a notebook ({type(err).__name__}); nothing in it was graded")
            continue
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            gid = meta.get("grade_id")
            if not gid or not meta.get("solution"):
                continue
            if gid in solutions:
                notes.append(f"{gid} appears more than once; the first one (in sorted file order) was graded")
                continue
            solutions[gid] = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    if not notebooks:
        notes.append("no notebook was submitted")
    return Submission(student, solutions, tuple(notes))


def grade_exercise(sandbox: Sandbox, exercise: Exercise, solution: str | None, limits: Limits) -> tuple[float, tuple[str, ...]]:
    if solution is None:
        return 0.0, (f"not found in the submitted notebooks (no cell with nbgrader grade_id {exercise.id!r})",)
    result = sandbox.run({"setup": exercise.setup, "solution": solution, "tests": exercise.tests,
                          "names": list(exercise.names), "time_limit": limits.time_limit,
                          "output_limit": limits.output_limit,
                          "memory_limit": limits.memory_limit})
    if result.get("fault") == "setup":
        raise DDLibError(f"exercise {exercise.id}: {result['failures'][0]} — fix the notebook source")
    return (exercise.points if result["passed"] else 0.0), tuple(result["failures"])


def _fmt(x: float) -> str:
    return f"{x:g}"


def feedback_markdown(sub: Submission, grades: list[ExerciseGrade], assignment: Assignment) -> str:
    got, top = sum(g.points for g in grades), sum(g.maximum for g in grades)
    lines = [f"# Feedback for {sub.student}", "", f"Autograded exercises: **{_fmt(got)} / {_fmt(top)} points**. "
             "Each exercise's hidden tests carry its points; an exercise scores all its points when every check "
             "passes.", ""]
    lines += [f"- note: {n}" for n in sub.notes]
    lines += ["", "| exercise | notebook | points | of |", "| --- | --- | --- | --- |"]
    by_id = {e.id: e for e in assignment.exercises}
    lines += [f"| `{g.exercise}` | {by_id[g.exercise].notebook} | {_fmt(g.points)} | {_fmt(g.maximum)} |" for g in grades]
    for g in grades:
        if g.failures:
            lines += ["", f"## `{g.exercise}`: {_fmt(g.points)} / {_fmt(g.maximum)}", "", "Failed checks:", ""]
            lines += [f"- {f}" for f in g.failures]
    if assignment.questions:
        lines += ["", "## Answers graded by hand", ""]
        for q in assignment.questions:
            answer = sub.solutions.get(q.id)
            lines += [f"### `{q.id}` ({_fmt(q.points)} points)", "",
                      (answer.strip() or "(empty)") if answer is not None else "(not found in the submission)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv_text(header: list[str], rows: list[list]) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def grade_submissions(submissions: str | Path, out_dir: str | Path, source_dir: str | Path | None = None,
                      limits: Limits = Limits(), progress=None) -> list[ExerciseGrade]:
    """Grade every submission in ``submissions`` against the notebooks of ``source_dir``; write ``out_dir``."""
    assignment = load_assignment(source_dir)
    students = find_submissions(submissions)
    out_dir = Path(out_dir).resolve()
    if Path(submissions).resolve() in (out_dir, *out_dir.parents):
        raise DDLibError("the output folder must not lie inside the submissions folder (grading never writes there)")
    all_grades: list[ExerciseGrade] = []
    feedback: dict[str, str] = {}
    with Sandbox() as sandbox:
        for student, notebooks in students.items():
            sub = read_submission(student, notebooks)
            grades = []
            for ex in assignment.exercises:
                points, failures = grade_exercise(sandbox, ex, sub.solutions.get(ex.id), limits)
                grades.append(ExerciseGrade(student, ex.id, points, ex.points, failures))
                if progress:
                    progress(student, ex.id, points, ex.points)
            all_grades += grades
            feedback[student] = feedback_markdown(sub, grades, assignment)
    _write_text(out_dir / "grades.csv", _csv_text(["student", "exercise", "points", "maximum"],
                                                  [[g.student, g.exercise, _fmt(g.points), _fmt(g.maximum)] for g in all_grades]))
    _write_text(out_dir / "manual.csv", _csv_text(["student", "question", "points", "maximum"],
                                                  [[s, q.id, "", _fmt(q.points)] for s in students for q in assignment.questions]))
    for student, text in feedback.items():
        _write_text(out_dir / "feedback" / f"{student}.md", text)
    return all_grades
