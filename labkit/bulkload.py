"""Bulk loading: COPY generated tables on parallel connections while the next is generated, then VACUUM.

Each table goes in its own transaction: ``TRUNCATE`` then ``COPY … (FREEZE)``, so its rows are
written frozen and all-visible (as ``pgbench -i`` does) and the VACUUM after the load has little
left to do. Partitioned tables cannot take FREEZE and get a plain COPY. Tables must not be
referenced by foreign keys yet (the shop adds its keys after the data).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from labkit.data.generate import TableData
from labkit.servers.base import ConnectionInfo

COPY_CHUNK = 1 << 20
SHOP_TABLES_SQL = Path(__file__).resolve().parent.parent / "sql" / "queries" / "shop_tables.sql"
WORKERS = 2


@dataclass
class LoadResult:
    """What went in: rows per table and the data checksum (as ``generate.checksum`` computes it)."""

    rows: dict[str, int] = field(default_factory=dict)
    checksum: str = ""

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copy_table(conn: psycopg.Connection, table: TableData, payload: bytes | list[bytes], *, freeze: bool) -> None:
    """Replace ``table``'s rows with ``payload`` (COPY text format, maybe in pieces) in one transaction."""
    target = sql.Identifier(table.table)
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    options = sql.SQL(" (FREEZE)") if freeze else sql.SQL("")
    with conn.transaction():
        if freeze:
            conn.execute(sql.SQL("TRUNCATE {}").format(target))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, columns, options)) as copy:
            for piece in [payload] if isinstance(payload, bytes) else payload:
                for offset in range(0, len(piece), COPY_CHUNK):
                    copy.write(piece[offset : offset + COPY_CHUNK])


def _partitioned(info: ConnectionInfo, dbname: str) -> set[str]:
    with info.connect(dbname) as conn:
        return {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relkind = 'p' AND relnamespace = 'public'::regnamespace")}


def load_tables(
    info: ConnectionInfo,
    dbname: str,
    tables: Iterable[TableData],
    *,
    on_rows: Callable[[int], None] = lambda n: None,
    workers: int = WORKERS,
    setup: Iterable[str] = ("SET synchronous_commit = off",),
) -> LoadResult:
    """COPY every table of ``tables`` into ``dbname``; generation overlaps with the COPYs.

    ``on_rows`` is called (from a worker thread) with each table's row count once it is in.
    The first error, in the generator or in any COPY, stops the load and is raised here.
    """
    partitioned = _partitioned(info, dbname)
    work: queue.Queue[tuple[TableData, int, list[bytes]] | None] = queue.Queue(maxsize=workers)
    errors: list[BaseException] = []
    failed = threading.Event()
    reporting = threading.Lock()  # on_rows (a progress bar) need not be thread-safe

    def worker() -> None:
        try:
            with info.connect(dbname, autocommit=True) as conn:
                for statement in setup:
                    conn.execute(statement)  # type: ignore[arg-type]
                while (item := work.get()) is not None:
                    if not failed.is_set():
                        table, rows, payload = item
                        copy_table(conn, table, payload, freeze=table.table not in partitioned)
                        with reporting:
                            on_rows(rows)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)
            failed.set()
            while work.get() is not None:  # drain so the producer never blocks on a dead worker
                pass

    threads = [threading.Thread(target=worker, name=f"labkit-copy-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    result = LoadResult()
    digest = hashlib.sha256()
    try:
        for table in tables:
            if failed.is_set():
                break
            payload = list(table.chunks())
            digest.update(table.table.encode() + b"\0" + ",".join(table.columns).encode() + b"\0")
            for piece in payload:
                digest.update(piece)
            result.rows[table.table] = len(table.lines)
            # only the COPY text travels on: the row strings are freed while it loads
            work.put((TableData(table.table, table.columns, []), len(table.lines), payload))
            del table
    except BaseException as exc:
        errors.append(exc)
        failed.set()
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    result.checksum = digest.hexdigest()
    return result


def shop_tables(info: ConnectionInfo, dbname: str) -> list[str]:
    """The tables of ``dbname``'s public schema (partitioned ones once), biggest first."""
    with info.connect(dbname) as conn:
        return [r[0] for r in conn.execute(SHOP_TABLES_SQL.read_text())]  # type: ignore[arg-type]


def vacuum_analyze(info: ConnectionInfo, dbname: str, *, workers: int = WORKERS) -> None:
    """``VACUUM (FREEZE, ANALYZE)`` every table of ``dbname``, biggest first, on parallel connections.

    Fresh sessions on purpose: pages the loading session left not all-visible would change
    index-only-scan costs, and so plans, from one load to the next.
    """
    names = shop_tables(info, dbname)
    todo: queue.Queue[str] = queue.Queue()
    for name in names:
        todo.put(name)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with info.connect(dbname) as conn:
                while not errors:
                    try:
                        name = todo.get_nowait()
                    except queue.Empty:
                        return
                    conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(name)))
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"labkit-vacuum-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
