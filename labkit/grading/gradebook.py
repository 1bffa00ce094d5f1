"""What grading hands back: a CSV gradebook, a feedback file per student, a summary per exercise.

Names, file names and answers come from students: in a CSV a text cell that a spreadsheet would
take for a formula is neutralised (OWASP's advice: a leading ``'``), in the Markdown feedback
text is escaped so that it shows as written, and every student gets a feedback file of their own,
with a name that is safe on any file system.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.exercises import checker
from labkit.grading.grader import SubmissionGrade


@dataclass(frozen=True)
class ExerciseSummary:
    exercise: str
    title: str
    answered: int
    passed: int
    students: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.students if self.students else 0.0


def _points(value: float) -> str:
    return f"{value:g}"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # with full-width forms


def cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that could start a formula gets a leading ``'`` (OWASP)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _writer(handle: Any) -> Any:
    writer = csv.writer(handle)

    class Neutralised:
        def writerow(self, row: list[Any]) -> None:
            writer.writerow([cell(v) for v in row])

    return Neutralised()


def write_csv(path: Path, results: list[SubmissionGrade], exercises: list[str]) -> None:
    """One row per student: points per exercise, total, maximum, percent, problems with the files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(["student", *exercises, "total", "max", "percent", "problems"])
        for result in results:
            row = [_points(result.grades[e].points) if result.graded and e in result.grades else "" for e in exercises]
            maximum = result.max_points
            percent = f"{100 * result.total / maximum:.1f}" if maximum else "0.0"
            writer.writerow([result.student, *row, _points(result.total), _points(maximum), percent, " | ".join(result.problems)])


MAX_FILE_STEM = 80
RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(student: str) -> str:
    """A file name for ``student``'s feedback: letters, digits, ``.@-_``, at most 80 characters.

    A name that had to be changed (or shortened) gets a short hash of the original, so that
    ``alice`` and ``alice.`` never share a file."""
    plain = unicodedata.normalize("NFKC", student)
    cleaned = re.sub(r"[^\w.@-]+", "_", plain, flags=re.ASCII).strip("._-") or "student"
    short = cleaned[:MAX_FILE_STEM]
    if short != student or short.casefold() in RESERVED:
        short = f"{short[: MAX_FILE_STEM - 9]}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
    return short


def feedback_names(students: list[str]) -> dict[str, str]:
    """A distinct, safe file stem per student (distinct also where case does not count)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for student in students:
        name = safe_name(student)
        if name.casefold() in taken:
            name = f"{name[: MAX_FILE_STEM - 9]}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
        counter = 2
        while name.casefold() in taken:
            name, counter = f"{safe_name(student)[: MAX_FILE_STEM - 4]}-{counter}", counter + 1
        taken.add(name.casefold())
        names[student] = name
    return names


MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~!#{}])")


def md(text: str) -> str:
    """``text`` as Markdown that shows it as written: no HTML, links, emphasis or headings from a student's text."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _item(text: str) -> list[str]:
    """A feedback line as a list item; a multi-line one (a psql-style error) as a code block under it."""
    if "\n" not in text:
        return [f"- {md(text)}"]
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return ["-", f"  {fence}text", *(f"  {line}" for line in text.splitlines()), f"  {fence}"]


def feedback_text(result: SubmissionGrade, exercises: list[str]) -> str:
    """The feedback a student gets back: per exercise, points and what to look at (Markdown)."""
    lines = [f"# Feedback for {md(result.student)}", "", f"**{_points(result.total)} / {_points(result.max_points)} points**", ""]
    if result.problems:
        lines += ["Problems with the submission:", "", *(f"- {md(p)}" for p in result.problems), ""]
    for exercise in exercises:
        grade = result.grades.get(exercise)
        if grade is None:
            continue
        title = checker.spec(exercise).get("title", "")
        mark = "✓" if grade.passed else "✗"
        lines.append(f"## {mark} Exercise {exercise}{' — ' + title if title else ''} ({_points(grade.points)}/{_points(grade.max_points)})")
        lines += ["", *(line for item in grade.feedback for line in _item(item)), ""] if grade.feedback else ["", "Correct.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_feedback(folder: Path, results: list[SubmissionGrade], exercises: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = feedback_names([r.student for r in results])
    written = []
    for result in results:
        path = folder / f"{names[result.student]}.md"
        path.write_text(feedback_text(result, exercises))
        written.append(path)
    return written


def summarise(results: list[SubmissionGrade], exercises: list[str]) -> list[ExerciseSummary]:
    """Per exercise: how many answered and passed (a low pass rate may mean an unclear task)."""
    summary = []
    results = [r for r in results if r.graded]  # a server failure says nothing about the task
    for exercise in exercises:
        grades = [r.grades[exercise] for r in results if exercise in r.grades]
        answered = sum(1 for g in grades if not g.feedback or not g.feedback[0].startswith(("No answer", "Not answered")))
        summary.append(
            ExerciseSummary(exercise, checker.spec(exercise).get("title", ""), answered, sum(g.passed for g in grades), len(results))
        )
    return summary


def write_summary(path: Path, summary: list[ExerciseSummary]) -> None:
    with path.open("w", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(["exercise", "title", "students", "answered", "passed", "pass_rate"])
        for s in summary:
            writer.writerow([s.exercise, s.title, s.students, s.answered, s.passed, f"{s.pass_rate:.2f}"])


def summary_table(summary: list[ExerciseSummary]) -> str:
    lines = [f"{'exercise':<9} {'passed':>11} {'answered':>9}  title"]
    for s in summary:
        flag = "  ← check the task's wording?" if s.students >= 5 and s.pass_rate < 0.3 else ""
        lines.append(f"{s.exercise:<9} {s.passed:>4}/{s.students:<4} {s.pass_rate:>4.0%} {s.answered:>6}  {s.title}{flag}")
    return "\n".join(lines)
