"""Bulk loading on real PostgreSQL 16: parallel COPY, frozen rows, errors from either side."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from labkit.servers.base import ConnectionInfo
from labkit.shop import bulkload, schema
from labkit.shop.generator import generate

SMALL = 0.05


@pytest.fixture
def scratch(server: ConnectionInfo) -> Iterator[str]:
    """An empty database with the shop's tables (no keys or indexes from the finish stage)."""
    name = "t_bulkload"
    with server.connect() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
    with server.connect(name) as conn:
        schema.apply_schema(conn)
    yield name
    with server.connect() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_every_row_arrives_frozen_with_the_generator_checksum(server: ConnectionInfo, scratch: str) -> None:
    tables = generate.generate(scale=SMALL)
    seen: list[int] = []
    result = bulkload.load_tables(server, scratch, iter(tables), on_rows=seen.append)
    assert result.checksum == generate.checksum(tables)
    assert sorted(seen) == sorted(len(t.lines) for t in tables)
    with server.connect(scratch) as conn:
        for table in tables:
            assert conn.execute(f"SELECT count(*) FROM {table.table}").fetchone() == (len(table.lines),), table.table
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        # COPY FREEZE: a plain table's pages are all-frozen before any VACUUM ran (all but the few
        # a COPY batch started on a page the previous batch had begun; VACUUM finishes those)
        pages, frozen = conn.execute(
            "SELECT pg_relation_size('logs') / current_setting('block_size')::int, all_frozen FROM pg_visibility_map_summary('logs')"
        ).fetchone()  # type: ignore[misc]
        assert pages > 0
        assert frozen > pages * 0.9
        # a partitioned table cannot take FREEZE: its rows are loaded all the same, not frozen
        assert conn.execute(
            "SELECT sum((pg_visibility_map_summary(inhrelid)).all_frozen) FROM pg_inherits WHERE inhparent = 'audit_log'::regclass"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) > 0 FROM audit_log").fetchone() == (True,)


def test_loading_twice_replaces_the_rows(server: ConnectionInfo, scratch: str) -> None:
    users = next(t for t in generate.generate(scale=SMALL) if t.table == "users")
    for _ in range(2):
        bulkload.load_tables(server, scratch, iter([users]))
    with server.connect(scratch) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (len(users.lines),)


def test_a_failing_copy_is_raised_and_stops_the_load(server: ConnectionInfo, scratch: str) -> None:
    good = generate.TableData("categories", ("id", "parent_id", "name", "slug"), ["1\t\\N\tBooks\tbooks"])
    bad = generate.TableData("events", ("name", "kind", "start_time", "end_time"), ["x\tsale\tnot a time\t2025-01-01"])
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat, match="not a time"):
        bulkload.load_tables(server, scratch, iter([good, bad] + [good] * 20))
    with server.connect(scratch) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_a_failing_generator_is_raised_and_no_worker_hangs(server: ConnectionInfo, scratch: str) -> None:
    def tables() -> Iterator[generate.TableData]:
        yield generate.TableData("categories", ("id", "parent_id", "name", "slug"), ["1\t\\N\tBooks\tbooks"])
        raise ValueError("generator broke")

    with pytest.raises(ValueError, match="generator broke"):
        bulkload.load_tables(server, scratch, tables())


def test_vacuum_analyze_leaves_statistics_for_every_table(server: ConnectionInfo, scratch: str) -> None:
    bulkload.load_tables(server, scratch, iter(generate.generate(scale=SMALL)))
    bulkload.vacuum_analyze(server, scratch)
    with server.connect(scratch) as conn:
        missing = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
            "AND relname <> 'labkit_meta' AND reltuples < 0 ORDER BY 1"
        ).fetchall()
        assert missing == []
        assert conn.execute("SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'orders'").fetchone() == (True,)
