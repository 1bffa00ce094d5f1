"""Every debugging exercise of the course that shows broken SQL in its task: that SQL, submitted as it is, must fail the check
(else the check cannot tell the bug from its fix)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import nbformat
import pytest

from labkit.config import NOTEBOOKS_DIR
from labkit.exercises import checker, refresh
from labkit.servers.base import ConnectionInfo

SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def broken_code(solution: refresh.Solution) -> str | None:
    """The first ```sql block of the exercise's task cell: the code the learner is asked to fix."""
    heading = f"### Exercise {solution.exercise} "
    cells = nbformat.read(NOTEBOOKS_DIR / f"{solution.notebook}.ipynb", as_version=4).cells
    task = next(c.source for c in cells if c.cell_type == "markdown" and c.source.startswith(heading))
    block = SQL_BLOCK.search(task)
    return block.group(1).strip() if block else None


DEBUG = [s for s in refresh.all_solutions() if s.policy.get("task") == "debug" and broken_code(s)]


@pytest.fixture(scope="module", autouse=True)
def pristine_shop_afterwards(shop: ConnectionInfo) -> Iterator[None]:
    """The checks write in rolled-back transactions; leave the shop as pristine as it was found."""
    yield
    from labkit.shop import database

    database.reset(shop)


def test_the_notebooks_have_debugging_tasks_with_broken_code() -> None:
    assert len(DEBUG) >= 15


@pytest.mark.parametrize("solution", DEBUG, ids=[s.exercise for s in DEBUG])
def test_the_broken_code_of_a_debugging_task_fails_its_check(solution: refresh.Solution, shop: ConnectionInfo) -> None:
    broken = broken_code(solution)
    assert broken is not None
    with shop.connect("shop") as conn:
        assert checker.evaluate(conn, solution.exercise, solution.sql, count_attempt=False).passed
        result = checker.evaluate(conn, solution.exercise, broken, count_attempt=False)
    assert not result.passed, f"{solution.exercise}: the broken code of the task passes the check"
