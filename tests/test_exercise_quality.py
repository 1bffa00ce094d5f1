"""What the course's exercises ask: enough of them per notebook, most of them transfer or debugging
tasks, none a near-copy of a code cell shown before it, each with levelled hints."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import nbformat
import pytest

from labkit.config import NOTEBOOKS_DIR
from labkit.exercises import refresh

SOLUTIONS = refresh.all_solutions()
NOTEBOOKS = sorted({s.notebook for s in SOLUTIONS})
MIN_EXERCISES = 6
MIN_THINKING = 3  # transfer or debug tasks per notebook
NEAR_COPY = 0.75  # share of a solution's tokens found, in order, in one earlier code cell
SHORT = 12  # tokens: a solution this short (a one-line setting) resembles many cells by nature


def tokens(text: str) -> list[str]:
    """SQL/Python text as lower-case words, numbers, string literals and symbols, comments dropped."""
    text = re.sub(r"--[^\n]*", " ", text)
    return re.findall(r"[a-z_][a-z_0-9]*|\d+|'[^']*'|[^\s\w]", text.lower())


def copied_share(solution: list[str], cell: list[str]) -> float:
    matcher = difflib.SequenceMatcher(None, solution, cell, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / max(1, len(solution))


def earlier_code_cells(solution: refresh.Solution) -> list[str]:
    """The teaching code cells (not solutions, not checks) before the exercise's solution cell."""
    cells = nbformat.read(NOTEBOOKS_DIR / f"{solution.notebook}.ipynb", as_version=4).cells
    marker = re.compile(rf"\banswer_{solution.exercise.replace('.', '_')}\s*=")
    earlier = []
    for cell in cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and "solution" in tags and marker.search(cell.source):
            break
        if cell.cell_type == "code" and not tags & {"solution", "check"}:
            earlier.append(cell.source)
    return earlier


def test_the_similarity_measure_tells_a_copy_from_a_new_question() -> None:
    cell = "%%sql\nSELECT status, count(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC"
    copy = "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY n DESC LIMIT 3"
    new = "SELECT date_trunc('month', created_at) AS month, sum(total) FILTER (WHERE status = 'shipped') FROM orders GROUP BY 1"
    assert copied_share(tokens(copy), tokens(cell)) >= NEAR_COPY
    assert copied_share(tokens(new), tokens(cell)) < NEAR_COPY


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_has_enough_exercises_and_most_make_learners_think(notebook: str) -> None:
    mine = [s for s in SOLUTIONS if s.notebook == notebook]
    undeclared = [s.exercise for s in mine if "task" not in s.policy]
    assert not undeclared, f"say in metadata.labkit.task whether each is {', '.join(refresh.TASKS)}: {undeclared}"
    thinking = [s.exercise for s in mine if s.policy["task"] in ("transfer", "debug")]
    assert len(mine) >= MIN_EXERCISES, f"{notebook}: {len(mine)} exercises, at least {MIN_EXERCISES} wanted"
    assert len(thinking) >= MIN_THINKING, f"{notebook}: transfer/debug tasks {thinking}, at least {MIN_THINKING} wanted"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.exercise for s in SOLUTIONS])
def test_no_solution_is_a_near_copy_of_a_cell_before_it(solution: refresh.Solution) -> None:
    answer = tokens(solution.sql)
    if len(answer) < SHORT:
        pytest.skip(f"{len(answer)} tokens: too short to compare")
    worst = max(earlier_code_cells(solution), key=lambda cell: copied_share(answer, tokens(cell)), default="")
    share = copied_share(answer, tokens(worst))
    assert share < NEAR_COPY, f"{solution.exercise}: {share:.0%} of the solution is in this earlier cell:\n{worst[:400]}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.exercise for s in SOLUTIONS])
def test_hints_have_three_levels(solution: refresh.Solution) -> None:
    assert len(solution.policy.get("hints", [])) >= 3, "concept, approach, nearly the answer"


def test_a_task_kind_outside_the_known_ones_is_an_error(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('answer_99_1 = """SELECT 1"""')
    cell.metadata = {"tags": ["solution"], "labkit": {"task": "puzzle"}}
    nb.cells.append(cell)
    path = tmp_path / "99-x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="task must be one of recall, transfer, debug"):
        refresh.solutions(path)
