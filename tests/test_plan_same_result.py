"""A plan exercise may also ask for the reference's rows ("plan": {"same_result": true}): a query that is fast
but answers another question (another date range, another user) fails, with the result's feedback."""

from __future__ import annotations

from labkit.exercises import checker, refresh
from labkit.servers.base import ConnectionInfo

PLAN = {"uses": [["Index", "orders"]], "avoid": [["Seq Scan", "orders"]]}
SPEC = {"kind": "plan", "plan": {**PLAN, "same_result": True}, "salt": "5a17ed0123456789", "points": 1}
REFERENCE = "SELECT count(*) FROM orders WHERE created_at >= '2025-03-01' AND created_at < '2025-04-01'"


def _check(conn, sql: str, spec: dict) -> checker.CheckResult:  # type: ignore[no-untyped-def]
    return checker.evaluate(conn, "05.2", sql, spec_=spec, count_attempt=False)


def test_a_fast_query_must_also_return_the_reference_rows(shop: ConnectionInfo) -> None:
    with shop.connect("shop", autocommit=True) as conn:
        spec = {**SPEC, "expected": refresh.expected_for(conn, SPEC, REFERENCE)}
        assert _check(conn, REFERENCE, spec).passed
        other_range = _check(conn, REFERENCE.replace("2025-04-01", "2025-03-15"), spec)  # searches the index, counts half a month
        assert not other_range.passed and "Column 'count': not the expected values." in other_range.feedback
        slow = _check(conn, "SELECT count(*) FROM orders WHERE date_trunc('month', created_at) = '2025-03-01'", spec)
        assert not slow.passed and any("end to end" in line for line in slow.feedback)  # right rows, read the slow way


def test_without_same_result_only_the_plan_counts(shop: ConnectionInfo) -> None:
    plan_only = {**SPEC, "plan": PLAN}
    with shop.connect("shop", autocommit=True) as conn:
        assert refresh.expected_for(conn, plan_only, REFERENCE) is None
        assert _check(conn, REFERENCE.replace("2025-04-01", "2025-03-15"), plan_only).passed
    assert not refresh.same_result({**SPEC, "plan_sql": "SELECT 1"})  # the answer is set-up there, not the query checked
