"""What a learner sees in a notebook, in a real IPython shell (and a real kernel) against the real lab.

Errors read as psql prints them and still fail the cell; a reset from another process or a server
restart does not break the next cell; a stopped server is one sentence; sessions report a killed
session; ``%sql BEGIN`` works; ``\\d`` is laid out as psql; the ER diagram is Mermaid; plan pictures
use the plan's own node names.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbclient import NotebookClient

import labkit
from labkit.config import Settings
from labkit.notebook import explain
from labkit.notebook.sessions import SessionLost
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo

ROOT = Path(__file__).resolve().parent.parent
LABKIT = str(Path(sys.executable).with_name("labkit"))


@pytest.fixture(scope="module")
def ip(shop: ConnectionInfo) -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    result = shell.run_cell("import labkit\nshop = labkit.lab()")
    assert result.success, result.error_in_exec
    yield shell


def run(ip: InteractiveShell, source: str) -> tuple[Any, str]:
    """Run a cell; return IPython's result and everything the cell printed or displayed as text."""
    with capture_output() as captured:
        result = ip.run_cell(source)
    shown = captured.stdout + captured.stderr + "".join(o.data.get("text/plain", "") for o in captured.outputs)
    return result, re.sub(r"^Out\[\d+\]: ", "", shown, flags=re.M)


def value(ip: InteractiveShell, sql: str) -> Any:
    result, shown = run(ip, f"_ = %sql {sql}\n_rows = list(_)")
    assert result.success, shown
    return ip.user_ns["_rows"][0][0]


def terminate_shop_backends(server: ConnectionInfo) -> None:
    with server.connect() as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shop' AND pid <> pg_backend_pid()")


# ---- errors as psql prints them -------------------------------------------------------------------


def test_a_failing_sql_cell_shows_psql_error_with_caret_and_still_fails(ip: InteractiveShell) -> None:
    result, shown = run(ip, "%%sql\nSELECT id\nFROM orders\nWHERE no_such_column = 1")
    assert not result.success, "the cell must fail so nbval and nbclient see it"
    lines = shown.strip().splitlines()
    assert lines[0] == 'ERROR:  column "no_such_column" does not exist'
    assert lines[1] == "LINE 3: WHERE no_such_column = 1"
    assert lines[2] == " " * len("LINE 3: WHERE ") + "^", "the caret sits under the error position"
    assert len(lines) <= 15
    for noise in ("Traceback", "sqlalchemy", "snippets", "psycopg.errors", "Background on this error"):
        assert noise not in shown


def test_detail_hint_and_context_are_shown_and_nothing_else(ip: InteractiveShell) -> None:
    body = "DO $$\nBEGIN\n    RAISE EXCEPTION 'stock too low' USING DETAIL = 'only 3 left', HINT = 'order fewer';\nEND $$;"
    result, shown = run(ip, "%%sql\n" + body)
    assert not result.success
    assert shown.strip().splitlines() == [
        "ERROR:  stock too low",
        "DETAIL:  only 3 left",
        "HINT:  order fewer",
        "CONTEXT:  PL/pgSQL function inline_code_block line 3 at RAISE",
    ]


def test_errors_from_python_code_and_shop_check_read_the_same(ip: InteractiveShell) -> None:
    result, shown = run(ip, "with shop.connect() as conn:\n    conn.execute('SELECT * FROM no_such_table')")
    assert not result.success and "Traceback" not in shown
    assert shown.strip().splitlines()[:2] == ['ERROR:  relation "no_such_table" does not exist', "LINE 1: SELECT * FROM no_such_table"]


def test_error_value_is_the_psql_text_in_a_real_kernel(shop: ConnectionInfo, tmp_path: Path) -> None:
    """nbclient's and nbval's view: the cell errors, its evalue holds PostgreSQL's message, no traceback frames."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import labkit\nshop = labkit.lab()"),
        nbformat.v4.new_code_cell("%%sql\nSELECT 'returned'::order_status;"),
        nbformat.v4.new_code_cell("%sql SELECT 1 AS still_connected"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(ROOT)}}).execute()
    first = nb.cells[0].outputs
    assert [o.output_type for o in first] == ["stream"] and re.fullmatch(r"labkit: PostgreSQL 16\.\d+ .*\.\n", first[0].text)
    (error,) = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert 'invalid input value for enum order_status: "returned"' in error.evalue
    assert error.traceback[0].startswith("ERROR:  invalid input value") and any(line.strip() == "^" for line in error.traceback)
    assert len(error.traceback) <= 15 and not any("File " in line or "Traceback" in line for line in error.traceback)
    assert [o for o in nb.cells[1].outputs if o.output_type != "error"] == [], "nothing but the error (no JupySQL notes)"
    assert nb.cells[2].outputs and nb.cells[2].outputs[0].output_type == "execute_result"


# ---- reconnecting, and a server that is gone -----------------------------------------------------------


def test_the_next_cell_works_after_a_reset_in_another_process(ip: InteractiveShell) -> None:
    assert value(ip, "SELECT count(*) FROM categories") > 0
    subprocess.run([LABKIT, "reset"], check=True, capture_output=True, cwd=ROOT, timeout=120)
    result, shown = run(ip, "%sql SELECT count(*) AS n FROM categories")
    assert result.success, shown
    assert "AdminShutdown" not in shown and "Rollback" not in shown and "terminating" not in shown


def test_a_reset_in_the_same_notebook_reconnects_and_says_what_it_did(ip: InteractiveShell) -> None:
    result, shown = run(ip, "r = shop.reset()\nr")
    assert result.success, shown
    assert re.fullmatch(r"The shop database is pristine again \(restored from its template in \d+\.\d\d s\)\.", shown.strip())
    assert ip.user_ns["r"].seconds > 0
    assert value(ip, "SELECT 1") == 1


def test_an_open_transaction_lost_to_a_terminated_connection_is_reported(ip: InteractiveShell, shop: ConnectionInfo) -> None:
    run(ip, "%sql BEGIN")
    run(ip, "%sql CREATE TABLE lost_in_reset (id int)")
    terminate_shop_backends(shop)
    result, shown = run(ip, "%sql INSERT INTO lost_in_reset VALUES (1)")
    assert not result.success, "a statement meant for a lost transaction must not run in autocommit"
    assert "rolled it back" in shown and "BEGIN" in shown and len(shown.strip().splitlines()) <= 2
    assert value(ip, "SELECT to_regclass('lost_in_reset') IS NULL") is True, "nothing of the lost transaction was kept or re-run"


def test_a_statement_that_may_have_run_is_never_sent_twice(ip: InteractiveShell, shop: ConnectionInfo) -> None:
    """A connection killed while a statement runs: the error is shown, the statement is not retried."""
    run(ip, "%sql DROP TABLE IF EXISTS once_only")
    run(ip, "%sql CREATE TABLE once_only (n int)")
    with shop.connect("shop") as killer:
        ip.user_ns["_killer_sql"] = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO once_only%'"
        import threading

        def kill_soon() -> None:
            import time

            for _ in range(200):
                if killer.execute(ip.user_ns["_killer_sql"]).fetchall():
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=kill_soon)
        thread.start()
        result, shown = run(ip, "%sql INSERT INTO once_only SELECT 1 FROM pg_sleep(2)")
        thread.join()
    assert not result.success and "Traceback" not in shown
    assert "closed while this cell ran" in shown
    assert value(ip, "SELECT count(*) FROM once_only") == 0
    run(ip, "%sql DROP TABLE once_only")


def test_a_stopped_server_is_one_sentence_and_a_restart_reconnects(ip: InteractiveShell, settings: Settings) -> None:
    if settings.server not in (None, "auto", "portable", "local"):
        pytest.skip("stops and starts the lab's own server")
    lifecycle.stop_server(settings)
    try:
        for cell in ("%sql SELECT 1", "shop.reset()", "shop.check('03.1', 'SELECT 1')", "shop.df('SELECT 1')"):
            result, shown = run(ip, cell)
            assert not result.success, cell
            assert shown.strip().splitlines() == [labkit.notebook.failures.SERVER_DOWN], (cell, shown)
    finally:
        lifecycle.ensure_server(settings)
    result, shown = run(ip, "%sql SELECT count(*) AS n FROM categories")
    assert result.success, shown


# ---- sessions, BEGIN, \d ---------------------------------------------------------------------------


def test_sessions_report_a_killed_session_in_the_timeline_and_to_the_caller(shop: ConnectionInfo) -> None:
    with labkit.sessions.Sessions(shop, "shop") as s:
        s.a("BEGIN")
        s.b("SELECT 1")
        with shop.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [s.a.pid])
        with pytest.raises(SessionLost, match="Session A's connection was closed by the server"):
            s.a("COMMIT")
        with pytest.raises(SessionLost):
            s.a("SELECT 1")
        assert s.b("SELECT 2") == [(2,)]
        frame = s.timeline().frame()
        assert list(frame["session"]) == ["A", "B", "A", "A", "B"]
        assert frame.iloc[2]["result"].startswith("ERROR: terminating connection due to administrator command")
        assert frame.iloc[3]["result"].startswith("ERROR: not sent")


def test_timeline_has_a_column_per_session_with_full_sql_and_plain_glyphs(shop: ConnectionInfo, scratch_db: str) -> None:
    with shop.connect(scratch_db) as conn:
        conn.execute("CREATE TABLE inv (id int PRIMARY KEY, q int NOT NULL)")
        conn.execute("INSERT INTO inv VALUES (1, 10)")
    long_update = "UPDATE inv SET q = q - 1 WHERE id = 1 AND q > 0 AND q < 1000000 AND id IN (SELECT id FROM inv WHERE q >= 0)"
    with labkit.sessions.Sessions(shop, scratch_db) as s:
        s.a("BEGIN")
        s.a(long_update)
        s.b(long_update)
        s.a("COMMIT")
        timeline = s.timeline()
    text, page = repr(timeline), timeline._repr_html_()
    header = text.splitlines()[0]
    assert "session A" in header and "session B" in header and header.index("session A") < header.index("session B")
    b_column = header.index("session B")
    waiting = next(line for line in text.splitlines() if "waits: blocked by A" in line)
    assert waiting.index("waits") >= b_column, "B's steps are in B's column"
    a_start = header.index("session A")
    a_column = " ".join(line[a_start : b_column - 3].strip() for line in text.splitlines()[2:])
    b_column_text = " ".join(line[b_column:].strip() for line in text.splitlines()[2:])
    assert long_update in a_column and long_update in b_column_text, "SQL is wrapped in its session's column, never cut"
    assert page.count(html.escape(long_update)) == 2 and "<th" in page and "session B" in page
    for glyph in "⏳✗↳":
        assert glyph not in text and glyph not in page
    assert "step" not in header, "no stray pandas index header"


def test_sql_begin_without_a_semicolon_opens_a_transaction(ip: InteractiveShell) -> None:
    result, shown = run(ip, "%sql BEGIN")
    assert result.success, shown
    run(ip, "%sql SET LOCAL application_name = 'inside_begin'")
    assert value(ip, "SHOW application_name") == "inside_begin", "SET LOCAL only lasts inside a transaction block"
    run(ip, "%sql ROLLBACK")
    assert value(ip, "SHOW application_name") != "inside_begin"


def test_describe_prints_title_then_columns_then_footers_left_aligned(ip: InteractiveShell) -> None:
    result, shown = run(ip, "%sql \\d orders")
    assert result.success, shown
    lines = shown.strip().splitlines()
    assert lines[0].strip() == 'Table "public.orders"'
    assert [c.strip() for c in lines[1].split("|")] == ["Column", "Type", "Modifiers"]
    assert lines[3].startswith(" id ") and lines[3].split("|")[1].startswith(" uuid ")
    footers = ("Indexes:", "Foreign-key constraints:", "Referenced by:", "Triggers:")
    positions = [next(i for i, line in enumerate(lines) if line.startswith(h)) for h in footers]
    last_column_row = max(i for i, line in enumerate(lines) if line.startswith(" delivered_at "))
    assert last_column_row < positions[0] and positions == sorted(positions)
    run(ip, "described = %sql \\d orders")
    page = ip.user_ns["described"]._repr_html_()
    assert page.index("Table &quot;public.orders&quot;") < page.index("<table") < page.index("Indexes:") and "text-align:left" in page


# ---- pictures ------------------------------------------------------------------------------------


def test_er_diagram_is_mermaid_with_crows_feet_and_only_shop_tables(shop: ConnectionInfo) -> None:
    with shop.connect("shop") as conn:
        tables, keys = labkit.erd.read_catalog(conn)
    diagram = labkit.erd.draw(tables, keys)
    bundle = diagram._repr_mimebundle_()
    source = bundle["text/vnd.mermaid"]
    assert source.startswith(labkit.erd.MERMAID_CONFIG + "\nerDiagram\n")
    assert f"```mermaid\n{source}\n```" in bundle["text/markdown"]
    assert '    users ||--o{ orders : "user_id"' in source
    assert '    orders ||--o{ order_items : "order_id"' in source
    assert "labkit_meta" not in source and "audit_log_2024_01" not in source, "no internal tables, partitions folded"
    assert re.search(r"^        uuid id PK$", source, re.M) and re.search(r"^        uuid user_id FK$", source, re.M)
    assert "    logs {" not in source and "`logs`" in bundle["text/markdown"], "a table no key links is named below, not drawn"
    assert "    logs {" in labkit.erd.draw(tables, keys, standalone=True)._repr_mimebundle_()["text/vnd.mermaid"]
    types = re.findall(r"^        (\S+) \S+", source, re.M)
    assert types and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\[\])*", t) for t in types), "attribute types are single Mermaid words"


def test_plan_picture_uses_the_plans_own_node_names(shop: ConnectionInfo) -> None:
    queries = {
        "SELECT status, count(*) FROM orders GROUP BY status": ("SET enable_hashagg = on", "HashAggregate"),
        "SELECT user_id, count(*) FROM orders GROUP BY user_id ORDER BY user_id": ("SET enable_hashagg = off", "GroupAggregate"),
        "SELECT u.id FROM users u WHERE NOT EXISTS (SELECT FROM orders o WHERE o.user_id = u.id)": ("SET enable_hashagg = on", "Anti Join"),
        "SELECT u.id, o.id FROM users u LEFT JOIN orders o ON o.user_id = u.id": ("SET enable_hashagg = on", "Join"),
    }
    with shop.connect("shop") as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        for sql, (setting, expected) in queries.items():
            conn.execute(setting)
            names = [node.node_type for node in explain.plan(conn, sql, analyze=False).walk()]
            text = explain.explain_text(conn, sql)
            details = ("Group Key", "Sort Key", "Hash Cond", "Filter", "Index Cond", "Merge Cond", "Presorted", "Join Filter", "Recheck")
            nodes = [line.strip().removeprefix("->").strip() for line in text.splitlines()]
            printed = [re.split(r"  | on | using ", node)[0] for node in nodes if node and not node.startswith(details)]
            assert names == printed, (names, text)
            assert any(expected in n for n in names), (expected, names)


# ---- small things ---------------------------------------------------------------------------------


def test_labkit_fails_with_a_sentence_on_an_unsupported_platform() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys; sys.platform = 'win32'; import labkit"], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("labkit runs on Linux and macOS") and "Traceback" not in out.stderr


def test_connection_errors_are_told_apart_from_sql_errors(shop: ConnectionInfo) -> None:
    from labkit.notebook.failures import is_connection_lost

    with shop.connect("shop") as conn:
        with pytest.raises(psycopg.Error) as wrong_sql:
            conn.execute("SELECT 1/0")
    assert not is_connection_lost(wrong_sql.value)
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(host="127.0.0.1", port=1, user="x", dbname="x", connect_timeout=2)
    assert is_connection_lost(refused.value)
