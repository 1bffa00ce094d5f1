"""Where a submission's untrusted text is parsed and checked: a child process, so a crash costs one answer.

Parsing an answer (pglast, PostgreSQL's own parser in C) and fetching its result are the risky
steps: a pathological answer can crash the parser or ask for gigabytes. Each grading thread keeps
one child process (started once, ~0.3 s) and sends it one answer at a time; the child has a cap
on its address space. If the child dies, that answer is recorded as its author's problem, a new
child starts, and grading goes on. If it does not answer in time, it is killed.
"""

from __future__ import annotations

import multiprocessing.connection
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

ADDRESS_SPACE_LIMIT = 3 * 1024**3  # bytes of virtual memory a checker child may use


@dataclass
class Job:
    exercise: str
    sql: str
    spec: dict[str, Any]
    info: Any  # ConnectionInfo of the sandbox role
    dbname: str
    seconds: float
    shuffled_db: str | None = None  # also check a passing answer there (order by luck)
    max_answer_chars: int = 64_000  # a longer answer is refused before it is parsed


@dataclass
class Outcome:
    feedback: list[str]
    sqlstate: str | None = None  # the SQL error the answer met (or the server's failure)
    server_failure: str | None = None  # the server failed, maybe not the learner's doing
    crashed: str | None = None  # the checker process died on this answer
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SERVER_CLASSES = ("08", "53", "57P", "58", "XX")  # connection, resources, shutdown, system, internal


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    except (ImportError, ValueError, OSError):
        pass


_connections: dict[tuple[str, str], Any] = {}  # (role, database) → an open connection, in the child


def _connection(info: Any, dbname: str) -> Any:
    """A connection as the sandbox's role, reused between its answers (each check rolls back, and
    ``DISCARD ALL`` drops whatever session state an earlier answer left); others are closed."""
    key = (info.user, dbname)
    for other in [k for k in _connections if k[0] != info.user]:
        _connections.pop(other).close()
    conn = _connections.get(key)
    if conn is not None and not conn.closed and not conn.broken:
        try:
            conn.execute("DISCARD ALL")
            return conn
        except Exception:
            conn.close()
    conn = _connections[key] = info.connect(dbname, connect_timeout=10)
    return conn


def check(job: Job) -> Outcome:
    """Judge one answer (runs in the child)."""
    import pglast
    import psycopg

    from labkit.exercises import checker, structure

    structure.MAX_ANSWER_CHARS = job.max_answer_chars  # this process checks one grading run's answers
    try:
        if not structure.parse(job.sql):
            return Outcome(["Not answered: the query is still empty."])
    except (pglast.parser.ParseError, structure.AnswerTooLong):
        pass  # the check explains it
    timeout = f"{max(1, int(job.seconds * 1000))}ms"
    try:
        conn = _connection(job.info, job.dbname)
        result = checker.evaluate(conn, job.exercise, job.sql, spec_=job.spec, timeout=timeout, count_attempt=False)
        if result.sqlstate and result.sqlstate.startswith(SERVER_CLASSES):
            return Outcome(result.feedback, result.sqlstate, server_failure=result.feedback[-1].splitlines()[0])
        if result.passed and job.shuffled_db and job.spec.get("shuffled"):
            there = _connection(job.info, job.shuffled_db)
            return Outcome(checker.order_independent(there, job.exercise, job.sql, spec_=job.spec, timeout=timeout))
        return Outcome(result.feedback, result.sqlstate)
    except psycopg.Error as exc:  # the connection failed or was ended: the server's doing, or our watchdog's
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Outcome([f"Could not be checked: {text}"], exc.sqlstate, server_failure=text)
    except RecursionError:
        return Outcome(["The answer is nested too deeply to be checked; no exercise needs that."])
    except MemoryError:
        return Outcome(["The answer's result is too large to be checked (out of memory): is a join condition missing?"])


def _serve(pipe: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _limit_memory()
    while True:
        try:
            job = pipe.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            outcome = check(job)
        except Exception as exc:  # a check that breaks on an answer is that answer's problem
            outcome = Outcome([f"Could not be checked: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"])
        pipe.send(outcome)


class Checker:
    """A child process that checks answers one at a time (parent side)."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        # A fresh interpreter (not fork: the grader runs threads; not multiprocessing's spawn, which
        # re-imports the caller's main script), talking over a socket pair.
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "labkit.grading.worker", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the grader, which then stops the child
        )
        theirs.close()
        self._pipe = multiprocessing.connection.Connection(ours.detach())

    def run(self, job: Job, *, grace: float, on_late: Any) -> Outcome:
        """Send ``job``; after ``job.seconds + grace`` call ``on_late()`` (end the sandbox's sessions), then kill the child."""
        try:
            self._pipe.send(job)
            if self._pipe.poll(job.seconds + grace):
                return self._pipe.recv()  # type: ignore[no-any-return]
            on_late()
            if self._pipe.poll(5.0):
                outcome: Outcome = self._pipe.recv()
                outcome.timed_out = True
                return outcome
            self._restart()
            return Outcome([], timed_out=True)
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            code = self._wait()
            self._pipe.close()
            self._start()
            name = signal.Signals(-code).name if code is not None and code < 0 and -code in signal.valid_signals() else f"exit {code}"
            return Outcome([], crashed=name)

    def _wait(self) -> int | None:
        try:
            return self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait(5)

    def _restart(self) -> None:
        self._process.kill()
        self._wait()
        self._pipe.close()
        self._start()

    def close(self) -> None:
        try:
            self._pipe.send(None)
        except OSError:
            pass
        self._wait()
        self._pipe.close()


if __name__ == "__main__":  # the child: run the module's own functions, so that what it sends unpickles as labkit.grading.worker's
    from labkit.grading import worker

    worker._serve(multiprocessing.connection.Connection(int(sys.argv[1])))
