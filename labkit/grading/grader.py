"""Grade submissions: each in its own sandbox, each answer under a time limit, two at a time.

A submission can only lose its own points: its SQL runs as its sandbox's role, every statement
has a timeout (and a watchdog ends sessions that outlive it), and the whole submission has a
time limit. Errors in the learner's SQL become their feedback; the reference answer never does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import pglast

from labkit.exercises import checker
from labkit.grading import sandbox
from labkit.grading.hidden import HIDDEN_DB
from labkit.grading.submission import Answer, Submission
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

OVERFIT = (
    "Correct on the course data but not on a second dataset with the same tables: "
    "does the query rely on particular values (ids, dates, counts) instead of computing them?"
)


@dataclass
class Options:
    statement_timeout: float = 10.0  # seconds per statement
    time_limit: float = 120.0  # seconds per submission
    workers: int = max(2, min(4, os.cpu_count() or 2))
    points: dict[str, float] = field(default_factory=dict)  # overrides the specs' points
    hidden_specs: dict[str, dict[str, Any]] | None = None  # from hidden.expected_specs

    def max_points(self, exercise: str) -> float:
        return float(self.points.get(exercise, checker.spec(exercise).get("points", 1)))


@dataclass
class ExerciseGrade:
    exercise: str
    points: float
    max_points: float
    feedback: list[str]

    @property
    def passed(self) -> bool:
        return self.points >= self.max_points > 0 or (self.max_points == 0 and not self.feedback)


@dataclass
class SubmissionGrade:
    student: str
    grades: dict[str, ExerciseGrade]
    problems: list[str]
    seconds: float
    graded: bool = True  # False: the server failed while grading; the points say nothing about the learner

    @property
    def total(self) -> float:
        return sum(g.points for g in self.grades.values())

    @property
    def max_points(self) -> float:
        return sum(g.max_points for g in self.grades.values())


def exercises_for(submissions: Iterable[Submission], only: list[str] | None = None) -> list[str]:
    """The exercises to grade: those named in ``only`` (ids or notebook numbers), else every exercise
    of each notebook any submission answers."""
    known = checker.specs()
    if only:
        chosen = [e for e in known if checker.selected(e, only)]
        unknown = [o for o in only if not any(checker.selected(e, [o]) for e in known)]
        if unknown:
            raise KeyError(f"No exercise or notebook {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    else:
        notebooks = {e.split(".")[0] for s in submissions for e in s.answers}
        chosen = [e for e in known if e.split(".")[0] in notebooks]
    return sorted(chosen, key=lambda e: tuple(int(p) for p in e.split(".")))


def _blank(sql: str) -> bool:
    try:
        return not pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return False  # invalid SQL is an answer; the check explains the error


def _run(admin: ConnectionInfo, box: sandbox.Sandbox, exercise: str, sql: str, spec: dict[str, Any], seconds: float) -> list[str]:
    """Feedback for one answer in ``box`` (empty when it passes)."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        sandbox.terminate(admin, box)

    watchdog = threading.Timer(seconds + 2.0, stop)
    watchdog.start()
    try:
        with box.info.connect(box.dbname, connect_timeout=10) as conn:
            result = checker.evaluate(conn, exercise, sql, spec_=spec, timeout=f"{max(1, int(seconds * 1000))}ms", count_attempt=False)
        feedback = result.feedback
    except Exception as exc:  # the learner's session was ended, or the answer broke the checker
        feedback = [f"Could not be checked: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"]
    finally:
        watchdog.cancel()
    if fired.is_set():
        return [f"Stopped after {seconds:.0f} s: the query ran past its time limit."]
    if any("statement timeout" in line for line in feedback):
        return [f"Stopped after {seconds:.0f} s: the query ran past its time limit (is a join condition missing?)."]
    return feedback


def _grade_answer(admin: ConnectionInfo, boxes: dict[str, sandbox.Sandbox], exercise: str, answer: Answer | None,
                  options: Options, deadline: float) -> list[str]:  # fmt: skip
    if answer is None:
        number = exercise.replace(".", "_")
        return [f"No answer found: the notebooks submitted do not assign answer_{number}."]
    if answer.problem or answer.sql is None:
        return [answer.problem or "No answer."]
    if _blank(answer.sql):
        return ["Not answered: the query is still empty."]
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return [f"Not graded: the submission used up its time limit ({options.time_limit:.0f} s) before this exercise."]
    seconds = min(options.statement_timeout, remaining)
    feedback = _run(admin, boxes["public"], exercise, answer.sql, checker.spec(exercise), seconds)
    hidden = (options.hidden_specs or {}).get(exercise)
    if not feedback and hidden is not None and "hidden" in boxes:
        if _run(admin, boxes["hidden"], exercise, answer.sql, hidden, min(seconds, max(1.0, deadline - time.monotonic()))):
            return [OVERFIT]
    return feedback


def grade_submission(admin: ConnectionInfo, submission: Submission, exercises: list[str], options: Options) -> SubmissionGrade:
    """Points and feedback for every exercise in ``exercises``."""
    started = time.monotonic()
    deadline = started + options.time_limit
    templates = {"public": database.TEMPLATE_DB}
    if options.hidden_specs is not None:
        templates["hidden"] = HIDDEN_DB
    boxes: dict[str, sandbox.Sandbox] = {}
    grades: dict[str, ExerciseGrade] = {}
    try:
        wanted = [e for e in exercises if submission.answers.get(e) is not None]
        if wanted:
            for key, template in templates.items():
                boxes[key] = sandbox.create(admin, template, statement_timeout=f"{int(options.statement_timeout * 1000)}ms")
        for exercise in exercises:
            max_points = options.max_points(exercise)
            feedback = _grade_answer(admin, boxes, exercise, submission.answers.get(exercise), options, deadline)
            grades[exercise] = ExerciseGrade(exercise, 0.0 if feedback else max_points, max_points, feedback)
    finally:
        for box in boxes.values():
            sandbox.drop(admin, box.dbname)
    return SubmissionGrade(submission.student, grades, list(submission.problems), time.monotonic() - started)


def _not_graded(submission: Submission, exercises: list[str], options: Options, error: Exception) -> SubmissionGrade:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"Grading failed on the server side ({type(error).__name__}: {first_line})"
    note = [f"Not graded: {reason}. Your instructor will grade it again."]
    grades = {e: ExerciseGrade(e, 0.0, options.max_points(e), note) for e in exercises}
    return SubmissionGrade(submission.student, grades, [*submission.problems, reason], 0.0, graded=False)


def grade_all(admin: ConnectionInfo, submissions: list[Submission], exercises: list[str], options: Options,
              *, progress: bool = True) -> list[SubmissionGrade]:  # fmt: skip
    """Grade every submission, ``options.workers`` at a time; results in the submissions' order."""
    from tqdm import tqdm

    sandbox.clean_leftovers(admin)
    results: dict[str, SubmissionGrade] = {}
    with (
        ThreadPoolExecutor(max_workers=options.workers) as pool,
        tqdm(total=len(submissions), desc="grading", unit=" submission", disable=not progress, leave=False) as bar,
    ):
        futures = {pool.submit(grade_submission, admin, s, exercises, options): s for s in submissions}
        for future in as_completed(futures):
            submission = futures[future]
            try:
                results[submission.student] = future.result()
            except Exception as exc:  # the server failed us, not the learner: say so in their row
                results[submission.student] = _not_graded(submission, exercises, options, exc)
            bar.update(1)
    return [results[s.student] for s in submissions]
