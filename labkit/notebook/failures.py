"""What a failing cell shows: PostgreSQL's error as psql prints it, or one sentence when the server is gone.

``install(shell, info)`` registers a display for database errors (psycopg, SQLAlchemy) and labkit's
own errors in IPython. The cell still fails, so nbval and nbclient see the error; only the long
Python traceback is left out. The error's value is the same text, so ``expect_error`` matches it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo

MAX_LINES = 15
PROBE_TIMEOUT_S = 3
_WATCHED: dict[str, ConnectionInfo] = {}

SERVER_DOWN = "PostgreSQL is not running (it was stopped, killed or is restarting): run `labkit up` in a terminal, then this cell again."
SERVER_STARTING = "PostgreSQL is starting up or shutting down: wait a few seconds and run this cell again (`labkit up` if it stays down)."
CONNECTION_CLOSED = (
    "The connection to PostgreSQL was closed while this cell ran (the database was reset, the server restarted "
    "or the session was terminated): run the cell again, it reconnects."
)


class SQLError(Exception):
    """A statement failed: the message is PostgreSQL's, laid out as psql prints it."""

    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.sqlstate = sqlstate

    def _render_traceback_(self) -> list[str]:
        return self.text.splitlines()


class ConnectionLost(LabkitError):
    """The server went away, or closed this notebook's connection."""

    def _render_traceback_(self) -> list[str]:
        return str(self).splitlines()


def psql_text(exc: psycopg.Error) -> str:
    """``ERROR:  …``, ``LINE n:`` with the caret, ``DETAIL``, ``HINT``, ``QUERY``, ``CONTEXT``: libpq's own layout."""
    result = exc.pgresult
    text = result.error_message.decode("utf-8", "replace").rstrip() if result is not None and result.error_message else ""
    if not text:
        severity = exc.diag.severity or "ERROR"
        text = f"{severity}:  {exc}".rstrip()
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        lines = [*lines[: MAX_LINES - 1], f"… ({len(lines) - MAX_LINES + 1} more lines of context)"]
    return "\n".join(lines)


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def is_connection_lost(exc: BaseException) -> bool:
    """True when the error says the connection (or the server) is gone, not that a statement was wrong."""
    if isinstance(exc, sa.exc.PendingRollbackError):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    original = _driver_error(exc)
    if not isinstance(original, psycopg.OperationalError):
        return False
    state = original.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def watch(info: ConnectionInfo) -> None:
    """Remember the lab's server, to tell "not running" from "connection closed"."""
    _WATCHED["info"] = info


def server_state() -> str:
    """``up``, ``starting`` (starting up or shutting down), ``down`` or ``unknown`` (no lab in this kernel)."""
    info = _WATCHED.get("info")
    if info is None:
        return "unknown"
    try:
        with info.connect(info.maintenance_db, connect_timeout=PROBE_TIMEOUT_S):
            return "up"
    except psycopg.OperationalError as exc:
        text = str(exc)
        return "starting" if "starting up" in text or "shutting down" in text or "recovery" in text else "down"


def readable(exc: BaseException) -> BaseException:
    """The exception a learner should see in place of ``exc``."""
    if isinstance(exc, LabkitError) and exc.__cause__ is not None and is_connection_lost(exc.__cause__):
        exc = exc.__cause__  # a shop operation that met a server gone away: the same one sentence as a cell
    elif isinstance(exc, SQLError | LabkitError):
        return exc
    if is_connection_lost(exc):
        state = server_state()
        sentence = {"down": SERVER_DOWN, "starting": SERVER_STARTING}.get(state, CONNECTION_CLOSED)
        return ConnectionLost(sentence)
    original = _driver_error(exc)
    if isinstance(original, psycopg.Error):
        return SQLError(psql_text(original), original.sqlstate)
    return exc


def render(exc: BaseException) -> list[str]:
    """The lines shown for ``exc``: no Python traceback."""
    method = getattr(exc, "_render_traceback_", None)
    return method() if method is not None else str(exc).splitlines()


def _show(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    shown = readable(value)
    lines = render(shown)
    # An SQL error keeps its class name (ProgrammingError, IntegrityError, …); its value is the psql text.
    shell._showtraceback(etype if isinstance(shown, SQLError) else type(shown), shown, lines)
    return lines


HANDLED = (psycopg.Error, sa.exc.DBAPIError, sa.exc.PendingRollbackError, LabkitError, SQLError)


def install(shell: Any) -> None:
    """Show database and labkit errors in ``shell`` without the traceback (idempotent)."""
    shell.set_custom_exc(HANDLED, _show)
