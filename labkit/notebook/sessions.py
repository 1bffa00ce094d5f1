"""Two (or more) live sessions side by side, for the transactions and locking lessons.

Each statement runs in a named session; one that blocks on a lock is detected by asking
PostgreSQL (``pg_blocking_pids``), never by sleeping, so notebooks replay the same way every
run. The timeline shows what each session did, step by step::

    s = labkit.sessions.Sessions(shop.info, "shop")
    s.a("BEGIN"); s.a("UPDATE inventory SET quantity = quantity - 1 WHERE product_id = …")
    s.b("UPDATE inventory SET quantity = quantity - 1 WHERE product_id = …")   # waits for A
    s.a("COMMIT")                                                              # B finishes now
    s.timeline()

A session whose connection the server closed (a reset, a restart, ``pg_terminate_backend``) shows
the error in the timeline and raises :class:`SessionLost` to the caller.
"""

from __future__ import annotations

import html
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from labkit.errors import LabkitError
from labkit.notebook.failures import is_connection_lost
from labkit.servers.base import ConnectionInfo

WAIT_LIMIT_S = 30.0
POLL_S = 0.01
TEXT_WIDTH = 56  # characters per session column in the plain-text timeline (longer SQL wraps)
COLOURS = ("#dbeafe", "#fde2c4", "#dcfce7", "#f3e8ff")  # one tint per session: blue, orange, green, violet


class SessionLost(LabkitError):
    """A session's connection was closed by the server."""


@dataclass
class Step:
    """One line of the timeline."""

    session: str
    sql: str
    outcome: str  # "ok", "waiting", "error", "resumed"
    result: Any = None
    error: str | None = None

    def describe(self) -> str:
        if self.outcome == "waiting":
            return f"waits: blocked by {self.result}"
        if self.outcome == "error":
            return "ERROR: " + (self.error or "").partition(": ")[2]
        prefix = "resumes: " if self.outcome == "resumed" else ""
        return prefix + _short(self.result)


def _short(result: Any) -> str:
    if result is None:
        return "ok"
    if isinstance(result, list):
        if len(result) == 1 and len(result[0]) == 1:
            value = result[0][0]
            return "ok" if value is None or value == "" else value if isinstance(value, str) else repr(value)
        return f"{len(result)} row(s): " + ", ".join(str(tuple(r)) for r in result[:3]) + (" …" if len(result) > 3 else "")
    return str(result)


@dataclass
class Session:
    """A named connection in autocommit mode: write BEGIN/COMMIT yourself, as in psql."""

    name: str
    conn: psycopg.Connection
    owner: Sessions
    pending: threading.Thread | None = field(default=None, repr=False)
    lost: str | None = field(default=None, repr=False)  # why the server closed this session's connection
    _outcome: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.conn.info.backend_pid

    def __call__(self, sql: str) -> Any:
        """Run ``sql``; if it blocks on a lock, record that and return while it waits.

        An SQL error is recorded in the timeline (and None returned); a closed connection also raises SessionLost."""
        if self.pending is not None:
            self._resume()  # as in psql, the previous statement ends before the next is sent
        if self.lost is not None:
            refused = f"SessionLost: not sent, the connection was closed earlier ({self.lost})"
            self.owner._record(Step(self.name, sql, "error", error=refused))
            self._raise_lost()
        self._outcome = {}
        thread = threading.Thread(target=self._execute, args=(sql,), daemon=True)
        thread.start()
        blockers = self.owner._wait_done_or_blocked(self, thread)
        if blockers:
            self.pending = thread
            self._pending_sql = sql
            self.owner._record(Step(self.name, sql, "waiting", result=", ".join(self.owner._names(blockers))))
            return None
        rows = self._finish(sql, "ok")
        if self.lost is None:
            self.owner._settle_others(self)
        self._raise_lost()
        return rows

    def _raise_lost(self) -> None:
        if self.lost is not None:
            raise SessionLost(
                f"Session {self.name.upper()}'s connection was closed by the server ({self.lost}): "
                "its open transaction, if any, was rolled back.",
                "Start new sessions with shop.sessions().",
            )

    def _execute(self, sql: str) -> None:
        try:
            cur = self.conn.execute(sql)  # type: ignore[arg-type]
            self._outcome["rows"] = cur.fetchall() if cur.description else None
            self._outcome["rowcount"] = cur.rowcount if cur.description is None else -1
        except psycopg.Error as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            self._outcome["error"] = f"{type(exc).__name__}: {first_line}"
            if is_connection_lost(exc) or self.conn.closed or self.conn.broken:
                self.lost = first_line

    def _finish(self, sql: str, outcome: str) -> Any:
        if "error" in self._outcome:
            self.owner._record(Step(self.name, sql, "error", error=self._outcome["error"]))
            return None
        rows = self._outcome.get("rows")
        count = self._outcome.get("rowcount", -1)
        result: Any = rows if rows is not None else (f"{count} row{'s' if count != 1 else ''}" if count >= 0 else None)
        self.owner._record(Step(self.name, sql, outcome, result=result))
        return rows

    def wait(self) -> Any:
        """Wait until this session's blocked statement finishes (or fails), and record it."""
        if self.pending is not None:
            self._resume()
            self.owner._settle_others(self)
        self._raise_lost()
        return self._outcome.get("rows")

    def _resume(self) -> None:
        assert self.pending is not None
        self.pending.join(WAIT_LIMIT_S)
        if self.pending.is_alive():
            raise TimeoutError(f"session {self.name} is still blocked after {WAIT_LIMIT_S} s")
        self.pending = None
        self._finish(self._pending_sql, "resumed")


class Sessions:
    """A set of named sessions (default ``a`` and ``b``) and their shared timeline."""

    def __init__(self, info: ConnectionInfo, dbname: str, names: tuple[str, ...] = ("a", "b")) -> None:
        self.info = info
        self.steps: list[Step] = []
        self.sessions = {name: Session(name, info.connect(dbname, autocommit=True), self) for name in names}
        self._monitor = info.connect(dbname, autocommit=True)
        for session in self.sessions.values():
            session.conn.execute("SELECT set_config('application_name', %s, false)", [f"session {session.name}"])

    def __getattr__(self, name: str) -> Session:
        sessions = self.__dict__.get("sessions", {})
        if name in sessions:
            return sessions[name]
        raise AttributeError(name)

    def _names(self, pids: list[int]) -> list[str]:
        by_pid = {s.pid: s.name.upper() for s in self.sessions.values()}
        return [by_pid.get(pid, f"pid {pid}") for pid in pids]

    def _wait_done_or_blocked(self, session: Session, thread: threading.Thread) -> list[int]:
        """Return [] once the statement finished, or the blocking pids once it waits on a lock."""
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline:
            thread.join(POLL_S)
            if not thread.is_alive():
                return []
            row = self._monitor.execute("SELECT pg_blocking_pids(%s)", [session.pid]).fetchone()
            if row and row[0]:
                return list(row[0])
        raise TimeoutError(f"session {session.name}: statement neither finished nor blocked within {WAIT_LIMIT_S} s")

    def _settle_others(self, current: Session) -> None:
        """After a step, record every waiting session that the step set free."""
        for other in self.sessions.values():
            if other is not current and other.pending is not None and not self._still_blocked(other):
                other._resume()
                self._settle_others(other)

    def _still_blocked(self, session: Session) -> bool:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline:
            if session.pending is None or not session.pending.is_alive():
                return False
            row = self._monitor.execute("SELECT pg_blocking_pids(%s)", [session.pid]).fetchone()
            if row and row[0]:
                return True
            session.pending.join(POLL_S)
        return True

    def _record(self, step: Step) -> None:
        self.steps.append(step)

    def settle(self) -> None:
        """Wait for every waiting session whose blocker has gone (call after the last step)."""
        for session in self.sessions.values():
            if session.pending is not None and not self._still_blocked(session):
                session._resume()

    def timeline(self) -> Timeline:
        """The steps so far, in order, a column per session: what each ran and what happened."""
        self.settle()
        return Timeline([name for name in self.sessions], list(self.steps))

    def close(self) -> None:
        for session in self.sessions.values():
            session.conn.close()
        self._monitor.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Timeline:
    """Steps side by side: one column per session, SQL left-aligned and wrapped, never cut off."""

    names: list[str]
    steps: list[Step]

    def _cells(self, step: Step) -> tuple[str, str]:
        return ("" if step.outcome == "resumed" else " ".join(step.sql.split())), step.describe()

    def frame(self) -> Any:
        """The same steps as a pandas DataFrame (columns session, statement, result; index step)."""
        import pandas as pd

        rows = [{"step": n, "session": step.session.upper(), "statement": self._cells(step)[0], "result": step.describe()}
                for n, step in enumerate(self.steps, start=1)]  # fmt: skip
        return pd.DataFrame(rows, columns=["step", "session", "statement", "result"]).set_index("step")

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        width = TEXT_WIDTH
        header = " # | " + " | ".join(f"session {name.upper()}".ljust(width) for name in self.names)
        lines = [header.rstrip(), "---+-" + "-+-".join("-" * width for _ in self.names)]
        for number, step in enumerate(self.steps, start=1):
            statement, result = self._cells(step)
            column = textwrap.wrap(statement, width, break_on_hyphens=False) + textwrap.wrap("→ " + result, width, subsequent_indent="  ")
            for index, text in enumerate(column):
                cells = [text.ljust(width) if name == step.session else " " * width for name in self.names]
                lines.append(((f"{number:>2}" if index == 0 else "  ") + " | " + " | ".join(cells)).rstrip())
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(self.names)}
        cell = "text-align:left;vertical-align:top;padding:4px 8px;"
        head = "".join(f"<th style='{cell}background:{colour[n]};min-width:18em'>session {html.escape(n.upper())}</th>" for n in self.names)
        body = []
        for number, step in enumerate(self.steps, start=1):
            statement, result = self._cells(step)
            tone = "color:#b91c1c;font-weight:bold" if step.outcome == "error" else "color:#555" if step.outcome == "waiting" else ""
            content = f"<code style='white-space:pre-wrap;word-break:break-word'>{html.escape(statement)}</code><br>" if statement else ""
            content += f"<span style='{tone}'>→ {html.escape(result)}</span>"
            cells = "".join(
                f"<td style='{cell}background:{colour[n]}'>{content}</td>" if n == step.session else f"<td style='{cell}'></td>"
                for n in self.names
            )
            body.append(f"<tr><td style='{cell}color:#777'>{number}</td>{cells}</tr>")
        return (f"<table class='labkit-timeline' style='border-collapse:collapse'><thead><tr><th style='{cell}'>#</th>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")  # fmt: skip
