"""Grades for the LMS: `labkit grade --roster` writes Canvas and Moodle import files matched to the roster."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from labkit.classroom.roster import Student
from labkit.exercises import checker, refresh
from labkit.grading import exports
from labkit.grading.grader import ExerciseGrade, SubmissionGrade
from labkit.servers.base import ConnectionInfo

ROOT = Path(__file__).resolve().parent.parent
ROSTER = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Email\n"
    "    Points Possible,,,,,\n"
    "Ada Lovelace,101,s-001,ada,A,ada@uni.example\n"
    "Grace Hopper,102,s-002,grace,B,grace@uni.example\n"
    "Alan Turing,103,s-003,alan,A,alan@uni.example\n"
    "Edsger Dijkstra,104,s-004,edsger,B,\n"
)


def _submission(folder: Path, answers: dict[str, str]) -> None:
    cells = [nbformat.v4.new_code_cell("import labkit\nshop = labkit.lab()")]
    cells += [nbformat.v4.new_code_cell(f'answer_{e.replace(".", "_")} = """\n{sql}\n"""') for e, sql in answers.items()]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "work.ipynb")


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def points_possible(notebook: str, points: dict[str, float]) -> str:
    """What a notebook's exercises are worth, as the exports print it (the count of exercises grows with the course)."""
    total = sum(points.get(e, float(spec.get("points", 1))) for e, spec in checker.specs().items() if e.startswith(f"{notebook}."))
    return f"{total:g}"


def test_grade_writes_canvas_and_moodle_files_matched_by_login_email_and_id(shop: ConnectionInfo, tmp_path: Path) -> None:
    refs = {s.exercise: s.sql for s in refresh.all_solutions(ROOT / "notebooks")}
    subs = tmp_path / "submissions"
    _submission(subs / "ada", {e: refs[e] for e in ("00.1", "00.2", "02.1")})  # by login
    _submission(subs / "grace@uni.example", {"00.1": refs["00.1"], "02.1": "SELECT 1"})  # by email
    _submission(subs / "s-004", {"02.2": refs["02.2"]})  # by id; no email in the roster
    _submission(subs / "stranger", {"00.1": refs["00.1"]})  # on no roster
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    out = tmp_path / "grades" / "gradebook.csv"
    command = [sys.executable, "-m", "labkit.cli", "grade", str(subs), "--out", str(out), "--exercises", "00,02", "--points", "02.4=3",
               "--roster", str(roster), "--quiet"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert rows(out.with_name("gradebook-canvas.csv")) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "00-welcome", "02-ctes"],
        ["    Points Possible", "", "", "", "", points_possible("00", {}), points_possible("02", {"02.4": 3})],
        ["Ada Lovelace", "101", "s-001", "ada", "A", "2", "1"],
        ["Grace Hopper", "102", "s-002", "grace", "B", "1", "0"],
        ["Alan Turing", "103", "s-003", "alan", "A", "", ""],  # no submission: no grade, not zero
        ["Edsger Dijkstra", "104", "s-004", "edsger", "B", "0", "1"],
    ]
    assert rows(out.with_name("gradebook-moodle.csv")) == [
        ["Email address", "00-welcome", "02-ctes"],
        ["ada@uni.example", "2", "1"],
        ["grace@uni.example", "1", "0"],
        ["alan@uni.example", "", ""],
    ]
    nbgrader = rows(out.with_name("gradebook-nbgrader.csv"))
    assert nbgrader[0] == list(exports.NBGRADER_COLUMNS)
    assert nbgrader[1:5] == [
        ["00-welcome", "", "", "ada", "Lovelace", "Ada", "ada@uni.example", "2", "0", "2", points_possible("00", {})],
        ["00-welcome", "", "", "grace", "Hopper", "Grace", "grace@uni.example", "1", "0", "1", points_possible("00", {})],
        ["00-welcome", "", "", "alan", "Turing", "Alan", "alan@uni.example", "0", "0", "0", points_possible("00", {})],
        ["00-welcome", "", "", "edsger", "Dijkstra", "Edsger", "", "0", "0", "0", points_possible("00", {})],
    ]
    assert len(nbgrader) == 1 + 2 * 4 and nbgrader[5][0] == "02-ctes"
    assert "submission 'stranger' matches no student of the roster" in result.stderr
    assert "Edsger Dijkstra has no email in the roster" in result.stderr


def test_a_bad_roster_fails_before_any_grading(tmp_path: Path) -> None:
    subs = tmp_path / "submissions"
    _submission(subs / "ada", {"00.1": "SELECT 1"})
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,Section\nAda,A\n")
    command = [sys.executable, "-m", "labkit.cli", "grade", str(subs), "--out", str(tmp_path / "g.csv"), "--roster", str(roster)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "no id, login or email column" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "g.csv").exists()


def _grade(student: str, points: float) -> SubmissionGrade:
    return SubmissionGrade(student=student, grades={"00.1": ExerciseGrade("00.1", points, 1.0, [])}, problems=[], seconds=0.1)


def test_two_submissions_of_one_student_are_reported_not_guessed(tmp_path: Path) -> None:
    entries = [Student(key="s-001", name="Ada", login="ada", email="ada@uni.example")]
    problems = exports.write_canvas(tmp_path / "c.csv", [_grade("ada", 1), _grade("ADA@uni.example", 0)], ["00.1"], entries)
    assert problems == ["submissions 'ada' and 'ADA@uni.example' are all Ada's; none is in the LMS files."]
    assert rows(tmp_path / "c.csv")[2] == ["Ada", "", "s-001", "ada", "", ""]


@pytest.mark.parametrize("name", ["s-001", "ada", "ada@uni.example", "ADA"])
def test_a_submission_is_matched_by_any_of_the_students_names(tmp_path: Path, name: str) -> None:
    entries = [Student(key="s-001", name="Ada", login="ada", email="ada@uni.example")]
    assert exports.write_moodle(tmp_path / "m.csv", [_grade(name, 1)], ["00.1"], entries) == []
    assert rows(tmp_path / "m.csv") == [["Email address", "00-welcome"], ["ada@uni.example", "1"]]
