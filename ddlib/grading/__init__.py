"""Course tooling: the notebooks' exercises, their student and instructor editions, and an offline autograder.

- :mod:`ddlib.grading.spec`     the exercises and questions, read from nbgrader cell metadata in the notebook sources
- :mod:`ddlib.grading.editions` the student and instructor editions (.ipynb), made with nbgrader's preprocessors
- :mod:`ddlib.grading.sandbox`  one exercise of one submission in a forked process: time limit, output cap,
  ddlib's own implementations switched off
- :mod:`ddlib.grading.grade`    a folder of submissions → grades.csv, manual.csv, feedback/<student>.md

Command line: ``python -m ddlib exercises`` and ``python -m ddlib grade`` (``make exercises``, ``make grade``).
See docs/grading.md.
"""
