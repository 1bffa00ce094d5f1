"""Bulk loading on real PostgreSQL 16: parallel COPY, frozen rows, errors from either side."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from labkit.servers.base import ConnectionInfo
from labkit.shop import bulkload
from labkit.shop.generator import generate

SMALL = 0.05


def test_every_row_arrives_frozen_with_the_generator_checksum(server: ConnectionInfo, shop_tables_db: str) -> None:
    tables = generate.generate(scale=SMALL)
    seen: list[int] = []
    result = bulkload.load_tables(server, shop_tables_db, iter(tables), on_rows=seen.append)
    assert result.checksum == generate.checksum(tables)
    assert sorted(seen) == sorted(len(t.lines) for t in tables)
    with server.connect(shop_tables_db) as conn:
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


def test_loading_twice_replaces_the_rows(server: ConnectionInfo, shop_tables_db: str) -> None:
    users = next(t for t in generate.generate(scale=SMALL) if t.table == "users")
    for _ in range(2):
        bulkload.load_tables(server, shop_tables_db, iter([users]))
    with server.connect(shop_tables_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (len(users.lines),)


def test_a_failing_copy_is_raised_and_stops_the_load(server: ConnectionInfo, shop_tables_db: str) -> None:
    good = generate.TableData("categories", ("id", "parent_id", "name", "slug"), ["1\t\\N\tBooks\tbooks"])
    bad = generate.TableData("events", ("name", "kind", "start_time", "end_time"), ["x\tsale\tnot a time\t2025-01-01"])
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat, match="not a time"):
        bulkload.load_tables(server, shop_tables_db, iter([good, bad] + [good] * 20))
    with server.connect(shop_tables_db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_a_failing_generator_is_raised_and_no_worker_hangs(server: ConnectionInfo, shop_tables_db: str) -> None:
    def tables() -> Iterator[generate.TableData]:
        yield generate.TableData("categories", ("id", "parent_id", "name", "slug"), ["1\t\\N\tBooks\tbooks"])
        raise ValueError("generator broke")

    with pytest.raises(ValueError, match="generator broke"):
        bulkload.load_tables(server, shop_tables_db, tables())


def test_vacuum_analyze_leaves_statistics_for_every_table(server: ConnectionInfo, shop_tables_db: str) -> None:
    bulkload.load_tables(server, shop_tables_db, iter(generate.generate(scale=SMALL)))
    bulkload.vacuum_analyze(server, shop_tables_db)
    with server.connect(shop_tables_db) as conn:
        missing = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
            "AND relname <> 'labkit_meta' AND reltuples < 0 ORDER BY 1"
        ).fetchall()
        assert missing == []
        assert conn.execute("SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'orders'").fetchone() == (True,)
