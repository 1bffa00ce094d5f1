"""The extensions lesson's guard: it runs where the lab's owner is a superuser with the extensions on disk,
and elsewhere says why in one sentence and skips the rest of the notebook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from labkit.notebook import ops
from labkit.servers.base import ConnectionInfo

ROLE = "t_ops16_plain"


class FakeShell:
    """Just the part of IPython's shell the guard touches."""

    def __init__(self) -> None:
        self.input_transformers_post: list[Any] = []


@pytest.fixture
def plain_role_conn(server: ConnectionInfo, scratch_db: str) -> Iterator[psycopg.Connection]:
    """A connection acting as a role that is not a superuser."""
    with server.connect(scratch_db) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE}")
        conn.execute(f"SET ROLE {ROLE}")
        yield conn
        conn.execute("RESET ROLE")
        conn.execute(f"DROP ROLE {ROLE}")


def test_the_lab_server_runs_the_lesson(server: ConnectionInfo, scratch_db: str) -> None:
    shell = FakeShell()
    with server.connect(scratch_db) as conn:
        assert ops.extensions_unavailable(conn, ["pgcrypto", "ltree", "btree_gist", "postgres_fdw"]) is None
        assert ops.require_extensions("16", conn, ["pgcrypto"], shell=shell)
    assert shell.input_transformers_post == []


def test_a_missing_extension_is_named_and_later_cells_are_skipped(
    server: ConnectionInfo, scratch_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = FakeShell()
    with server.connect(scratch_db) as conn:
        assert not ops.require_extensions("16 · Extensions", conn, ["pgcrypto", "no_such_extension"], shell=shell)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "16 · Extensions is skipped here" in out and "no_such_extension" in out and "pgcrypto" not in out
    assert [transform(["SELECT 1\n"]) for transform in shell.input_transformers_post] == [ops.SKIPPED_CELL]


def test_a_role_that_is_not_a_superuser_is_told_why(plain_role_conn: psycopg.Connection) -> None:
    reason = ops.extensions_unavailable(plain_role_conn, ["pgcrypto"])
    assert reason is not None and "not a superuser" in reason


def test_a_foreign_server_the_lab_server_cannot_reach_is_reported_and_nothing_is_kept(
    server: ConnectionInfo, scratch_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = ops.FDW_LOOPBACK_PROBE.read_text().replace("current_setting('port')", "'1'")
    assert unreachable != ops.FDW_LOOPBACK_PROBE.read_text()
    probe = tmp_path / "probe.sql"
    probe.write_text(unreachable)
    monkeypatch.setattr(ops, "FDW_LOOPBACK_PROBE", probe)
    with server.connect(scratch_db) as conn:
        reason = ops.extensions_unavailable(conn, ["postgres_fdw"])
        assert reason is not None and "cannot connect to the server itself" in reason
        assert conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'postgres_fdw'").fetchone() == (0,)
