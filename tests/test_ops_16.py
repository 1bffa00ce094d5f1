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


def test_foreign_server_exercises_are_graded_in_a_sandbox_that_connects_nowhere(shop: ConnectionInfo, tmp_path: Path) -> None:
    """16.6 needs USAGE on postgres_fdw, which a grading sandbox's role lacks: it gets an inert wrapper of that name.
    The reference answer earns its point; an answer that reads through a foreign server reaches nothing."""
    import nbformat

    from labkit.exercises import refresh
    from labkit.grading import grader, submission

    reference = next(s.sql for s in refresh.all_solutions() if s.exercise == "16.6")
    reach = (f"CREATE SERVER probe FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{shop.host}', port '{shop.port}', dbname 'shop');"
             "CREATE USER MAPPING FOR CURRENT_USER SERVER probe OPTIONS (user 'postgres', password 'guess');"
             "CREATE FOREIGN TABLE pg_temp.users (username text) SERVER probe;"
             "SELECT count(*) FROM pg_temp.users")  # fmt: skip
    for student, answer in (("honest", reference), ("prober", reach)):
        cell = nbformat.v4.new_code_cell(f'answer_16_6 = """{answer}"""')
        (tmp_path / student).mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / student / "16-extensions-fdw.ipynb")
    options = grader.Options(statement_timeout=10.0, time_limit=60.0, workers=1)
    results = {r.student: r for r in grader.grade_all(shop, submission.collect(tmp_path), ["16.6"], options, progress=False)}
    assert results["honest"].total == 1, results["honest"].grades["16.6"].feedback
    assert results["prober"].total == 0
    assert "has no handler" in " ".join(results["prober"].grades["16.6"].feedback)
