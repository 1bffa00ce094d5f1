"""Two fixes to JupySQL 0.11 that learners would otherwise trip over.

1. psql meta-commands (``\\d orders``, ``\\dt``, ``\\di``): JupySQL hands them to pgspecial but
   keeps only the first result and drops psql's footer (indexes, constraints, triggers,
   "Referenced by"); with a list result its paging breaks, so ``\\d orders`` fails with
   "'generator' object is not subscriptable". Our handler keeps the table and prints the footer.
2. With named parameters disabled (so ':' in JSON literals works), JupySQL prefixes *every* SQL
   error with a note about that feature, burying PostgreSQL's own message. We drop the note.
3. In that mode JupySQL sends the text through the driver with an empty parameter list, so
   psycopg reads every ``%`` as a placeholder: ``LIKE 'Sports%'`` fails with "only '%s', '%b',
   '%t' are allowed as placeholders". We escape ``%`` (the driver turns ``%%`` back into ``%``).
"""

from __future__ import annotations

from typing import Any


class MetaCommandResult:
    """The small part of SQLAlchemy's result interface JupySQL uses."""

    returns_rows = True

    def __init__(self, rows: list[Any], headers: list[str]) -> None:
        self._rows = [tuple(r) for r in rows]
        self._headers = headers
        self._position = 0
        self.rowcount = len(self._rows)

    def keys(self) -> list[str]:
        return self._headers

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self._rows[self._position :]
        self._position = len(self._rows)
        return rest

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        chunk = self._rows[self._position : self._position + size]
        self._position += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def handle_postgres_special(conn: Any, statement: str) -> MetaCommandResult:
    from pgspecial.main import PGSpecial

    cursor = conn.connection_sqlalchemy.connection.cursor()
    rows: list[Any] = []
    headers: list[str] = []
    notes: list[str] = []
    for title, cur, cur_headers, status in PGSpecial().execute(cursor, statement):
        if title:
            notes.append(str(title))
        if cur_headers and not headers:
            headers = list(cur_headers)
            rows = list(cur) if cur is not None else []
        if status:
            notes.append(str(status).rstrip())
    if notes:
        print("\n".join(notes))
    return MetaCommandResult(rows, headers)


_NOTE = 'named parameters feature is "disabled"'


def _without_parameter_note(raw_execute: Any) -> Any:
    from sqlalchemy.exc import StatementError

    def wrapper(self: Any, query: Any, parameters: Any = None, with_: Any = None) -> Any:
        try:
            return raw_execute(self, query, parameters=parameters, with_=with_)
        except StatementError as exc:
            exc.detail = [d for d in exc.detail if _NOTE not in d]
            raise

    wrapper.__labkit_patched__ = True  # type: ignore[attr-defined]
    return wrapper


def _execute_literally(self: Any, query: str, parameters: Any) -> Any:
    if parameters == {}:
        return self._connection.exec_driver_sql(query.replace("%", "%%"))
    return _ORIGINAL_EXECUTE["f"](self, query, parameters)


_ORIGINAL_EXECUTE: dict[str, Any] = {}


def install() -> None:
    """Apply the fixes (idempotent)."""
    import sql.run.run as jupysql_run
    from sql.connection.connection import SQLAlchemyConnection

    jupysql_run.handle_postgres_special = handle_postgres_special  # type: ignore[assignment]
    if not getattr(SQLAlchemyConnection.raw_execute, "__labkit_patched__", False):
        SQLAlchemyConnection.raw_execute = _without_parameter_note(SQLAlchemyConnection.raw_execute)  # type: ignore[method-assign]
    if "f" not in _ORIGINAL_EXECUTE:
        _ORIGINAL_EXECUTE["f"] = SQLAlchemyConnection._execute_with_parameters
        SQLAlchemyConnection._execute_with_parameters = _execute_literally  # type: ignore[method-assign]
