"""Grading a class: submissions in, a gradebook and per-student feedback out.

The parts, in the order a run uses them: ``submission`` (answers read from notebooks, never
executed), ``sandbox`` (a throwaway database and an unprivileged role per submission),
``hidden`` (expected results on a second dataset), ``grader`` (checks with time limits, in
parallel) and ``gradebook`` (CSV, feedback files, per-exercise summary).
"""
