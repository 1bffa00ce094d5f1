"""labkit.notebook.ops as notebook 13 uses it: client programs against the real lab server, their
listings parsed (pg_restore --list, pg_waldump), a corrupted backup file, and the skip on providers
that cannot run extra clusters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.config import Settings
from labkit.notebook import ops
from labkit.servers import extra
from labkit.servers.base import ConnectionInfo
from labkit.shop.database import SHOP_DB


@pytest.fixture
def lab(shop: ConnectionInfo) -> ConnectionInfo:
    if os.environ.get("LABKIT_TEST_URL"):
        pytest.skip("the operations lessons need the lab server labkit runs itself")
    return shop


def test_a_custom_dump_lists_as_a_table_of_contents(lab: ConnectionInfo, settings: Settings, tmp_path: Path) -> None:
    dump = tmp_path / "shop.dump"
    ops.run("pg_dump", "--format=custom", "--table=orders", "--file", dump, server=lab, dbname=SHOP_DB, settings=settings)
    toc = ops.toc(ops.run("pg_restore", "--list", dump, settings=settings).stdout)
    rows = {(r.type, r.schema, r.name) for r in toc.itertuples()}
    assert ("TABLE", "public", "orders") in rows and ("TABLE DATA", "public", "orders") in rows
    assert ("FK CONSTRAINT", "public", "orders orders_user_id_fkey") in rows, "a tag with a space is one name"
    assert set(toc["owner"]) == {lab.user}
    assert not any(t == "TABLE" and n == "users" for t, _, n in rows), "--table dumps that table only"


def test_an_item_without_owner_or_schema_parses() -> None:
    toc = ops.toc(
        "; Archive created at 2026-01-01 00:00:00 UTC\n4; 3079 16477 EXTENSION - btree_gin \n4120; 0 0 COMMENT - EXTENSION btree_gin \n"
    )
    assert toc[["type", "schema", "name", "owner"]].values.tolist() == [
        ["EXTENSION", None, "btree_gin", None],
        ["COMMENT", None, "EXTENSION btree_gin", None],
    ]


def test_a_failing_program_raises_with_its_message_unless_asked_not_to(lab: ConnectionInfo, settings: Settings) -> None:
    with pytest.raises(ops.ProgramFailed, match="no_such_database"):
        ops.run("pg_dump", "--schema-only", server=lab, dbname="no_such_database", settings=settings)
    result = ops.run("psql", "-c", "SELECT 1/0", server=lab, dbname=SHOP_DB, check=False, settings=settings)
    assert not result.ok and result.lines("division by zero")


def test_waldump_records_of_a_delete_are_found_with_their_commit(lab: ConnectionInfo, settings: Settings) -> None:
    with lab.connect(SHOP_DB) as conn:
        conn.execute("DROP TABLE IF EXISTS ops_probe; CREATE TABLE ops_probe (id int); INSERT INTO ops_probe VALUES (1), (2)")
        start = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        conn.execute("DELETE FROM ops_probe")
        end = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]  # type: ignore[index]
        conn.execute("CHECKPOINT")  # the segment is flushed and readable in pg_wal
        node = conn.execute("SELECT pg_relation_filenode('ops_probe')").fetchone()[0]  # type: ignore[index]
        wal_dir = Path(conn.execute("SHOW data_directory").fetchone()[0]) / "pg_wal"  # type: ignore[index]
        conn.execute("DROP TABLE ops_probe")
    output = ops.run("pg_waldump", "--path", wal_dir, "--start", start, "--end", end, as_server_user=True, settings=settings).stdout
    wal = ops.waldump_records(output)
    deletes = wal[(wal["record"] == "DELETE") & (wal["relfilenode"] == node)]
    assert len(deletes) == 2 and deletes["xid"].nunique() == 1
    commit = wal[(wal["xid"] == deletes["xid"].iloc[0]) & (wal["record"] == "COMMIT")]
    assert len(commit) == 1 and commit["lsn"].iloc[0] > deletes["lsn"].iloc[-1]


def test_a_flipped_byte_fails_pg_verifybackup_and_flipping_it_again_repairs_it(lab: ConnectionInfo, settings: Settings) -> None:
    with extra.base_backup("ops-verify", settings) as backup:
        assert ops.run("pg_verifybackup", backup.path, as_server_user=True, settings=settings).ok
        ops.flip_byte(backup.path / "PG_VERSION")
        broken = ops.run("pg_verifybackup", backup.path, as_server_user=True, check=False, settings=settings)
        assert not broken.ok and 'checksum mismatch for file "PG_VERSION"' in broken.stderr
        ops.flip_byte(backup.path / "PG_VERSION")
        assert ops.run("pg_verifybackup", backup.path, as_server_user=True, settings=settings).ok


def test_workdirs_are_removed(tmp_path: Path) -> None:
    made = ops.workdir("ops-test-")
    (made / "file").write_text("x")
    assert ops.remove_workdirs() >= 1 and not made.exists()


def test_the_lesson_skips_in_one_sentence_where_extra_clusters_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = Settings.load(server="url", database_url="postgresql://nobody@127.0.0.1:1/none")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    before = list(shell.input_transformers_post)
    try:
        assert ops.require_backup_tools(elsewhere, shell=shell) is False
        printed = capsys.readouterr().out.strip()
        assert printed.startswith("This lesson needs PostgreSQL programs on this machine and skips here:") and "\n" not in printed
        assert "url provider" in printed
        shell.user_ns.pop("dumped_here", None)
        assert shell.run_cell("dumped_here = 1\nwork / 'x'").success and "dumped_here" not in shell.user_ns, "a later cell ran"
    finally:
        shell.input_transformers_post[:] = before
