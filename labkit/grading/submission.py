"""A learner's submission: the answers found in their notebooks, read without running any code.

Grading never executes a submission's Python: a kernel would run with the grader's rights and
network. The exercises are SQL, and each answer is a string literal assigned to
``answer_NN_K`` (exercise "NN.K") in the released notebook, so the answers are read from the
cells' syntax trees: the top-level assignment a top-to-bottom run would leave (not one inside a
function or a dead ``if False:``; an assignment whose effect depends on running the code is
reported as ambiguous). Whatever else a cell does (loops, file access) is never run.

Every file is untrusted: its size is bounded before it is read, links are not followed out of
the submissions folder, and anything that is not a readable notebook becomes a problem in that
student's row, never a failure of the run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANSWER_NAME = re.compile(r"^answer_(\d\d)_(\d+)$")
MAX_NOTEBOOK_BYTES = 20 * 1024**2  # a course notebook with outputs is well under 1 MB
PYTHON_CELL_MAGICS = {"time", "capture"}  # cell magics whose body runs as Python in the notebook's namespace


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
    source: str = ""  # what it came from in the submissions folder: "bob/" or "bob.ipynb"


def exercise_of(name: str) -> str | None:
    """``answer_03_2`` → ``"03.2"``."""
    match = ANSWER_NAME.match(name)
    return f"{match[1]}.{match[2]}" if match else None


# -- reading one file ------------------------------------------------------------------------
class Unreadable(Exception):
    """A file that is not a notebook the grader can read (the message says why)."""


def _load(path: Path) -> list[dict[str, Any]]:
    """The cells of a notebook file (format 4, or 3 with worksheets), read with a bound on its size."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("is not a regular file")
        if info.st_size > MAX_NOTEBOOK_BYTES:
            raise Unreadable(f"is {info.st_size / 1024**2:.0f} MB, more than a notebook can be ({MAX_NOTEBOOK_BYTES // 1024**2} MB)")
        with path.open("rb") as handle:
            data = handle.read(MAX_NOTEBOOK_BYTES + 1)
        if len(data) > MAX_NOTEBOOK_BYTES:
            raise Unreadable("grew past the size a notebook can be while it was read")
        document = json.loads(data.decode("utf-8"))
    except Unreadable:
        raise
    except RecursionError:
        raise Unreadable("is nested too deeply to be a notebook") from None
    except (OSError, ValueError, MemoryError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unreadable(f"is not a readable notebook ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise Unreadable("is JSON but not a notebook")
    if isinstance(document.get("cells"), list):
        cells = document["cells"]
    elif isinstance(document.get("worksheets"), list):  # format 3
        cells = [c for sheet in document["worksheets"] if isinstance(sheet, dict) for c in (sheet.get("cells") or [])]
    else:
        raise Unreadable("is JSON but not a notebook (no cells)")
    return [c for c in cells if isinstance(c, dict)]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return ""


def _python_of(source: str) -> str | None:
    """The Python a code cell runs: a cell magic's body where it runs as Python, line magics and shell lines
    blanked; None for a cell in another language (``%%sql``, ``%%bash``)."""
    lines = source.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(maxsplit=1)[0] if lines[first].strip() != "%%" else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines = [""] * (first + 1) + lines[first + 1 :]
    # line magics (%time …), shell escapes (!ls) and help (x?) are IPython, not Python: blank them, keep line numbers
    return "\n".join("" if line.lstrip().startswith(("%", "!")) or (line.rstrip().endswith("?") and not line.lstrip().startswith("#"))
                     else line for line in lines)  # fmt: skip


def _assigned(node: ast.AST) -> list[str]:
    """The answer names an assignment-like statement binds (not inside functions or classes)."""
    names = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)) and exercise_of(item.id):
            names.append(item.id)
        stack.extend(ast.iter_child_nodes(item))
    return names


def _constant_test(test: ast.expr) -> bool | None:
    try:
        return bool(ast.literal_eval(test))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


class _Reader:
    """Follows a cell's top-level statements as a run would, for the answer names."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.answers: dict[str, Answer] = {}

    def block(self, body: list[ast.stmt]) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Global, ast.Nonlocal)) and any(exercise_of(n) for n in inner.names):
                    for name in filter(exercise_of, inner.names):
                        self._ambiguous(name, f"is set inside the function or class {node.name!r} ({self.where})")
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and exercise_of(target.id):
                    self._literal(target.id, node.value)
                else:
                    for name in _assigned(target):
                        self.answers[exercise_of(name)] = Answer(
                            None, f'{name} must be a plain string of SQL ("""…"""), not computed by Python.'
                        )  # type: ignore[index]
            return
        if isinstance(node, ast.If) and (live := _constant_test(node.test)) is not None:
            self.block(node.body if live else node.orelse)
            return
        if isinstance(node, (ast.With, ast.AsyncWith)):
            self.block(node.body)
            return
        if isinstance(node, ast.Try) and not any(_assigned(h) for h in node.handlers):
            self.block([*node.body, *node.orelse, *node.finalbody])
            return
        if isinstance(node, ast.Delete):
            for name in _assigned(node):
                self.answers[exercise_of(name)] = Answer(None, f"{name} is deleted ({self.where}) after it is assigned.")  # type: ignore[index]
            return
        for name in _assigned(node):  # a loop, a live-or-dead branch, +=, a walrus: only a run could tell
            kind = type(node).__name__.lower()
            self._ambiguous(name, f"is changed inside `{kind}` ({self.where}): which value a run leaves cannot be told without running it")

    def _literal(self, name: str, value: ast.expr | None) -> None:
        exercise = exercise_of(name)
        assert exercise is not None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            self.answers[exercise] = Answer(value.value)
        else:
            self.answers[exercise] = Answer(None, f'{name} must be a plain string of SQL ("""…"""), not computed by Python.')

    def _ambiguous(self, name: str, why: str) -> None:
        self.answers[exercise_of(name)] = Answer(None, f"{name} {why}; assign it once, at the top level of a cell.")  # type: ignore[index]


def read_answers(path: Path) -> tuple[dict[str, Answer], list[str]]:
    """The answers in one notebook file (the last top-level assignment wins, as when the notebook runs), and problems."""
    try:
        cells = _load(path)
    except Unreadable as exc:
        return {}, [f"{path.name} {exc}; nothing in it could be graded."]
    answers: dict[str, Answer] = {}
    problems: list[str] = []
    for index, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source", cell.get("input")))
        if "answer_" not in source:
            continue
        python = _python_of(source)
        if python is None:
            problems.append(f"{path.name}, cell {index}: begins with a cell magic that is not Python; its answers were not read.")
            continue
        try:
            tree = ast.parse(python)
        except SyntaxError as exc:
            problems.append(f"{path.name}, cell {index}: not valid Python ({exc.msg}, line {exc.lineno}); its answers were not read.")
            continue
        except (RecursionError, MemoryError, ValueError):
            problems.append(f"{path.name}, cell {index}: too deeply nested to read; its answers were not read.")
            continue
        reader = _Reader(f"cell {index} of {path.name}")
        reader.block(tree.body)
        answers.update(reader.answers)
    return answers, problems


# -- a folder of submissions -----------------------------------------------------------------
def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop
        return False


def _notebooks(folder: Path, root: Path) -> tuple[list[Path], list[str]]:
    """The notebook files under a student's folder, never following a link out of ``root``."""
    files, problems = [], []
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        here = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if d != ".ipynb_checkpoints" and not d.startswith("."))
        for name in sorted(names):
            path = here / name
            if not name.endswith(".ipynb"):
                continue
            if path.is_symlink() and not _inside(path, root):
                problems.append(f"{path.relative_to(folder)} is a link to a file outside the submissions folder; it was not read.")
                continue
            files.append(path)
        for name in list(subdirs):
            if (here / name).is_symlink():  # os.walk does not enter it; say so
                problems.append(f"{(here / name).relative_to(folder)}/ is a link to a folder; it was not read.")
            elif name.endswith(".ipynb"):
                problems.append(f"{(here / name).relative_to(folder)} is a folder, not a regular file: not a notebook.")
    return files, problems


def collect(folder: Path) -> list[Submission]:
    """Every submission in ``folder``: a sub-folder per student (any notebooks inside) or one ``STUDENT.ipynb`` each.

    Each gets a distinct name: a folder ``bob/`` and a file ``bob.ipynb`` stay two submissions,
    named ``bob`` and ``bob.ipynb``, and both rows say so."""
    if not folder.is_dir():
        raise FileNotFoundError(f"No submissions folder at {folder}")
    root = folder.resolve()
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and not _inside(entry, root):
            submission = Submission(entry.name.removesuffix(".ipynb"), [], source=entry.name)
            submission.problems.append(f"{entry.name} is a link out of the submissions folder; it was not read.")
            found.append(submission)
            continue
        if entry.is_dir():
            files, problems = _notebooks(entry, root)
            submission = Submission(entry.name, files, problems=problems, source=entry.name + "/")
        elif entry.suffix == ".ipynb":
            submission = Submission(entry.stem, [entry], source=entry.name)
        else:
            continue
        if not submission.files and not submission.problems:
            submission.problems.append("No notebook (.ipynb) in this submission.")
        for path in submission.files:
            answers, problems = read_answers(path)
            submission.answers.update(answers)
            submission.problems += problems
        found.append(submission)
    return _distinct(found)


def _distinct(submissions: list[Submission]) -> list[Submission]:
    """Give every submission its own name; where two share one, both rows say so (never merged)."""
    groups: dict[str, list[Submission]] = {}
    for submission in submissions:
        groups.setdefault(submission.student.casefold(), []).append(submission)
    taken = {s.student.casefold() for s in submissions}
    for group in (g for g in groups.values() if len(g) > 1):
        shared = group[0].student
        for index, submission in enumerate(group):
            if index == 0:
                continue
            name = submission.source if submission.source.casefold() not in taken else f"{submission.student} ({index + 1})"
            taken.add(name.casefold())
            submission.student = name
        for submission in group:
            others = ", ".join(f"{s.source} as {s.student!r}" for s in group)
            submission.problems.append(f"{len(group)} submissions share the name {shared!r} ({others}): graded separately; "
                                       "check which one is this student's.")  # fmt: skip
    return submissions
