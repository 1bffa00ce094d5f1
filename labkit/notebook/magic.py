"""Fixes to JupySQL 0.11 that make ``%sql`` behave like psql (kept to the few functions we replace).

1. Statements run as written: ``%sql BEGIN`` works (JupySQL refuses a statement that is just
   "begin"); psql meta-commands (``\\d orders``, ``\\dt``) print as psql does, title, table, then
   footers (:mod:`labkit.notebook.describe`).
2. A failing statement raises its own error; JupySQL's notes about snippets and named parameters
   are dropped, and :mod:`labkit.notebook.failures` shows it as psql does.
3. A connection the server closed (a reset, a restart, a terminated session) is replaced before
   the next statement is sent, never after: a statement is never sent twice. If a transaction was
   open on it, the cell fails with a sentence saying it was rolled back.
4. With named parameters disabled (so ':' in JSON literals works), JupySQL sends the text with an
   empty parameter list, so psycopg would read every ``%`` as a placeholder. We escape ``%``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

from labkit.notebook.failures import ConnectionLost

TRANSACTION_LOST = (
    "The connection to PostgreSQL was closed (the database was reset, the server restarted or the session was "
    "terminated) while a transaction was open: PostgreSQL rolled it back. Nothing in this cell ran; "
    "you are connected again, start over from BEGIN."
)


def run_statements(conn: Any, sql: str, config: Any, parameters: Any = None) -> Any:
    """Run each statement of a cell in turn; the last one's result is the cell's result."""
    import sqlparse
    from IPython.display import display
    from sql.run.resultset import ResultSet
    from sql.run.run import select_df_type

    from labkit.notebook.describe import meta_command

    if not sql.strip():
        return f"Connected: {conn.name}"
    statements = [s for s in (sqlparse.format(part, strip_comments=True) for part in sqlparse.split(sql)) if s.strip()]
    result: Any = None
    for position, statement in enumerate(statements):
        if statement.lstrip().startswith("\\"):
            _ensure_live(conn)
            output = meta_command(conn.connection_sqlalchemy.connection.dbapi_connection, statement.strip())
            if position == len(statements) - 1:
                return output
            display(output)
            continue
        result = conn.raw_execute(statement, parameters=parameters)
    return select_df_type(ResultSet(result, config, statements[-1], conn), config)


def _reraise(error: BaseException, query: Any = None, short_error: bool = True) -> None:
    raise error


def _liveness(sa_conn: Any) -> str:
    """``alive``, ``dead`` or ``dead-in-transaction``: a side-effect-free ping, before anything is sent."""
    if sa_conn.closed or sa_conn.invalidated:
        return "dead"
    raw = sa_conn.connection.dbapi_connection
    if raw is None or raw.closed:
        return "dead"
    status = raw.pgconn.transaction_status
    in_transaction = status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
    try:
        if status == pq.TransactionStatus.INERROR:
            raw.pgconn.consume_input()  # a failed transaction accepts no query: look at the socket only
            if raw.pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("connection closed")
        else:
            raw.execute("SELECT 1")
    except psycopg.OperationalError:
        return "dead-in-transaction" if in_transaction else "dead"
    return "alive"


def _ensure_live(conn: Any) -> None:
    """Replace a connection the server closed; say so if it held an open transaction."""
    sa_conn = conn._connection_sqlalchemy
    state = _liveness(sa_conn)
    if state == "alive":
        return
    for step in (sa_conn.invalidate, sa_conn.close):
        try:
            step()
        except Exception:  # the old connection is gone; nothing to clean up on the server
            pass
    conn._connection_sqlalchemy = sa_conn.engine.connect()
    if state == "dead-in-transaction":
        raise ConnectionLost(TRANSACTION_LOST)


def _execute_on_live_connection(self: Any, operation: Any) -> Any:
    """JupySQL retries a statement after some connection errors; we check the connection first and never retry."""
    _ensure_live(self)
    return operation()


def _execute_literally(self: Any, query: str, parameters: Any) -> Any:
    if parameters == {}:
        return self._connection.exec_driver_sql(query.replace("%", "%%"))
    return _ORIGINAL_EXECUTE["f"](self, query, parameters)


_ORIGINAL_EXECUTE: dict[str, Any] = {}


def install() -> None:
    """Apply the fixes (idempotent)."""
    import sql.magic as jupysql_magic
    from sql.connection.connection import SQLAlchemyConnection

    jupysql_magic.run_statements = run_statements  # type: ignore[assignment]
    jupysql_magic.handle_exception = _reraise  # type: ignore[assignment]
    SQLAlchemyConnection._execute_with_error_handling = _execute_on_live_connection  # type: ignore[method-assign]
    if "f" not in _ORIGINAL_EXECUTE:
        _ORIGINAL_EXECUTE["f"] = SQLAlchemyConnection._execute_with_parameters
        SQLAlchemyConnection._execute_with_parameters = _execute_literally  # type: ignore[method-assign]
