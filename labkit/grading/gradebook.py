"""What grading hands back: a CSV gradebook, a feedback file per student, a summary per exercise."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

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


def write_csv(path: Path, results: list[SubmissionGrade], exercises: list[str]) -> None:
    """One row per student: points per exercise, total, maximum, percent, problems with the files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *exercises, "total", "max", "percent", "problems"])
        for result in results:
            row = [_points(result.grades[e].points) if result.graded and e in result.grades else "" for e in exercises]
            maximum = result.max_points
            percent = f"{100 * result.total / maximum:.1f}" if maximum else "0.0"
            writer.writerow([result.student, *row, _points(result.total), _points(maximum), percent, " | ".join(result.problems)])


def safe_name(student: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", student).strip("._") or "student"


def feedback_text(result: SubmissionGrade, exercises: list[str]) -> str:
    """The feedback a student gets back: per exercise, points and what to look at (Markdown)."""
    lines = [f"# Feedback for {result.student}", "", f"**{_points(result.total)} / {_points(result.max_points)} points**", ""]
    if result.problems:
        lines += ["Problems with the submission:", "", *(f"- {p}" for p in result.problems), ""]
    for exercise in exercises:
        grade = result.grades.get(exercise)
        if grade is None:
            continue
        title = checker.spec(exercise).get("title", "")
        mark = "✓" if grade.passed else "✗"
        lines.append(f"## {mark} Exercise {exercise}{' — ' + title if title else ''} ({_points(grade.points)}/{_points(grade.max_points)})")
        lines += ["", *(f"- {line}" for line in grade.feedback), ""] if grade.feedback else ["", "Correct.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_feedback(folder: Path, results: list[SubmissionGrade], exercises: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = folder / f"{safe_name(result.student)}.md"
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
        writer = csv.writer(handle)
        writer.writerow(["exercise", "title", "students", "answered", "passed", "pass_rate"])
        for s in summary:
            writer.writerow([s.exercise, s.title, s.students, s.answered, s.passed, f"{s.pass_rate:.2f}"])


def summary_table(summary: list[ExerciseSummary]) -> str:
    lines = [f"{'exercise':<9} {'passed':>11} {'answered':>9}  title"]
    for s in summary:
        flag = "  ← check the task's wording?" if s.students >= 5 and s.pass_rate < 0.3 else ""
        lines.append(f"{s.exercise:<9} {s.passed:>4}/{s.students:<4} {s.pass_rate:>4.0%} {s.answered:>6}  {s.title}{flag}")
    return "\n".join(lines)
