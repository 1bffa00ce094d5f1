"""A learner's submission: the answers found in their notebooks, read without running any code.

Grading never executes a submission's Python: a kernel would run with the grader's rights and
network. The exercises are SQL, and each answer is a string literal assigned to
``answer_NN_K`` (exercise "NN.K") in the released notebook, so the answers are read from the
cells' syntax trees. Whatever else a cell does (loops, file access) is never run.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ANSWER_NAME = re.compile(r"^answer_(\d\d)_(\d+)$")


@dataclass
class Answer:
    """What a submission holds for one exercise: SQL, or why there is none."""

    sql: str | None
    problem: str | None = None


@dataclass
class Submission:
    """One student's notebooks, with the answers they contain."""

    student: str
    files: list[Path]
    answers: dict[str, Answer] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def exercise_of(name: str) -> str | None:
    """``answer_03_2`` → ``"03.2"``."""
    match = ANSWER_NAME.match(name)
    return f"{match[1]}.{match[2]}" if match else None


def read_answers(path: Path) -> tuple[dict[str, Answer], list[str]]:
    """The answers in one notebook file (the last assignment wins, as when the notebook runs), and problems."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, UnicodeDecodeError, nbformat.reader.NotJSONError, KeyError, AttributeError, ValueError) as exc:
        return {}, [f"{path.name} is not a readable notebook ({type(exc).__name__}); nothing in it could be graded."]
    answers: dict[str, Answer] = {}
    problems: list[str] = []
    for index, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code" or "answer_" not in cell.get("source", ""):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as exc:
            problems.append(f"{path.name}, cell {index}: not valid Python ({exc.msg}, line {exc.lineno}); its answers were not read.")
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            value = getattr(node, "value", None)
            for target in targets:
                if not isinstance(target, ast.Name) or (exercise := exercise_of(target.id)) is None:
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    answers[exercise] = Answer(value.value)
                else:
                    answers[exercise] = Answer(None, f'{target.id} must be a plain string of SQL ("""…"""), not computed by Python.')
    return answers, problems


def collect(folder: Path) -> list[Submission]:
    """Every submission in ``folder``: a sub-folder per student (any notebooks inside) or one ``STUDENT.ipynb`` each."""
    if not folder.is_dir():
        raise FileNotFoundError(f"No submissions folder at {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif entry.suffix == ".ipynb":
            files = [entry]
        else:
            continue
        submission = Submission(entry.stem if entry.is_file() else entry.name, files)
        if not files:
            submission.problems.append("No notebook (.ipynb) in this submission.")
        for path in files:
            answers, problems = read_answers(path)
            submission.answers.update(answers)
            submission.problems += problems
        found.append(submission)
    return found
