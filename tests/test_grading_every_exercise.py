"""Every exercise of the course, graded as an instructor grades it: the reference solution earns its
points in a grading sandbox (an unprivileged role in a throwaway copy of the shop, with its limits),
so no correct answer loses points to what the sandbox withholds."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from labkit.exercises import refresh
from labkit.grading import grader, submission
from labkit.servers.base import ConnectionInfo

pytestmark = pytest.mark.slow
SOLUTIONS = refresh.all_solutions()


def test_every_reference_solution_earns_its_points_in_a_sandbox(shop: ConnectionInfo, tmp_path: Path) -> None:
    notebooks: dict[str, list[refresh.Solution]] = {}
    for solution in SOLUTIONS:
        notebooks.setdefault(solution.notebook, []).append(solution)
    for notebook, solutions in notebooks.items():  # one student per notebook: a sandbox and a time limit each
        cells = [nbformat.v4.new_code_cell(f'answer_{s.exercise.replace(".", "_")} = """{s.sql}"""') for s in solutions]
        (tmp_path / notebook).mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / notebook / f"{notebook}.ipynb")
    options = grader.Options(statement_timeout=30.0, time_limit=600.0, workers=2)
    results = grader.grade_all(shop, submission.collect(tmp_path), [s.exercise for s in SOLUTIONS], options, progress=False)
    lost = {
        e: g.feedback
        for r in results
        for e, g in r.grades.items()
        if r.student == next(s.notebook for s in SOLUTIONS if s.exercise == e) and g.points < g.max_points
    }
    assert not lost, lost
    assert all(not r.problems for r in results), [r.problems for r in results if r.problems]
