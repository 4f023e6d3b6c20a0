"""``python -m ddlib exercises``: write the student and instructor editions of the notebooks' exercises."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "exercises",
        help="write the student and instructor editions of the notebooks (.ipynb) for a course",
        description="Make the two editions of the notebooks from their sources with nbgrader's preprocessors: "
        "OUT/student/ (solutions and hidden tests removed, outputs cleared, read-only cells locked) and "
        "OUT/instructor/ (solutions, all tests, the rubric; RUBRIC.md lists the points). "
        "Example: python -m ddlib exercises --out build/exercises",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", "-o", default="build/exercises", help="output folder")
    p.add_argument("--source", default=None, help="folder of notebook sources NN_*.py (default: the repository's notebooks/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ddlib.grading.editions import make_editions
    from ddlib.grading.spec import load_assignment

    written = make_editions(args.out, args.source)
    a = load_assignment(args.source)
    print(f"{len(a.exercises)} autograded exercises ({a.max_points:g} points) and {len(a.questions)} questions graded by hand")
    for kind, paths in written.items():
        print(f"{kind}: {paths[0].parent}/ ({len([p for p in paths if p.suffix == '.ipynb'])} notebooks)")
    return 0
