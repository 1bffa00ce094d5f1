"""Every example query of the seed, in its runnable form (sql/examples), returns meaningful rows."""

from __future__ import annotations

import re

import pytest

from labkit.schema import SQL_DIR
from labkit.servers.base import ConnectionInfo


def examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted((SQL_DIR / "examples").glob("*.sql")):
        for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
            title, _, body = block.partition("\n")
            found.append((f"{path.stem}:{title.split()[0]}", body.strip().rstrip(";")))
    return found


EXAMPLES = examples()


def test_every_seed_section_has_examples() -> None:
    names = {name.split(":")[1] for name, _ in EXAMPLES}
    for expected in ("category_tree", "customer_segments", "product_sales_ranking", "sessionisation", "explain_analyze_json",
                     "exists_subquery", "in_subquery", "batch_update", "jsonb_query", "jsonb_aggregation", "jsonpath", "jsonb_update",
                     "savepoint_transaction", "advisory_lock", "n_plus_one_fix", "optimistic_locking", "audit_trigger",
                     "stock_reservation"):  # fmt: skip
        assert expected in names


@pytest.mark.parametrize(("name", "sql"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_returns_rows(name: str, sql: str, shop: ConnectionInfo) -> None:
    with shop.connect("shop", autocommit=False) as conn:
        rows = conn.execute(sql).fetchall()  # type: ignore[arg-type]
        conn.rollback()  # DML examples leave the shop as it was
    assert rows, f"{name} returned no rows"
    assert all(value is not None for value in rows[0][:1]), f"{name}: first value is NULL"
    if name.endswith("category_tree"):
        assert max(r[3] for r in rows) == 3  # four levels: 0..3
    if name.endswith("customer_segments"):
        assert {r[0] for r in rows} >= {"new", "inactive", "vip", "active"}
    if name.endswith("sessionisation"):
        assert any(r[4] > 1 for r in rows)  # sessions of several events
    if name.endswith(("in_subquery", "exists_subquery")):
        assert len(rows) > 10
