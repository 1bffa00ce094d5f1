"""Side-by-side sessions: lock waits are detected by PostgreSQL, so timelines replay identically."""

from __future__ import annotations

from labkit.notebook.sessions import Sessions
from labkit.servers.base import ConnectionInfo


def _prepare(server: ConnectionInfo, db: str) -> None:
    with server.connect(db) as conn:
        conn.execute("CREATE TABLE inv (id int PRIMARY KEY, q int NOT NULL)")
        conn.execute("INSERT INTO inv VALUES (1, 10), (2, 10)")


def test_blocked_update_waits_then_resumes_after_commit(server: ConnectionInfo, scratch_db: str) -> None:
    _prepare(server, scratch_db)
    with Sessions(server, scratch_db) as s:
        s.a("BEGIN")
        s.a("UPDATE inv SET q = q - 1 WHERE id = 1")
        s.b("UPDATE inv SET q = q - 2 WHERE id = 1")
        assert s.steps[-1].outcome == "waiting" and s.steps[-1].result == "A"
        s.a("COMMIT")
        assert [step.outcome for step in s.steps[-2:]] == ["ok", "resumed"]
        assert s.b("SELECT q FROM inv WHERE id = 1") == [(7,)]


def test_deadlock_is_detected_in_the_session_that_waited_first(server: ConnectionInfo, scratch_db: str) -> None:
    _prepare(server, scratch_db)
    with Sessions(server, scratch_db) as s:
        s.a("BEGIN")
        s.b("BEGIN")
        s.b("SET deadlock_timeout = '10s'")
        s.a("UPDATE inv SET q = 0 WHERE id = 1")
        s.b("UPDATE inv SET q = 0 WHERE id = 2")
        s.a("UPDATE inv SET q = 1 WHERE id = 2")
        s.b("UPDATE inv SET q = 1 WHERE id = 1")
        s.a("ROLLBACK")
        s.b("COMMIT")
        outcomes = [(step.session, step.outcome) for step in s.steps]
        assert ("a", "error") in outcomes
        error = next(step for step in s.steps if step.outcome == "error")
        assert "DeadlockDetected" in (error.error or "")
        assert outcomes[-2:] == [("b", "resumed"), ("b", "ok")]
        table = s.timeline().frame()
        assert list(table.columns) == ["session", "statement", "result"] and len(table) == len(s.steps)
        assert table.iloc[-1]["session"] == "B"
    with server.connect(scratch_db) as conn:
        assert conn.execute("SELECT q FROM inv ORDER BY id").fetchall() == [(1,), (0,)]


def test_lock_timeout_ends_a_wait(server: ConnectionInfo, scratch_db: str) -> None:
    _prepare(server, scratch_db)
    with Sessions(server, scratch_db) as s:
        s.a("BEGIN")
        s.a("UPDATE inv SET q = 0 WHERE id = 1")
        s.b("SET lock_timeout = '100ms'")
        s.b("UPDATE inv SET q = 5 WHERE id = 1")
        s.b.wait()
        assert s.steps[-1].outcome == "error" and "LockNotAvailable" in (s.steps[-1].error or "")
        s.a("ROLLBACK")
        assert s.a("SELECT q FROM inv WHERE id = 1") == [(10,)]
