"""``python -m ddlib report`` and ``python -m ddlib pdf``: the notebook report (see :mod:`ddlib.lab.pipeline`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ddlib.lab.pipeline import add_arguments, cmd_pdf, cmd_report

    p = sub.add_parser(
        "report",
        help="run the numbered notebooks for a profile with papermill and build report.html",
        description="Run notebooks/NN_*.py in order with the profile's parameters (notebooks/profiles/PROFILE.yaml) "
        "into REPORTS_DIR/PROFILE/notebooks/, collecting tables/ and figures/, then convert 05_summary to report.html. "
        "Expensive steps are cached by config hash; FORCE=1 recomputes. A failing notebook stops the run with its name "
        "and the failing cell's error, and no report.html is written. Example: python -m ddlib report --profile smoke",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_report)
    q = sub.add_parser(
        "pdf",
        help="convert a finished report to report.pdf (nbconvert, xelatex)",
        description="Convert REPORTS_DIR/PROFILE/notebooks/05_summary.ipynb to REPORTS_DIR/PROFILE/report.pdf with "
        "nbconvert's LaTeX route (needs xelatex and pandoc: `make pdf-deps`). Example: python -m ddlib pdf --profile smoke",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(q, pdf=True)
    q.set_defaults(func=cmd_pdf)
