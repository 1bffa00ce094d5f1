"""Every example query of the seed, in its runnable form (sql/examples), on the loaded shop.

An example file is a header comment (what changed from the seed, and why) followed by blocks::

    -- name: <identifier> (free notes)
    -- plan: <text the EXPLAIN output must contain>     (optional)
    -- error: <SQLSTATE the last statement must fail with>  (optional: an intended error)
    <one or more statements>

The statements of a block run in order in one transaction that is rolled back, so DML examples
leave the shop as it was. The last statement's rows are what is checked: not empty, plus the
example's own expectations below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pglast
import psycopg
import pytest

from labkit.config import SQL_DIR
from labkit.servers.base import ConnectionInfo

Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Example:
    file: str
    name: str
    statements: list[str]
    plan: str | None
    error: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def example_files() -> list[Path]:
    return sorted((SQL_DIR / "examples").glob("*.sql"))


def parse(path: Path) -> list[Example]:
    found = []
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        plan = re.search(r"^-- plan: (.+)$", body, flags=re.MULTILINE)
        error = re.search(r"^-- error: (\w{5})$", body, flags=re.MULTILINE)
        found.append(
            Example(
                file=path.stem,
                name=title.split()[0],
                statements=list(pglast.split(body)),
                plan=plan.group(1).strip() if plan else None,
                error=error.group(1) if error else None,
            )
        )
    return found


EXAMPLES = [example for path in example_files() for example in parse(path)]


def run(conn: psycopg.Connection, example: Example) -> Rows:
    """Run the example's statements in the current transaction; the last one's rows."""
    rows: Rows = []
    for statement in example.statements:
        cur = conn.execute(statement)  # type: ignore[arg-type]
        rows = cur.fetchall() if cur.description else []
    return rows


def plan_text(rows: Rows) -> str:
    return "\n".join(str(row[0]) for row in rows)


# What each example's result must look like, beyond "some rows". Row layouts follow the SQL.
def _category_tree(rows: Rows) -> None:
    assert max(r[3] for r in rows) == 3  # four levels: 0..3
    assert [r[4] for r in rows] == sorted(r[4] for r in rows)  # ORDER BY path
    assert all(r[5].count(" > ") == r[3] for r in rows)  # full_path has one step per level


def _customer_segments(rows: Rows) -> None:
    assert {r[0] for r in rows} == {"new", "inactive", "vip", "active"}
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    new = next(r for r in rows if r[0] == "new")
    assert new[2] == 0 and new[3] is None  # no orders, nothing spent
    vip = next(r for r in rows if r[0] == "vip")
    assert vip[3] > 1000


def _product_sales_ranking(rows: Rows) -> None:
    revenue = [r[4] for r in rows]
    assert revenue == sorted(revenue, reverse=True)
    assert [r[5] for r in rows] == list(range(1, len(rows) + 1))  # ROW_NUMBER
    assert rows[0][8] == sum(revenue)  # SUM() OVER ()
    assert abs(sum(r[10] for r in rows) - 100) < Decimal("0.001")  # percentages add up
    assert rows[-1][12] == sum(revenue)  # cumulative revenue ends at the total
    assert rows[0][13] is None and rows[-1][14] is None  # LAG / LEAD at the edges


def _sessionisation(rows: Rows) -> None:
    assert any(r[4] > 1 for r in rows)  # sessions of several events
    assert all(r[2] <= r[3] for r in rows)
    users = [r[0] for r in rows]
    assert users == sorted(users)


def _explain_json(rows: Rows) -> None:
    plan = rows[0][0][0]
    assert plan["Plan"]["Node Type"] == "Limit" and "Execution Time" in plan


def _same_as(other: str) -> Callable[[Rows, dict[str, Rows]], None]:
    def check(rows: Rows, results: dict[str, Rows]) -> None:
        assert rows == results[other]

    return check


def _batch_update(rows: Rows) -> None:
    assert all(isinstance(r[1], int) for r in rows)


def _jsonb_query(rows: Rows) -> None:
    assert all(r[4] and r[5] >= 1 for r in rows)  # a city, at least one interest


def _jsonb_aggregation(rows: Rows) -> None:
    assert all(len(r[0]["orders"]) <= 5 for r in rows)
    assert any(r[0]["orders"][0]["order_id"] is not None for r in rows)


def _jsonpath(rows: Rows) -> None:
    assert all("waterproof" in r[2] for r in rows)


def _analyze_orders(rows: Rows) -> None:
    stats = {r[0]: r[1:] for r in rows}
    assert set(stats) == {"created_at", "status", "user_id"}
    assert stats["status"][0] == 5  # all five order statuses occur


CHECKS: dict[str, Callable[[Rows], None]] = {
    "category_tree": _category_tree,
    "customer_segments": _customer_segments,
    "product_sales_ranking": _product_sales_ranking,
    "sessionisation": _sessionisation,
    "explain_analyze_json": _explain_json,
    "batch_update": _batch_update,
    "jsonb_query": _jsonb_query,
    "jsonb_aggregation": _jsonb_aggregation,
    "jsonpath": _jsonpath,
    "analyze_orders": _analyze_orders,
}

EXPECTED: dict[str, Rows] = {
    "not_in_null_trap": [(0,)],
    "jsonb_update": [("New York", "2024-01-01")],
    "savepoint_transaction": [("ORD-EXAMPLE-1", Decimal("100.00"), 0)],
    "exception_block": [("ORD-EXAMPLE-2", 0)],
    "advisory_lock": [(True,)],
    "advisory_lock_held": [("advisory", 12345, "ExclusiveLock", True)],
    "advisory_xact_lock": [(True,)],
    "optimistic_locking_stale": [(0,)],
    "updated_at_trigger": [(True, True)],
    "audit_trigger": [("orders", "UPDATE", True, ["metadata", "updated_at"])],
    "audit_empty_setting": [("UPDATE", None)],
    "extended_statistics": [("stat_orders_user_status", ["user_id", "status"], True, True, True)],
}


def test_every_seed_section_has_examples() -> None:
    names = {example.name for example in EXAMPLES}
    for expected in ("category_tree", "customer_segments", "product_sales_ranking", "sessionisation", "explain_analyze_json",
                     "explain_shape", "function_on_column", "range_condition", "exists_subquery", "in_subquery", "batch_update",
                     "email_case_insensitive", "orders_of_a_month", "overlapping_events", "product_full_text", "logs_of_a_day",
                     "covering_index", "extended_statistics", "analyze_orders", "updated_at_trigger", "audit_trigger", "stock_reservation",
                     "jsonb_query", "jsonb_aggregation", "jsonpath", "jsonb_update", "savepoint_transaction", "advisory_lock",
                     "n_plus_one_fix", "pessimistic_locking", "optimistic_locking"):  # fmt: skip
        assert expected in names


def test_example_files_are_documented_and_names_unique() -> None:
    for path in example_files():
        header = path.read_text().split("\n-- name: ")[0]
        assert header.startswith("-- The seed's") and "Changes" in header, path.name
    ids = [example.id for example in EXAMPLES]
    assert len(ids) == len(set(ids))
    assert all(example.statements for example in EXAMPLES)


@pytest.fixture(scope="module")
def results(shop: ConnectionInfo) -> dict[str, Rows]:
    """Every example's rows (or the SQLSTATE it failed with), each in a rolled-back transaction."""
    out: dict[str, Rows] = {}
    with shop.connect("shop", autocommit=False) as conn:
        for example in EXAMPLES:
            try:
                out[example.name] = run(conn, example)
            except psycopg.Error as error:
                out[example.name] = [("error", error.sqlstate, str(error))]
            finally:
                conn.rollback()  # DML examples leave the shop as it was
            conn.execute("SELECT pg_advisory_unlock_all()")
            conn.rollback()
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_gives_meaningful_result(example: Example, results: dict[str, Rows]) -> None:
    rows = results[example.name]
    failed = rows[:1] and rows[0][0] == "error" and len(rows[0]) == 3
    if example.error:
        assert failed and rows[0][1] == example.error, f"{example.id} should fail with {example.error}: {rows[:1]}"
        return
    assert not failed, f"{example.id} failed: {rows[0][2] if failed else ''}"
    assert rows, f"{example.id} returned no rows"
    assert rows[0][0] is not None, f"{example.id}: first value is NULL"
    if example.plan:
        assert example.plan in plan_text(rows), f"{example.id}: plan lacks {example.plan!r}:\n{plan_text(rows)}"
    if example.name in EXPECTED:
        assert rows == EXPECTED[example.name]
    if example.name in CHECKS:
        CHECKS[example.name](rows)


def test_rewrites_return_the_same_rows(results: dict[str, Rows]) -> None:
    """The "good" form of each seed pair answers the same question as the "bad" one."""
    assert results["range_condition"] == results["function_on_column"] != []
    assert results["exists_subquery"] == results["in_subquery"] != []
    # EXISTS vs IN: PostgreSQL plans both as the same join.
    assert results["exists_subquery_plan"] == results["in_subquery_plan"]
    # NOT IN meets a NULL and finds nobody; NOT EXISTS finds the users.
    assert results["not_exists"][0][0] > 0 == results["not_in_null_trap"][0][0]


def test_locking_examples_change_the_version(results: dict[str, Rows]) -> None:
    _, quantity, version = results["optimistic_locking"][0]
    _, quantity_locked, version_locked = results["pessimistic_locking"][0]
    assert (quantity, version) == (quantity_locked, version_locked)  # same row, same change


def test_trigger_examples(results: dict[str, Rows]) -> None:
    operation, username, no_new_data = results["audit_delete"][0]
    assert (operation, no_new_data) == ("DELETE", True) and username
    assert any(reserved >= 1 for _, _, reserved in results["stock_reservation"])
    assert "Insufficient stock" in results["stock_over_reservation"][0][2]


def test_examples_left_the_shop_unchanged(shop: ConnectionInfo, results: dict[str, Rows]) -> None:
    with shop.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE order_number LIKE 'ORD-EXAMPLE-%'").fetchone() == (0,)
