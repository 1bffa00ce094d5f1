"""The monitoring lesson's helpers on a real server: VACUUM's report lines, and the server log read from a mark."""

from __future__ import annotations

import re

import pytest

from labkit.notebook.lessons.maintenance import ServerLog, ServerLogUnavailable, vacuum_report
from labkit.servers.base import ConnectionInfo


def test_vacuum_report_tells_rows_an_open_snapshot_still_needs(server: ConnectionInfo, scratch_db: str) -> None:
    with server.connect(scratch_db) as conn, server.connect(scratch_db, autocommit=False) as reader:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY) WITH (autovacuum_enabled = off)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM t")  # the snapshot that keeps the deleted rows
        conn.execute("DELETE FROM t WHERE id <= 40")
        held = vacuum_report(conn, "t", lines=("tuples:",))
        reader.rollback()
        freed = vacuum_report(conn, "t")
        frozen = vacuum_report(conn, "t", freeze=True, lines=("frozen:",))
    assert held == ["tuples: 0 removed, 100 remain, 40 are dead but not yet removable"]
    assert freed[0].startswith("pages: ") and freed[1].startswith("tuples: 40 removed, 60 remain, 0 are dead")
    assert len(frozen) == 1 and frozen[0].startswith("frozen: ")


def test_server_log_returns_this_sessions_new_lines_without_volatile_figures(server: ConnectionInfo, scratch_db: str) -> None:
    with server.connect(scratch_db) as conn, server.connect(scratch_db) as other:
        log = ServerLog(conn)
        conn.execute("SELECT 'logged before the mark'")
        log.mark()
        conn.execute("SET log_min_duration_statement = 0")
        conn.execute("SELECT 'mine after the mark'")
        other.execute("SET log_min_duration_statement = 0")
        other.execute("SELECT 'another session'")
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'pg_proc'")
        conn.execute("SET auto_explain.log_min_duration = -1")
        conn.execute("SET log_min_duration_statement = -1")
        lines = log.lines_since_mark()
    text = "\n".join(lines)
    assert "statement: SELECT 'mine after the mark'" in text
    assert "another session" not in text and "before the mark" not in text
    assert "Query Text: SELECT count(*) FROM pg_class" in text and "Scan" in text
    assert not re.search(r"duration: [0-9]", text) and "cost=" not in text
    assert all(line.startswith(("LOG:", "\t", " ")) for line in lines), lines


def test_server_log_without_a_log_file_says_so(server: ConnectionInfo, scratch_db: str) -> None:
    with server.connect(scratch_db) as conn:
        log = ServerLog(conn)
        log.path += ".absent"
        with pytest.raises(ServerLogUnavailable, match="writes no log file"):
            log.mark()
