"""``python -m ddlib grade SUBMISSIONS``: autograde submitted notebooks into grades.csv and feedback files."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grade",
        help="autograde a folder of submitted notebooks (offline) into grades.csv and one feedback file per student",
        description="Grade every student's notebooks in SUBMISSIONS (one folder per student, or <student>.ipynb): "
        "each exercise runs on its own, in a process of its own with a time limit and an output cap, against the "
        "hidden tests of the notebook sources, with ddlib's own implementations switched off. Writes OUT/grades.csv "
        "(student, exercise, points, maximum), OUT/manual.csv (questions to grade by hand) and OUT/feedback/<student>.md. "
        "Submissions are never modified. Example: python -m ddlib grade submissions/ --out build/grades",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("submissions", metavar="SUBMISSIONS", help="folder of submitted notebooks")
    p.add_argument("--out", "-o", default="build/grades", help="output folder")
    p.add_argument("--source", default=None, help="folder of notebook sources NN_*.py (default: the repository's notebooks/)")
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per exercise")
    p.add_argument("--output-limit", type=int, default=1_000_000, help="bytes an exercise's code may print")
    p.add_argument("--memory-limit", type=float, default=4.0,
                   help="GiB of memory an exercise's code may add (Linux; 0: no limit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collections import defaultdict
    from pathlib import Path

    from ddlib.grading.grade import Limits, grade_submissions

    grades = grade_submissions(args.submissions, args.out, args.source,
                               Limits(time_limit=args.time_limit, output_limit=args.output_limit,
                                      memory_limit=int(args.memory_limit * 1024**3)))
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for g in grades:
        total[g.student][0] += g.points
        total[g.student][1] += g.maximum
    for student, (got, top) in total.items():
        print(f"{student}: {got:g} / {top:g}")
    print(Path(args.out) / "grades.csv")
    return 0
