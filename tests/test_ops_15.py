"""The pooling lesson's conveniences (labkit.notebook.ops) on a real PgBouncer and PostgreSQL 16,
and the traps its exercises teach: the checks reject them."""

from __future__ import annotations

import os

import psycopg
import pytest

from labkit.exercises import checker, refresh
from labkit.grading import sandbox
from labkit.notebook import ops
from labkit.servers import pooler
from labkit.servers.base import ConnectionInfo

needs_pgbouncer = pytest.mark.skipif(pooler.find_pgbouncer() is None, reason="PgBouncer is not installed")


class Lab:
    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info


@pytest.fixture
def lab(shop: ConnectionInfo) -> Lab:
    if os.environ.get("LABKIT_TEST_URL"):
        pytest.skip("the pooler runs next to the lab server labkit runs itself")
    return Lab(shop)


def test_a_missing_pgbouncer_is_one_sentence_and_the_rest_is_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    before = list(shell.input_transformers_post)
    monkeypatch.setenv("LABKIT_PGBOUNCER", "/nonexistent/pgbouncer")
    try:
        assert ops.require_pgbouncer(shell=shell) is False
        shown = capsys.readouterr().out
        assert shown.count("\n") == 1 and "apt-get install pgbouncer" in shown and "brew install pgbouncer" in shown
        shell.user_ns.pop("pooled_here", None)
        assert shell.run_cell("pooled_here = 1\n1 / 0").success and "pooled_here" not in shell.user_ns, "a later cell ran"
    finally:
        shell.input_transformers_post[:] = before


@needs_pgbouncer
def test_many_clients_share_few_backends_in_transaction_mode(lab: Lab) -> None:
    with ops.start_pooler(lab, pool_mode="transaction", pool_size=2) as p:
        run = ops.run_clients(p, clients=6, transactions=2, work_s=0.02, think_s=0.05)
        assert run.transactions == 12 and run.server_backends <= 2 and run.max_sv_active <= 2
        frame = ops.pools(p)
        assert list(frame.columns) == ops.POOL_COLUMNS and frame.loc[0, "pool_mode"] == "transaction"
    assert not p.running


@needs_pgbouncer
def test_pgbench_through_the_pooler(lab: Lab) -> None:
    with ops.start_pooler(lab, pool_mode="transaction", pool_size=1) as p:
        result = ops.pgbench(p, clients=4, transactions=5, sql="SELECT 1")
    assert result["number of clients"] == "4"
    assert result["number of transactions actually processed"] == "20/20"
    assert result["number of failed transactions"] == "0"


@needs_pgbouncer
def test_a_client_run_reports_the_clients_error(lab: Lab) -> None:
    with ops.start_pooler(lab, pool_mode="transaction", pool_size=1) as p, pytest.raises(psycopg.Error):
        ops.run_clients(p, clients=2, transactions=1, work_s=0, think_s=0, dbname="no_such_db")


@pytest.mark.parametrize(
    ("exercise", "answer"),
    [
        (
            "15.2",
            "CREATE FUNCTION lesson15_allow_slow_report() RETURNS void LANGUAGE sql "
            "AS $$ SELECT set_config('statement_timeout', '5min', false) $$",
        ),
        ("15.2", "CREATE FUNCTION lesson15_allow_slow_report() RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$"),
        (  # restored when the function returns: the report would not get its five minutes
            "15.2",
            "CREATE FUNCTION lesson15_allow_slow_report() RETURNS void LANGUAGE sql SET statement_timeout = '5min' AS $$ SELECT 1 $$",
        ),
        ("15.3", "SELECT pg_try_advisory_lock(1501) AS got_the_lock"),
        ("15.3", "SELECT true AS got_the_lock"),
    ],
)
def test_pooling_exercises_reject_the_session_scoped_answers(shop: ConnectionInfo, exercise: str, answer: str) -> None:
    with shop.connect("shop") as conn:
        assert not checker.evaluate(conn, exercise, answer, count_attempt=False).passed
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


@needs_pgbouncer
def test_clean_up_stops_this_kernels_poolers(lab: Lab) -> None:
    p = ops.start_pooler(lab, name="forgotten")
    assert ops.clean_up_poolers() == ["forgotten"]
    assert not p.running and not p.root.exists()
    assert ops.clean_up_poolers() == []


def test_the_pooling_exercises_grade_in_a_sandbox(shop: ConnectionInfo) -> None:
    """As the grader runs them: an unprivileged role in a throwaway copy of the shop."""
    from labkit.shop import database

    solutions = [s for s in refresh.all_solutions() if s.exercise.startswith("15.")]
    assert len(solutions) == 6
    box = sandbox.create(shop, database.TEMPLATE_DB, statement_timeout="30s")
    try:
        with box.info.connect(box.dbname) as conn:  # as revoked in every sandbox: the lock exercise cannot pass
            assert not checker.evaluate(conn, "15.3", next(s.sql for s in solutions if s.exercise == "15.3"), count_attempt=False).passed
        with pytest.raises(sandbox.GradingError, match="never grants"):
            sandbox.grant_functions(shop, box, {"pg_advisory_lock(bigint)"})  # session-level: outlives the check
        sandbox.grant_functions(shop, box, {f for s in solutions for f in checker.spec(s.exercise).get("functions", [])})  # as the grader
        with box.info.connect(box.dbname) as conn:
            for solution in solutions:
                result = checker.evaluate(conn, solution.exercise, solution.sql, count_attempt=False)
                assert result.passed, (solution.exercise, result.feedback)
    finally:
        sandbox.drop(shop, box.dbname)
