"""Grade submissions: each in its own sandbox, each answer under a time limit, two at a time.

A submission can only lose its own points: its SQL runs as its sandbox's role, every statement
has a timeout (and a watchdog ends sessions that outlive it), the whole submission has a time
limit, its answers are parsed and checked in a child process (a crash there costs that answer
only), a monitor bounds its memory and disk, and a server failure sends it back to be graded
again alone. Errors in the learner's SQL become their feedback; the reference answer never does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from labkit.exercises import checker, shuffled
from labkit.exercises.structure import MAX_ANSWER_CHARS
from labkit.grading import limits, sandbox, worker
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
    memory_limit: int = limits.MEMORY_LIMIT  # bytes of private memory per server session
    disk_limit: int = limits.DISK_LIMIT  # bytes a sandbox database may grow by
    max_answer_chars: int = MAX_ANSWER_CHARS  # a longer answer is refused unparsed

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
    retry: bool = False  # a server failure stopped it: to be graded again, alone

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


def _stopped(seconds: float) -> list[str]:
    return [f"Stopped after {seconds:.0f} s: the query ran past its time limit (is a join condition missing?)."]


@dataclass
class _Context:
    """What one submission's grading uses: the admin connection, its checker child, the monitor, the retry mode."""

    admin: ConnectionInfo
    checker: worker.Checker
    monitor: limits.Monitor | None
    final: bool  # graded alone after a server failure: what fails now is the answer's doing
    shuffled_db: str | None
    max_answer_chars: int
    retry: bool = False
    problems: list[str] = field(default_factory=list)


def _run(ctx: _Context, box: sandbox.Sandbox, exercise: str, sql: str, spec: dict[str, Any], seconds: float) -> list[str] | None:
    """Feedback for one answer in ``box`` (empty when it passes); None when the server failed and the
    submission is to be graded again, alone."""
    shuffled_db = ctx.shuffled_db if box.template == database.TEMPLATE_DB else None  # the copy holds the course data only
    job = worker.Job(exercise, sql, spec, box.info, box.dbname, seconds, shuffled_db, ctx.max_answer_chars)
    outcome = ctx.checker.run(job, grace=2.0, on_late=lambda: sandbox.terminate(ctx.admin, box))
    breach = ctx.monitor.breach(box.role) if ctx.monitor is not None else None
    if breach:
        return [f"Stopped: the query {breach} (the limit for one answer). Is a join condition missing, or is a table copied?"]
    if outcome.crashed:
        ctx.problems.append(f"The answer to {exercise} crashed the checker ({outcome.crashed}); it scored nothing.")
        return [f"This answer crashed the checker ({outcome.crashed}) and could not be judged: no exercise needs a query "
                "this long or this deeply nested."]  # fmt: skip
    if outcome.timed_out or any("statement timeout" in line for line in outcome.feedback):
        return _stopped(seconds)
    if outcome.server_failure:
        if not ctx.final:
            ctx.retry = True
            return None
        if (outcome.sqlstate or "").startswith("53"):  # out of memory, disk, locks, connections: alone, it is the answer's doing
            return [f"The query exhausted a shared server resource (also when graded alone): {outcome.server_failure}"]
        raise sandbox.GradingError(f"The server failed while checking {exercise}: {outcome.server_failure}")
    return outcome.feedback


def _grade_answer(ctx: _Context, boxes: dict[str, sandbox.Sandbox], exercise: str, answer: Answer | None,
                  options: Options, deadline: float) -> list[str] | None:  # fmt: skip
    if answer is None:
        number = exercise.replace(".", "_")
        return [f"No answer found: the notebooks submitted do not assign answer_{number}."]
    if answer.problem or answer.sql is None:
        return [answer.problem or "No answer."]
    if not answer.sql.strip():
        return ["Not answered: the query is still empty."]
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return [f"Not graded: the submission used up its time limit ({options.time_limit:.0f} s) before this exercise."]
    seconds = min(options.statement_timeout, remaining)
    feedback = _run(ctx, boxes["public"], exercise, answer.sql, checker.spec(exercise), seconds)
    hidden = (options.hidden_specs or {}).get(exercise)
    if feedback == [] and hidden is not None and "hidden" in boxes:
        there = _run(ctx, boxes["hidden"], exercise, answer.sql, hidden, min(seconds, max(1.0, deadline - time.monotonic())))
        if there is None:
            return None
        if there:  # a wrong result there; a time limit there is no proof of hard-coding
            return there if there[0].startswith(("Stopped", "This answer crashed", "The query exhausted")) else [OVERFIT]
    return feedback


def grade_submission(admin: ConnectionInfo, submission: Submission, exercises: list[str], options: Options, *,
                     checker_process: worker.Checker | None = None, monitor: limits.Monitor | None = None,
                     final: bool = False, shuffled_db: str | None = None) -> SubmissionGrade:  # fmt: skip
    """Points and feedback for every exercise in ``exercises``.

    ``final``: the submission is graded alone after a server failure, so what fails now is its own doing."""
    own = checker_process is None
    ctx = _Context(admin, checker_process or worker.Checker(), monitor, final, shuffled_db, options.max_answer_chars)
    started = time.monotonic()
    deadline = started + options.time_limit
    templates = {"public": database.TEMPLATE_DB}
    if options.hidden_specs is not None:
        templates["hidden"] = HIDDEN_DB
    boxes: dict[str, sandbox.Sandbox] = {}
    grades: dict[str, ExerciseGrade] = {}
    try:
        wanted = [e for e in exercises if submission.answers.get(e) is not None]
        functions = {f for e in wanted for f in checker.spec(e).get("functions", [])}
        foreign_servers = any(checker.spec(e).get("creates_foreign_servers") for e in wanted)
        if wanted:
            for key, template in templates.items():
                boxes[key] = sandbox.create(admin, template, statement_timeout=f"{int(options.statement_timeout * 1000)}ms")
                if functions:
                    sandbox.grant_functions(admin, boxes[key], functions)
                if foreign_servers:
                    sandbox.allow_foreign_servers(admin, boxes[key])
                if monitor is not None:
                    monitor.register(boxes[key].role, boxes[key].size)
        for exercise in exercises:
            max_points = options.max_points(exercise)
            feedback = _grade_answer(ctx, boxes, exercise, submission.answers.get(exercise), options, deadline)
            if feedback is None:
                break  # graded again later, alone
            grades[exercise] = ExerciseGrade(exercise, 0.0 if feedback else max_points, max_points, feedback)
    finally:
        for box in boxes.values():
            if monitor is not None:
                monitor.unregister(box.role)
            sandbox.drop(admin, box.dbname)
        if own:
            ctx.checker.close()
    result = SubmissionGrade(submission.student, grades, [*submission.problems, *ctx.problems], time.monotonic() - started)
    result.retry = ctx.retry
    return result


def _not_graded(submission: Submission, exercises: list[str], options: Options, error: Exception) -> SubmissionGrade:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = f"Grading failed on the server side ({type(error).__name__}: {first_line})"
    note = [f"Not graded: {reason}. Your instructor will grade it again."]
    grades = {e: ExerciseGrade(e, 0.0, options.max_points(e), note) for e in exercises}
    return SubmissionGrade(submission.student, grades, [*submission.problems, reason], 0.0, graded=False)


def grade_all(admin: ConnectionInfo, submissions: list[Submission], exercises: list[str], options: Options,
              *, progress: bool = True) -> list[SubmissionGrade]:  # fmt: skip
    """Grade every submission, ``options.workers`` at a time; results in the submissions' order.

    A submission that met a server failure (another submission may have exhausted a shared
    resource meanwhile) is graded again at the end, alone: only then is a failure its own."""
    from tqdm import tqdm

    sandbox.clean_leftovers(admin)
    shuffled_db = shuffled.SHUFFLED_DB if any(checker.spec(e).get("shuffled") for e in exercises) and shuffled.ensure(admin) else None
    results: dict[int, SubmissionGrade] = {}
    local = threading.local()
    processes: list[worker.Checker] = []
    guard = threading.Lock()

    def grade(index: int, final: bool = False) -> SubmissionGrade:
        if getattr(local, "checker", None) is None:
            local.checker = worker.Checker()
            with guard:
                processes.append(local.checker)
        return grade_submission(admin, submissions[index], exercises, options, checker_process=local.checker, monitor=monitor,
                                final=final, shuffled_db=shuffled_db)  # fmt: skip

    with (
        limits.Monitor(admin, memory_limit=options.memory_limit, disk_limit=options.disk_limit) as monitor,
        tqdm(total=len(submissions), desc="grading", unit=" submission", disable=not progress, leave=False) as bar,
    ):
        try:
            with ThreadPoolExecutor(max_workers=options.workers) as pool:
                futures = {pool.submit(grade, i): i for i in range(len(submissions))}
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        results[index] = future.result()
                    except Exception as exc:  # the server failed (maybe because of another submission): again, alone
                        results[index] = _not_graded(submissions[index], exercises, options, exc)
                        results[index].retry = True
                    bar.update(1)
            for index in sorted(i for i, r in results.items() if r.retry):  # alone now: what fails is the answer's doing
                try:
                    results[index] = grade(index, final=True)
                except Exception as exc:
                    results[index] = _not_graded(submissions[index], exercises, options, exc)
        finally:
            for process in processes:
                process.close()
    return [results[i] for i in range(len(submissions))]
