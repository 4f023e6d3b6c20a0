"""The exercise editions and the autograder (ddlib.grading, docs/grading.md).

Fast tier: the exercises read from the notebooks; the editions (what the student sees, what the instructor gets); the
instructor's solutions pass their own tests and agree with ddlib's implementations. Slow tier: one grading run over
a folder of submissions — the instructor edition, the blank student edition, one classic bug per exercise, an
infinite loop, an import error, megabytes of prints, calls to ddlib's own functions, an unreadable notebook — run
twice, which must give the same gradebook.
"""

from __future__ import annotations

import csv
import hashlib
import math
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from ddlib.grading.editions import make_editions
from ddlib.grading.spec import load_assignment, nbgrader_meta

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = load_assignment()
EXERCISES = {e.id: e for e in ASSIGNMENT.exercises}
POINTS = {e.id: e.points for e in ASSIGNMENT.exercises}


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    out = tmp_path_factory.mktemp("exercises")
    make_editions(out)
    return out


def _cells(path: Path):
    return nbformat.read(str(path), as_version=4).cells


def _exercises_start(cells) -> int | None:
    """The index of a notebook's "## Exercises" heading (None: the notebook has no exercises)."""
    return next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Exercises")), None)


def _exercise_namespace(exercise_id: str, solution: str | None = None) -> dict:
    """Setup and solution of one exercise executed here (no sandbox)."""
    ex = EXERCISES[exercise_id]
    ns: dict = {}
    exec(ex.setup, ns)
    exec(solution if solution is not None else ex.solution, ns)
    return ns


# --------------------------------------------------------------------------------------------------------------------
# the exercises and the editions


def test_the_notebooks_carry_at_least_eight_exercises_over_all_five_notebooks():
    assert len(ASSIGNMENT.exercises) >= 8
    assert {e.notebook[:2] for e in ASSIGNMENT.exercises} == {"01", "02", "03", "04", "05"}
    assert all(e.points > 0 and e.names for e in ASSIGNMENT.exercises)
    assert any(q.id == "q5_seed_errata" for q in ASSIGNMENT.questions)
    assert all("Rubric" in q.rubric and q.points > 0 for q in ASSIGNMENT.questions)


def test_student_edition_has_no_solutions_hidden_tests_rubrics_or_outputs(editions):
    student = sorted((editions / "student").glob("*.ipynb"))
    assert {"01", "02", "03", "04", "05"} <= {p.name[:2] for p in student}
    solution_cells = 0
    for path in student:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.metadata.kernelspec.name == "ddlib" and "jupytext" not in nb.metadata
        text = "\n".join(c.source for c in nb.cells)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "Rubric"):
            assert marker not in text, f"{path.name} still holds {marker!r}"
        for cell in nb.cells:
            assert not cell.get("outputs"), f"{path.name}: outputs must be cleared"
            meta = nbgrader_meta(cell)
            if meta.get("solution") and cell.cell_type == "code":
                solution_cells += 1
                assert "raise NotImplementedError()" in cell.source and "def " in cell.source
            if meta.get("locked"):
                assert cell.metadata.get("deletable") is False  # nbgrader's LockCells
            if meta:
                assert "checksum" in meta  # nbgrader's ComputeChecksums: nbgrader itself accepts the release
    assert solution_cells == len(ASSIGNMENT.exercises)
    # the hidden tests of q_sample are gone, the visible ones stay
    cells = {nbgrader_meta(c).get("grade_id"): c.source for c in _cells(editions / "student" / "01_ddpm_cifar10.ipynb")}
    assert "0.64" not in cells["q_sample_tests"] and "check yourself" in cells["q_sample_check"]


def test_instructor_edition_has_solutions_all_tests_and_the_rubric(editions):
    text = "\n".join(c.source for p in sorted((editions / "instructor").glob("*.ipynb")) for c in _cells(p))
    assert text.count("BEGIN SOLUTION") == len(ASSIGNMENT.exercises) + len(ASSIGNMENT.questions)
    assert text.count("BEGIN HIDDEN TESTS") == len(ASSIGNMENT.exercises)
    rubric = (editions / "instructor" / "RUBRIC.md").read_text()
    assert "q5_seed_errata" in rubric and r"\sqrt{\bar\alpha_t}" in rubric and r"\eta^2" in rubric
    assert "BEGIN SOLUTION" not in rubric


def test_exercise_sections_run_alone_with_the_solutions():
    """From "## Exercises" on, each instructor notebook runs without its body: setup, solutions, checks, tests."""
    from ddlib.grading.spec import notebook_sources, read_notebook

    for path in notebook_sources():
        cells = read_notebook(path).cells
        start = _exercises_start(cells)
        if start is None:
            continue
        ns: dict = {}
        for cell in cells[start:]:
            if cell.cell_type == "code":
                exec(compile(cell.source, f"{path.name}", "exec"), ns)


def test_the_solutions_agree_with_ddlib():
    """Two independent implementations of each formula: the exercise's solution and ddlib's function."""
    from ddlib import samplers, schedules
    from ddlib.metrics.stats import frechet_distance

    ns = _exercise_namespace("ddim_spacing")
    for T in (10, 40, 1000):
        for S in sorted({1, 3, 7, T // 3, T // 2, T - 1, T}):
            for spacing in ("leading", "trailing", "linspace"):
                assert ns["ddim_spacing"](T, S, spacing) == samplers.ddim_timesteps(T, S, spacing), (T, S, spacing)
    s = schedules.make_schedule("linear", 50, beta_start=1e-3, beta_end=0.2)
    g = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0, 17, 49])
    assert torch.allclose(_exercise_namespace("q_sample")["q_sample"](x0, eps, s.alphas_cumprod[t]), s.add_noise(x0, eps, t))
    for tt in (0, 1, 30, 49):
        x_t = s.add_noise(x0, eps, torch.full((3,), tt))
        mean, var = _exercise_namespace("q_posterior")["q_posterior"](x0, x_t, tt, s.betas)
        assert abs(float(var) - float(s.posterior_variance[tt])) < 1e-12
        assert torch.allclose(mean, s.posterior_mean_coef_x0[tt] * x0 + s.posterior_mean_coef_xt[tt] * x_t)
        ours = _exercise_namespace("ddpm_reverse_step")["ddpm_reverse_step"](x_t, eps, tt, s.betas, z)
        assert torch.allclose(ours, samplers.ddpm_step(s, eps, tt, x_t, noise=z))
        for t_prev, eta in ((tt - 1, 1.0), (-1, 0.0), (max(tt - 7, -1), 0.3)):
            if t_prev >= tt:
                continue
            ours = _exercise_namespace("ddim_reverse_step")["ddim_reverse_step"](
                x_t, eps, float(s.alpha_bar(tt)), float(s.alpha_bar(t_prev)), eta, z)
            assert torch.allclose(ours, samplers.ddim_step(s, eps, tt, t_prev, x_t, eta=eta, noise=z), atol=1e-10)
    assert torch.allclose(_exercise_namespace("nichol_cosine_betas")["nichol_cosine_betas"](1000),
                          schedules.cosine_betas(1000, 0.008, 0.999))
    a, b = np.random.default_rng(0).normal(size=(60, 6)), np.random.default_rng(1).normal(size=(40, 6)) * 2 + 1
    fd = _exercise_namespace("frechet_from_features")["frechet_from_features"](a, b)
    want = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert math.isclose(fd, want, rel_tol=1e-9)
    w = 2.5
    eps_c, eps_u = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    assert torch.allclose(_exercise_namespace("cfg_eps")["cfg_eps"](eps_c, eps_u, w), eps_u + (1 + w) * (eps_c - eps_u))


def test_every_function_switched_off_while_grading_exists():
    import importlib

    from ddlib.grading.sandbox import FORBIDDEN

    for module_name, attrs in FORBIDDEN.items():
        module = importlib.import_module(module_name)
        for attr in attrs:
            owner = module
            for part in attr.split("."):
                assert part in vars(owner), f"{module_name}.{attr} no longer exists: update FORBIDDEN"
                owner = vars(owner)[part]


def test_a_test_failure_names_the_check_and_the_tests_go_on():
    from ddlib.grading.sandbox import run_exercise

    ex = EXERCISES["frechet_from_features"]
    biased = ex.solution.replace("np.cov(a, rowvar=False)", "np.cov(a, rowvar=False, bias=True)").replace(
        "np.cov(b, rowvar=False)", "np.cov(b, rowvar=False, bias=True)")
    assert biased != ex.solution
    result = run_exercise({"setup": ex.setup, "solution": biased, "tests": ex.tests, "names": list(ex.names)})
    assert not result["passed"]
    assert any("N − 1" in f for f in result["failures"]) and len(result["failures"]) >= 2  # went on after the first


# --------------------------------------------------------------------------------------------------------------------
# one grading run over many submissions

BUGS = {  # exercise -> (student, a classic mistake)
    "q_sample": ("bug_forward_sign", "return abar.sqrt() * x0 + (1 - abar).sqrt() * eps",
                 "return abar.sqrt() * x0 - (1 - abar).sqrt() * eps"),
    "q_posterior": ("bug_beta_not_beta_tilde", "variance = (1 - abar_prev) / (1 - abar_t) * betas[t]",
                    "variance = betas[t]"),
    "ddpm_reverse_step": ("bug_sigma_without_sqrt", "return mean + beta_tilde.sqrt() * z", "return mean + beta_tilde * z"),
    "simple_loss": ("bug_loss_alpha_bar_unrooted", "x_t = abar.sqrt() * x0", "x_t = abar * x0"),
    "ddim_reverse_step": ("bug_eta_not_squared", "sigma = eta * math.sqrt(", "sigma = math.sqrt(eta) * math.sqrt("),
    "ddim_spacing": ("bug_ddim_off_by_one", "ts = [round(T - i * T / S) - 1 for i in range(S)]",
                     "ts = [round(T - i * T / S) for i in range(S)]"),
    "cfg_eps": ("bug_guidance_swapped", "return (1 + w) * eps_cond - w * eps_uncond",
                "return (1 + w) * eps_uncond - w * eps_cond"),
    "nichol_cosine_betas": ("bug_cosine_without_s", "f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2",
                            "f = torch.cos(t / T * math.pi / 2) ** 2"),
    "seed_report_betas": ("bug_seed_eps_everywhere", "(torch.cos(math.pi / 2 * (t - 1) / T) ** 2 + eps)",
                          "(torch.cos(math.pi / 2 * (t - 1) / T) ** 2)"),
    "frechet_from_features": ("bug_fid_biased_covariance", "np.cov(a, rowvar=False)", "np.cov(a, rowvar=False, bias=True)"),
}
SPECIAL = {  # student -> {exercise: replacement cell}, and the words its feedback must contain
    "loops_forever": ({"ddim_spacing": "def ddim_spacing(T, S, spacing):\n    while True:\n        pass\n"}, "time limit"),
    "raises_at_import": ({"simple_loss": "import a_module_that_does_not_exist\n\ndef simple_loss(*a):\n    return 0\n"},
                         "ModuleNotFoundError"),
    "prints_megabytes": ({"cfg_eps": "def cfg_eps(eps_cond, eps_uncond, w):\n    for _ in range(10**7):\n"
                                     "        print('ε' * 1000)\n    return (1 + w) * eps_cond - w * eps_uncond\n"},
                         "output cap"),
    "allocates_too_much": ({"q_posterior": "def q_posterior(x0, x_t, t, betas):\n    return [0.0] * 10**11\n"},
                           "MemoryError"),
    "calls_ddlib": ({
        "q_sample": "from ddlib.schedules import NoiseSchedule\n\ndef q_sample(x0, eps, alpha_bar_t):\n"
                    "    out = [NoiseSchedule(torch.tensor([1 - float(a)])).add_noise(x0[i:i + 1], eps[i:i + 1], torch.tensor([0]))\n"
                    "           for i, a in enumerate(alpha_bar_t)]\n    return torch.cat(out)\n",
        "ddim_spacing": "import ddlib.samplers\n\ndef ddim_spacing(T, S, spacing):\n"
                        "    return ddlib.samplers.ddim_timesteps(T, S, spacing)\n",
        "nichol_cosine_betas": "from ddlib.schedules import cosine_betas\n\ndef nichol_cosine_betas(T, s=0.008, max_beta=0.999):\n"
                               "    return cosine_betas(T, s, max_beta)\n",
        "frechet_from_features": "from ddlib.metrics.stats import frechet_distance\n\ndef frechet_from_features(a, b):\n"
                                 "    cov = lambda f: np.atleast_2d(np.cov(f, rowvar=False))\n"
                                 "    return frechet_distance(a.mean(0), cov(a), b.mean(0), cov(b))\n",
    }, "is not available while grading"),
}


def _write_submission(instructor: Path, dest: Path, replace: dict[str, str]) -> None:
    dest.mkdir(parents=True)
    for path in sorted(instructor.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            gid = nbgrader_meta(cell).get("grade_id")
            if gid in replace:
                cell.source = replace[gid]
        nbformat.write(nb, str(dest / path.name))


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def graded(editions, tmp_path_factory):
    from ddlib.grading.grade import Limits, grade_submissions

    subs = tmp_path_factory.mktemp("submissions")
    shutil.copytree(editions / "instructor", subs / "instructor", ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(editions / "student", subs / "blank")
    for exercise, (student, right, wrong) in BUGS.items():
        source = EXERCISES[exercise].solution
        assert right in source, (exercise, right)
        _write_submission(editions / "instructor", subs / student, {exercise: source.replace(right, wrong)})
    for student, (replace, _) in SPECIAL.items():
        _write_submission(editions / "instructor", subs / student, replace)
    (subs / "unreadable").mkdir()
    (subs / "unreadable" / "01_ddpm_cifar10.ipynb").write_text("this is not a notebook")
    before = _digest(subs)
    limits = Limits(time_limit=3.0, output_limit=100_000, memory_limit=2 * 1024**3)
    out1, out2 = tmp_path_factory.mktemp("grades1"), tmp_path_factory.mktemp("grades2")
    grade_submissions(subs, out1, limits=limits)
    grade_submissions(subs, out2, limits=limits)
    return {"subs": subs, "before": before, "out": out1, "again": out2}


def _grades(out: Path) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    with open(out / "grades.csv") as f:
        for row in csv.DictReader(f):
            assert float(row["maximum"]) == POINTS[row["exercise"]]
            table.setdefault(row["student"], {})[row["exercise"]] = float(row["points"])
    return table


@pytest.mark.slow
def test_instructor_edition_scores_full_marks_and_blank_edition_zero(graded):
    grades = _grades(graded["out"])
    assert grades["instructor"] == POINTS
    assert grades["blank"] == {e: 0.0 for e in POINTS}
    feedback = (graded["out"] / "feedback" / "blank.md").read_text()
    assert "NotImplementedError" in feedback and "0 / 25" in feedback.replace("**", "")


@pytest.mark.slow
def test_each_classic_bug_loses_exactly_its_exercise(graded):
    grades = _grades(graded["out"])
    for exercise, (student, _, _) in BUGS.items():
        assert grades[student] == {**POINTS, exercise: 0.0}, student
        feedback = (graded["out"] / "feedback" / f"{student}.md").read_text()
        assert f"## `{exercise}`: 0 / " in feedback and feedback.count("Failed checks") == 1
    fb = (graded["out"] / "feedback" / "bug_beta_not_beta_tilde.md").read_text()
    assert "β_t instead of β̃_t" in fb


@pytest.mark.slow
def test_loops_crashes_prints_and_ddlib_calls_lose_only_their_exercises(graded):
    grades = _grades(graded["out"])
    for student, (replace, words) in SPECIAL.items():
        assert grades[student] == {**POINTS, **{e: 0.0 for e in replace}}, student
        feedback = (graded["out"] / "feedback" / f"{student}.md").read_text()
        assert feedback.count(words) >= len(replace), (student, words)
    assert grades["unreadable"] == {e: 0.0 for e in POINTS}
    assert "could not be read" in (graded["out"] / "feedback" / "unreadable.md").read_text()


@pytest.mark.slow  # a real grading run: 10 s
def test_the_ddlib_calling_submission_would_pass_without_the_switch():
    """The calls_ddlib solutions are right: only switching ddlib's functions off makes them fail."""
    from ddlib.grading.sandbox import run_exercise

    for exercise, cell in SPECIAL["calls_ddlib"][0].items():
        ex = EXERCISES[exercise]
        result = run_exercise({"setup": ex.setup, "solution": cell, "tests": ex.tests, "names": list(ex.names)})
        assert result["passed"], (exercise, result)


@pytest.mark.slow
def test_grading_never_modifies_submissions_and_repeats_exactly(graded):
    assert _digest(graded["subs"]) == graded["before"]
    assert _digest(graded["out"]) == _digest(graded["again"])
    manual = (graded["out"] / "manual.csv").read_text().splitlines()
    assert manual[0] == "student,question,points,maximum" and any(",q5_seed_errata,,4" in r for r in manual)


def _exercise_sections(folder: Path):
    """One notebook of the Exercises sections of every edition notebook in ``folder`` (kernel: ddlib)."""
    cells = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        start = _exercises_start(nb.cells)
        if start is not None:
            cells += nb.cells[start:]
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = nb.metadata
    return out


@pytest.mark.slow
def test_editions_run_in_the_ddlib_kernel(editions):
    """The instructor edition's exercises run clean in the ddlib kernel; the student's fail only where code is missing."""
    from nbclient import NotebookClient

    nb = _exercise_sections(editions / "instructor")
    assert nb.metadata.kernelspec.name == "ddlib"
    NotebookClient(nb, timeout=120, kernel_name="ddlib", resources={"metadata": {"path": str(REPO)}}).execute()
    nb = _exercise_sections(editions / "student")
    NotebookClient(nb, timeout=120, kernel_name="ddlib", allow_errors=True,
                   resources={"metadata": {"path": str(REPO)}}).execute()
    errors = [(nbgrader_meta(c).get("grade_id"), o["ename"]) for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and all(gid.endswith("_check") and ename == "NotImplementedError" for gid, ename in errors), errors
    assert len(errors) == len(ASSIGNMENT.exercises)
