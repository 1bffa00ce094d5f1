"""psql meta-commands (``\\d orders``, ``\\dt``, ``\\di``) in ``%sql`` cells.

JupySQL hands them to pgspecial but keeps only the first result and drops psql's footer
(indexes, constraints, triggers, "Referenced by"); with a list result its paging is broken,
so ``\\d orders`` fails with "'generator' object is not subscriptable". This handler keeps the
table and prints the footer, as psql does.
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


def install() -> None:
    """Route JupySQL's meta-commands through :func:`handle_postgres_special`."""
    import sql.run.run as jupysql_run

    jupysql_run.handle_postgres_special = handle_postgres_special  # type: ignore[assignment]
