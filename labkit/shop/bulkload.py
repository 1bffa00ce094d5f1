"""Bulk loading: COPY generated tables on parallel connections while the next is generated, then VACUUM.

Each table goes in its own transaction: ``TRUNCATE`` then ``COPY … (FREEZE)``, so its rows are
written frozen and all-visible (as ``pgbench -i`` does) and the VACUUM after the load has little
left to do. Partitioned tables cannot take FREEZE and get a plain COPY. Tables must not be
referenced by foreign keys yet (the shop adds its keys after the data).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from labkit.config import SQL_DIR
from labkit.servers.base import ConnectionInfo
from labkit.shop.generator import generate
from labkit.shop.generator.generate import TableData

COPY_CHUNK = 1 << 20
SHOP_TABLES_SQL = SQL_DIR / "queries" / "shop_tables.sql"
WORKERS = 2


@dataclass
class LoadResult:
    """What went in: rows per table and the data checksum (as ``generate.checksum`` computes it)."""

    rows: dict[str, int] = field(default_factory=dict)
    checksum: str = ""

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copy_table(conn: psycopg.Connection, table: TableData, pieces: Iterable[bytes], *, freeze: bool) -> None:
    """Replace ``table``'s rows with the COPY text ``pieces`` in one transaction."""
    target = sql.Identifier("public", table.table)
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    options = sql.SQL(" (FREEZE)") if freeze else sql.SQL("")
    with conn.transaction():
        if freeze:
            conn.execute(sql.SQL("TRUNCATE {}").format(target))
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, columns, options)) as copy:
            for piece in pieces:
                for offset in range(0, len(piece), COPY_CHUNK):
                    copy.write(piece[offset : offset + COPY_CHUNK])


@dataclass
class Crew:
    """Threads working on their own connections: what they raised, and the flag that stops them.

    Everything a worker reads exists before the first thread starts: a worker only gets its
    connection and this crew, never a name its caller binds later."""

    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()


@contextlib.contextmanager
def _on_connections(
    info: ConnectionInfo,
    dbname: str,
    workers: int,
    work: Callable[[psycopg.Connection, Crew], None],
    on_failure: Callable[[], None] = lambda: None,
) -> Iterator[Crew]:
    """Run ``work(conn, crew)`` in ``workers`` threads, each with its own connection to ``dbname``,
    while the block runs; leaving the block waits for them. Yields the crew: its ``errors`` (the
    block may add its own with ``fail``) and its ``stop`` flag, set on the first failure; a thread
    that fails, connecting or working, also calls ``on_failure``."""
    crew = Crew()

    def run() -> None:
        try:
            with info.connect(dbname, options="-c search_path=public") as conn:
                work(conn, crew)
        except BaseException as exc:  # handed to the caller
            crew.fail(exc)
            on_failure()

    threads = [threading.Thread(target=run, name=f"labkit-{dbname}-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield crew
    finally:
        for thread in threads:
            thread.join()


def _partitioned(info: ConnectionInfo, dbname: str) -> set[str]:
    with info.connect(dbname, options="-c search_path=public") as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'p' AND relnamespace = 'public'::pg_catalog.regnamespace"
        )
        return {r[0] for r in rows}


def load_tables(
    info: ConnectionInfo,
    dbname: str,
    tables: Iterable[TableData],
    *,
    on_rows: Callable[[int], None] = lambda n: None,
    workers: int = WORKERS,
) -> LoadResult:
    """COPY every table of ``tables`` into ``dbname``; generation overlaps with the COPYs.

    ``on_rows`` is called (from a worker thread) with each table's row count once it is in.
    The first error, in the generator or in any COPY, stops the load and is raised here.
    """
    partitioned = _partitioned(info, dbname)
    todo: queue.Queue[tuple[TableData, int, list[bytes]] | None] = queue.Queue(maxsize=workers)
    reporting = threading.Lock()  # on_rows (a progress bar) need not be thread-safe

    def copy_each(conn: psycopg.Connection, crew: Crew) -> None:
        conn.execute("SET synchronous_commit = off")
        while (item := todo.get()) is not None:
            if not crew.stop.is_set():
                table, rows, pieces = item
                copy_table(conn, table, pieces, freeze=table.table not in partitioned)
                with reporting:
                    on_rows(rows)

    def drain() -> None:
        while todo.get() is not None:  # so the producer never blocks on a dead worker
            pass

    result = LoadResult()
    digest = hashlib.sha256()
    with _on_connections(info, dbname, workers, copy_each, on_failure=drain) as crew:
        try:
            for table in tables:
                if crew.stop.is_set():
                    break
                pieces = list(table.chunks())
                generate.digest_table(digest, table, pieces)
                result.rows[table.table] = len(table.lines)
                # only the COPY text travels on: the row strings are freed while it loads
                todo.put((TableData(table.table, table.columns, []), len(table.lines), pieces))
                del table
        except BaseException as exc:
            crew.fail(exc)
        finally:
            for _ in range(workers):
                todo.put(None)
    if crew.errors:
        raise crew.errors[0]
    result.checksum = digest.hexdigest()
    return result


def shop_tables(info: ConnectionInfo, dbname: str) -> list[str]:
    """The tables of ``dbname``'s public schema (partitioned ones once), biggest first."""
    with info.connect(dbname, options="-c search_path=public") as conn:
        return [r[0] for r in conn.execute(SHOP_TABLES_SQL.read_text())]  # type: ignore[arg-type]


def vacuum_analyze(info: ConnectionInfo, dbname: str, *, workers: int = WORKERS) -> None:
    """``VACUUM (FREEZE, ANALYZE)`` every table of ``dbname``, biggest first, on parallel connections.

    Fresh sessions on purpose: pages the loading session left not all-visible would change
    index-only-scan costs, and so plans, from one load to the next.
    """
    todo: queue.Queue[str] = queue.Queue()
    for name in shop_tables(info, dbname):
        todo.put(name)

    def vacuum_each(conn: psycopg.Connection, crew: Crew) -> None:
        while not crew.stop.is_set():  # one failure stops the others too
            try:
                name = todo.get_nowait()
            except queue.Empty:
                return
            conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier("public", name)))

    with _on_connections(info, dbname, workers, vacuum_each) as crew:
        pass
    if crew.errors:
        raise crew.errors[0]
