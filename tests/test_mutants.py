"""Mutation testing of the exercises: plausible wrong answers, and which of them a check accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from labkit.exercises import mutants, refresh
from labkit.grading import hidden
from labkit.servers.base import ConnectionInfo

ROOT = Path(__file__).resolve().parent.parent
QUERY = """
SELECT DISTINCT u.country, count(DISTINCT o.id) AS orders
FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.status <> 'cancelled'
WHERE u.created_at >= '2024-01-01' AND u.deleted_at IS NULL
GROUP BY u.country
HAVING count(*) > 1
ORDER BY orders DESC
LIMIT 3
"""


def test_each_mutant_makes_one_mistake_on_the_parse_tree() -> None:
    found = mutants.mutants(QUERY)
    descriptions = [m.description for m in found]
    for expected in ("condition 1 of the WHERE clause left out", "condition 2 of the WHERE clause left out", "HAVING left out",
                     "DISTINCT left out", "the ORDER BY of a LIMIT left out", "LIMIT left out", "LEFT JOIN made INNER", "'>=' made '>'",
                     "DISTINCT inside an aggregate left out", "a sort direction flipped"):  # fmt: skip
        assert expected in descriptions, descriptions
    inner = next(m for m in found if m.description == "LEFT JOIN made INNER")
    assert "INNER JOIN orders" in inner.sql and "LEFT JOIN" not in inner.sql
    assert len({m.sql for m in found}) == len(found)  # all different …
    assert all(m.sql != QUERY for m in found)  # … and each differs from the original


def test_no_left_join_mutant_where_the_where_clause_makes_it_inner_anyway() -> None:
    def made_left(sql: str) -> bool:
        return any(m.description == "INNER JOIN made LEFT" for m in mutants.mutants(sql))

    join = "SELECT o.order_number FROM orders o JOIN users u ON u.id = o.user_id"
    assert made_left(join)
    assert not made_left(join + " WHERE u.username = 'ann'")  # NULL = 'ann' is never true: still inner
    assert not made_left(join + " WHERE o.status <> 'cancelled' AND u.id::text IN ('a', 'b')")
    assert made_left(join + " WHERE coalesce(u.username, 'ann') = 'ann'")  # not strict: LEFT would differ
    assert made_left(join + " WHERE o.status <> 'cancelled'")  # a filter on the other side only
    assert made_left(join + " WHERE u.username = 'ann' OR o.status = 'pending'")  # not a top-level condition


def test_a_weak_policy_lets_a_mutant_through_and_a_strict_one_does_not(shop: ConnectionInfo) -> None:
    reference = "SELECT status, count(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC"
    with shop.connect("shop") as conn:
        strict: dict = {"salt": "0f1e2d3c4b5a6978", "order": ["orders"], "points": 1}  # the rows must come in order of 'orders'
        strict["expected"] = refresh.expected_for(conn, strict, reference)
        weak = {**strict, "order": "any"}
        weak["expected"] = refresh.expected_for(conn, weak, reference)
        strict_report = mutants.try_mutants(conn, "00.2", reference, strict)
        weak_report = mutants.try_mutants(conn, "00.2", reference, weak)
    assert strict_report.mutants == weak_report.mutants >= 3
    typed_in = "the course data's result typed in (VALUES)"  # only a second dataset can catch this one
    assert [m.description for m in strict_report.survivors] == [typed_in]
    assert [m.description for m in weak_report.survivors] == ["ORDER BY left out", "a sort direction flipped", typed_in]


def test_mutants_command_reports_every_exercise(shop: ConnectionInfo) -> None:
    result = subprocess.run([sys.executable, "-m", "labkit.cli", "exercises", "mutants", "--only", "02,03.1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:8]] == ["02.1", "02.2", "02.3", "02.4", "02.5", "02.6", "02.7", "03.1"]
    summary = re.fullmatch(r"(\d+) mutants of 8 reference solutions; the checks catch (\d+), accept (\d+)\.", lines[-1])
    assert summary, lines[-1]
    total, caught, accepted = map(int, summary.groups())
    assert total == caught + accepted and caught > 0
    assert "mutant(s)" in lines[0]


def test_the_hidden_dataset_catches_an_off_by_one_date_bound(shop: ConnectionInfo) -> None:
    hidden.prepare(shop, 20261125, scale=0.1, progress=False)
    with shop.connect(hidden.HIDDEN_DB) as conn:  # rows on month boundaries, which the course data has none of
        assert conn.execute("SELECT count(*) > 0 FROM orders WHERE created_at = date_trunc('month', created_at)").fetchone() == (True,)
    with shop.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE created_at = date_trunc('month', created_at)").fetchone() == (0,)
    reference = next(s for s in refresh.all_solutions() if s.exercise == "03.2").sql  # … created_at < '2025-01-01'
    expected_there = hidden.expected_specs(shop, refresh.NOTEBOOKS, ["03.2"])["03.2"]
    with shop.connect("shop") as conn, shop.connect(hidden.HIDDEN_DB) as there:
        public = mutants.try_mutants(conn, "03.2", reference)
        both = mutants.try_mutants(conn, "03.2", reference, hidden=(there, expected_there))
    assert "'<' made '<='" in [m.description for m in public.survivors]
    assert "'<' made '<='" not in [m.description for m in both.survivors]
    assert both.caught_by_hidden >= 1
    assert "only by the hidden dataset" in mutants.report_text([both])


def test_mutants_for_luck_literals_and_plans(shop: ConnectionInfo) -> None:
    from labkit.exercises import shuffled

    window = "SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at) AS n FROM orders ORDER BY id LIMIT 5"
    found = {m.description: m.sql for m in mutants.mutants(window)}
    assert "row_number() OVER (PARTITION BY user_id)" in found["the ORDER BY inside OVER (…) left out"]
    assert "PARTITION BY left out" in found and "the ORDER BY of a LIMIT left out" in found
    plan = {m.description: m.sql for m in mutants.mutants("SELECT count(*) FROM orders WHERE created_at >= '2025-03-01' AND "
                                                          "created_at < '2025-04-01'", "plan")}  # fmt: skip
    assert list(plan) == ["a function around the column created_at (no index can search it)"]
    assert plan[next(iter(plan))].count("COALESCE(created_at, created_at)") == 2
    references = {s.exercise: s.sql for s in refresh.all_solutions()}
    assert shuffled.ensure(shop)
    with shop.connect("shop") as conn, shop.connect(shuffled.SHUFFLED_DB) as there:
        lucky = mutants.try_mutants(conn, "03.1", references["03.1"], shuffled=there)
        plain = mutants.try_mutants(conn, "03.1", references["03.1"])
        plans = mutants.try_mutants(conn, "05.2", references["05.2"])
    accepted = [m.description for m in lucky.survivors]
    assert "the ORDER BY inside OVER (…) left out" in [m.description for m in plain.survivors]  # the course data alone is fooled …
    assert accepted == ["the course data's result typed in (VALUES)"]  # … the shuffled copy is not; only a hidden dataset catches this one
    assert plans.mutants == 1 and not plans.survivors


def test_a_result_with_json_documents_can_be_typed_in(shop: ConnectionInfo) -> None:
    reference = """SELECT 'a' AS k, jsonb_build_object('red', 2, 'tags', jsonb_build_array('x')) AS doc, '[{"a": 1}]'::json AS arr"""
    with shop.connect("shop") as conn:
        typed = mutants.literal_mutant(conn, {"kind": "result"}, reference)
        assert typed is not None
        assert conn.execute(typed.sql).fetchall() == conn.execute(reference).fetchall()
