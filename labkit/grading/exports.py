"""Grades in the LMS's own import formats, matched to the class roster by login, email or id.

- Canvas: ``Student, ID, SIS User ID, SIS Login ID, Section``, then one column per notebook
  (an assignment), a ``Points Possible`` row first, as Canvas's gradebook export and import have it.
- Moodle: ``Email address`` and one column per notebook, for Grades → Import → CSV file
  (map "Email address" to the user's email).
- nbgrader: the columns of ``nbgrader export`` (one row per notebook and student), for tools
  that already read nbgrader's grades.

A submission that matches no roster entry (or more than one) is reported, never guessed; a student
with no submission gets an empty cell, which both LMS read as "no grade" rather than zero.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from labkit.classroom.roster import Student
from labkit.exercises import checker
from labkit.grading.grader import SubmissionGrade

CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
NBGRADER_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                    "raw_score", "late_submission_penalty", "score", "max_score")  # fmt: skip


def assignments(exercises: Sequence[str]) -> dict[str, list[str]]:
    """Exercises grouped by the notebook they come from (``03-window-functions`` → its exercises)."""
    grouped: dict[str, list[str]] = {}
    for exercise in exercises:
        source = str(checker.spec(exercise).get("_file") or exercise.split(".")[0])
        grouped.setdefault(source.removesuffix(".json"), []).append(exercise)
    return grouped


def match(results: Sequence[SubmissionGrade], roster: Sequence[Student]) -> tuple[dict[int, SubmissionGrade], list[str]]:
    """Submissions by roster index, and one problem line per submission that cannot be placed."""
    by_name: dict[str, set[int]] = {}
    for index, entry in enumerate(roster):
        for name in entry.names():
            by_name.setdefault(name, set()).add(index)
    owners: dict[int, list[SubmissionGrade]] = {}
    problems = []
    for result in results:
        candidates = by_name.get(result.student.strip().lower(), set())
        if len(candidates) == 1:
            owners.setdefault(next(iter(candidates)), []).append(result)
            continue
        why = "matches no student of the roster" if not candidates else f"matches {len(candidates)} students of the roster"
        problems.append(f"submission {result.student!r} {why} (by login, email or id); it is not in the LMS files.")
    placed = {}
    for index, found in owners.items():
        if len(found) > 1:
            names = " and ".join(repr(r.student) for r in found)
            problems.append(f"submissions {names} are all {roster[index].name or roster[index].login}'s; none is in the LMS files.")
        else:
            placed[index] = found[0]
    return placed, problems


def _points(value: float) -> str:
    return f"{value:g}"


def _scores(result: SubmissionGrade | None, groups: dict[str, list[str]]) -> list[str]:
    if result is None or not result.graded:
        return ["" for _ in groups]
    return [_points(sum(result.grades[e].points for e in exercises if e in result.grades)) for exercises in groups.values()]


def _possible(groups: dict[str, list[str]], results: Sequence[SubmissionGrade], points: dict[str, float] | None = None) -> list[str]:
    def maximum(exercise: str) -> float:
        for result in results:
            if exercise in result.grades:
                return result.grades[exercise].max_points
        return float((points or {}).get(exercise, checker.spec(exercise).get("points", 1)))

    return [_points(sum(maximum(e) for e in exercises)) for exercises in groups.values()]


def write_canvas(path: Path, results: Sequence[SubmissionGrade], exercises: Sequence[str], roster: Sequence[Student]) -> list[str]:
    """The Canvas gradebook CSV; returns the submissions that could not be placed."""
    groups = assignments(exercises)
    placed, problems = match(results, roster)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CANVAS_COLUMNS, *groups])
        writer.writerow(["    Points Possible", "", "", "", "", *_possible(groups, results)])
        for index, entry in enumerate(roster):
            writer.writerow([entry.name, entry.lms_id, entry.key, entry.login, entry.section, *_scores(placed.get(index), groups)])
    return problems


def write_moodle(path: Path, results: Sequence[SubmissionGrade], exercises: Sequence[str], roster: Sequence[Student]) -> list[str]:
    """The Moodle grade import CSV (students without an email in the roster are reported)."""
    groups = assignments(exercises)
    placed, problems = match(results, roster)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email address", *groups])
        for index, entry in enumerate(roster):
            if not entry.email:
                if index in placed:
                    problems.append(f"{entry.name or entry.login or entry.key} has no email in the roster; not in the Moodle file.")
                continue
            writer.writerow([entry.email, *_scores(placed.get(index), groups)])
    return problems


def _split_name(name: str) -> tuple[str, str]:
    """(last, first) from "Last, First" (Canvas) or "First Last"."""
    if "," in name:
        last, first = name.split(",", 1)
        return last.strip(), first.strip()
    first, _, last = name.strip().rpartition(" ")
    return (last, first) if first else (name.strip(), "")


def write_nbgrader(path: Path, results: Sequence[SubmissionGrade], exercises: Sequence[str], roster: Sequence[Student]) -> list[str]:
    """``nbgrader export``'s CSV: one row per notebook and roster student (no submission: score 0, as nbgrader writes)."""
    groups = assignments(exercises)
    placed, problems = match(results, roster)
    possible = _possible(groups, results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NBGRADER_COLUMNS)
        for (assignment, _), maximum in zip(groups.items(), possible, strict=True):
            for index, entry in enumerate(roster):
                result = placed.get(index)
                if result is not None and not result.graded:
                    continue  # not graded (a server failure): no score rather than a false zero
                score = _scores(result, {assignment: groups[assignment]})[0] if result is not None else "0"
                last, first = _split_name(entry.name)
                student = entry.login or entry.key or entry.email
                writer.writerow([assignment, "", "", student, last, first, entry.email, score, "0", score, maximum])
    return problems
