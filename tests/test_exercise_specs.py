"""Every exercise of the course: its stored fingerprint is current, its reference solution
passes, and its check rejects plausible wrong answers (no rows; a row missing)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import checker, refresh
from labkit.exercises.fingerprint import canonical, fingerprint
from labkit.servers.base import ConnectionInfo

SOLUTIONS = refresh.all_solutions()


def test_fingerprints_are_current(shop: ConnectionInfo) -> None:
    with shop.connect("shop") as conn:
        assert refresh.stale(conn) == []


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.exercise for s in SOLUTIONS])
def test_reference_passes_and_wrong_answers_fail(solution: refresh.Solution, shop: ConnectionInfo) -> None:
    spec = checker.spec(solution.exercise)
    with shop.connect("shop") as conn:
        assert checker.evaluate(conn, solution.exercise, solution.sql).passed
        if spec.get("kind", "result") != "result":
            assert not checker.evaluate(conn, solution.exercise, "SELECT 1").passed
            return
        reference = solution.sql.strip().rstrip(";")
        for wrong in (f"SELECT * FROM ({reference}) AS s WHERE false", f"SELECT * FROM ({reference}) AS s OFFSET 1"):
            assert not checker.evaluate(conn, solution.exercise, wrong).passed, wrong


def test_canonical_fingerprint_ignores_only_the_order_the_check_ignores() -> None:
    rows = [(3, "ann"), (3, "bob"), (1, "cy")]
    swapped_ties = [(3, "bob"), (3, "ann"), (1, "cy")]
    reversed_keys = [(1, "cy"), (3, "ann"), (3, "bob")]

    def canon(result: list[tuple[int, str]], order: str | list[str]) -> list[str]:
        return canonical(fingerprint(["orders", "username"], result, "salt"), order).rows

    assert canon(rows, ["orders"]) == canon(swapped_ties, ["orders"])
    assert canon(rows, ["orders"]) != canon(reversed_keys, ["orders"])  # the key order still counts
    assert canon(rows, "any") == canon(reversed_keys, "any")
    assert canon(rows, "all") != canon(swapped_ties, "all")


@pytest.mark.parametrize(("constraint", "passes"), [
    ("CHECK (reserved_quantity >= 0)", True),
    ("CHECK (stock_quantity >= 0 AND reserved_quantity >= 0)", True),  # says more, means the same beside valid_stock
    ("CHECK (0 <= reserved_quantity)", True),  # the same condition, written the other way round
    ("CHECK (stock_quantity >= 0)", False),  # a negative reservation still gets in
    ("CHECK (reserved_quantity > 0)", False),  # zero is not negative (and the shop has such rows)
    ("CHECK (reserved_quantity >= 0) NOT VALID", False),  # the rows already there stay unchecked
])  # fmt: skip
def test_a_check_constraint_exercise_tests_what_the_condition_means(shop: ConnectionInfo, constraint: str, passes: bool) -> None:
    with shop.connect("shop") as conn:
        answer = f"ALTER TABLE products ADD CONSTRAINT no_negative_stock {constraint}"
        assert checker.evaluate(conn, "01.4", answer, count_attempt=False).passed is passes


CANCEL = ("WITH cancelled AS (UPDATE orders SET status = 'cancelled' "
          "WHERE status = 'pending' AND metadata->>'channel' IN ('android', 'ios') RETURNING id, metadata->>'channel' AS channel), "
          "pending AS (SELECT id, metadata->>'channel' AS channel FROM orders "
          "WHERE status = 'pending') SELECT p.channel, (SELECT count(*) FROM cancelled c WHERE c.channel = p.channel) AS cancelled, "
          "{still} AS still_pending FROM pending p GROUP BY p.channel ORDER BY p.channel")
PER_ORDER = ("WITH per_order AS {how} (SELECT user_id, order_number, total_amount FROM orders) SELECT p.order_number, p.total_amount, "
             "(SELECT round(avg(q.total_amount), 2) FROM per_order q WHERE q.user_id = p.user_id) AS customer_average "
             "FROM per_order p WHERE p.order_number = 'ORD-2501-000042'")
WALK = ("WITH RECURSIVE walk (id, parent_id, name, steps, path) AS (SELECT id, parent_id, name, 0, ARRAY[id] FROM categories "
        "WHERE name = 'Tents' UNION ALL SELECT c.id, c.parent_id, c.name, w.steps + 1, w.path || c.id FROM walk w "
        "JOIN categories c ON (c.parent_id = w.id OR c.id = w.parent_id) AND {guard}) SELECT name, steps FROM walk ORDER BY steps, name")


@pytest.mark.parametrize(("exercise", "answer", "passes"), [
    ("01.2", "SELECT order_number, total_amount, trunc(total_amount / 3, 2) AS instalment, "
             "total_amount - 2 * trunc(total_amount / 3, 2) AS last_instalment FROM orders ORDER BY order_number LIMIT 8", False),
    ("01.5", "DELETE FROM users WHERE tags IS NULL; ALTER TABLE users ALTER COLUMN tags SET NOT NULL", False),  # loses users
    ("01.5", "UPDATE users SET tags = '{}'; ALTER TABLE users ALTER COLUMN tags SET NOT NULL", False),  # loses everyone's tags
    ("01.5", "UPDATE users SET tags = coalesce(tags, '{}'); ALTER TABLE users ALTER COLUMN tags SET NOT NULL", True),
    ("01.6", "SELECT created_at::date AS day, count(*) AS orders FROM orders "
             "WHERE created_at::date BETWEEN '2025-01-01' AND '2025-01-07' GROUP BY 1 ORDER BY 1", False),  # UTC days
    ("01.6", "SELECT (created_at AT TIME ZONE 'Asia/Tokyo')::date AS day, count(*) AS orders FROM orders "
             "WHERE created_at >= '2025-01-01 00:00 Asia/Tokyo' AND created_at < '2025-01-08 00:00 Asia/Tokyo' "
             "GROUP BY 1 ORDER BY 1", True),
    ("02.5", WALK.format(guard="NOT c.id = ANY (w.path)"), True),  # a path array instead of CYCLE
    ("02.5", WALK.format(guard="w.steps < 3"), False),  # a depth limit ends the loop but walks back and forth
    ("02.6", CANCEL.format(still="count(*)"), False),  # the snapshot before the update
    ("02.6", CANCEL.format(still="count(*) FILTER (WHERE p.id NOT IN (SELECT id FROM cancelled))"), True),
    ("02.6", "SELECT metadata->>'channel' AS channel, count(*) FILTER (WHERE metadata->>'channel' IN ('android', 'ios')) AS cancelled, "
             "count(*) FILTER (WHERE metadata->>'channel' NOT IN ('android', 'ios')) AS still_pending FROM orders "
             "WHERE status = 'pending' GROUP BY 1 ORDER BY 1", False),  # the right numbers, nothing cancelled
    ("02.7", PER_ORDER.format(how=""), False),  # referenced twice: computed in full
    ("02.7", PER_ORDER.format(how="NOT MATERIALIZED"), True),
])  # fmt: skip
def test_schema_and_cte_exercises_reject_the_traps_they_teach(shop: ConnectionInfo, exercise: str, answer: str, passes: bool) -> None:
    with shop.connect("shop") as conn:
        assert checker.evaluate(conn, exercise, answer, count_attempt=False).passed is passes


def test_a_sale_must_neither_lose_an_update_nor_oversell(shop: ConnectionInfo) -> None:
    first = "product_id = (SELECT product_id FROM inventory ORDER BY product_id LIMIT 1)"
    with shop.connect("shop") as conn:

        def passes(answer: str) -> bool:
            return checker.evaluate(conn, "06.1", answer, count_attempt=False).passed

        assert passes(f"UPDATE inventory SET quantity = quantity - 123 WHERE {first} AND quantity >= 123")
        # the value read once, written back by every checkout: the second and third sales are lost
        assert not passes(f"UPDATE inventory SET quantity = 123 WHERE {first} AND quantity >= 123")
        # without the stock test the third checkout sells stock that is not there
        assert not passes(f"UPDATE inventory SET quantity = quantity - 123 WHERE {first}")
        # '>' keeps the last 123 units unsold
        assert not passes(f"UPDATE inventory SET quantity = quantity - 123 WHERE {first} AND quantity > 123")
        # without the product condition every row with enough stock is sold from
        assert not passes("UPDATE inventory SET quantity = quantity - 123 WHERE quantity >= 123")


MOVE_STOCK = "CREATE FUNCTION move_stock(from_product uuid, to_product uuid, units int) RETURNS void LANGUAGE sql AS $$ {} $$"
RETRY = (
    "CREATE FUNCTION run_with_retry(body text, max_attempts int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
    "FOR attempt IN 1..max_attempts LOOP BEGIN EXECUTE body; RETURN attempt; EXCEPTION WHEN {} THEN {} END; END LOOP; END $$"
)
CATEGORIES = "(12, 1, 'Mobile phones', 'electronics-phones'), (1000, 9, 'Microphones', 'electronics-audio-microphones')"


@pytest.mark.parametrize(
    ("exercise", "wrong"),
    [
        ("06.2", f"INSERT INTO categories (id, parent_id, name, slug) VALUES {CATEGORIES} ON CONFLICT DO NOTHING"),
        ("06.2", f"MERGE INTO categories c USING (VALUES {CATEGORIES}) AS n (id, parent_id, name, slug) ON c.slug = n.slug "
                 "WHEN MATCHED THEN UPDATE SET name = n.name WHEN NOT MATCHED THEN INSERT VALUES (n.id, n.parent_id, n.name, n.slug)"),
        ("06.4", "SET statement_timeout = '2s'; ALTER TABLE orders ADD COLUMN gift_note text"),
        ("06.4", "SET lock_timeout = '5s'; ALTER TABLE orders ADD COLUMN gift_note text"),
        ("06.5", MOVE_STOCK.format("UPDATE inventory SET quantity = quantity - units WHERE product_id = from_product; "
                                   "UPDATE inventory SET quantity = quantity + units WHERE product_id = to_product;")),
        ("06.6", RETRY.format("OTHERS", "IF attempt = max_attempts THEN RAISE; END IF;")),
        ("06.6", RETRY.format("serialization_failure OR deadlock_detected", "NULL;")),
        ("06.6", RETRY.format("serialization_failure", "IF attempt = max_attempts THEN RAISE; END IF;")),
    ],
)  # fmt: skip
def test_concurrency_exercises_reject_what_breaks_under_concurrency(shop: ConnectionInfo, exercise: str, wrong: str) -> None:
    """Answers right in one session but wrong with several (MERGE, the opposite lock order, retrying every error …)."""
    with shop.connect("shop") as conn:
        assert not checker.evaluate(conn, exercise, wrong, count_attempt=False).passed


def test_an_unknown_policy_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('answer_99_1 = """SELECT 1"""')
    cell.metadata["tags"] = ["solution"]
    cell.metadata["labkit"] = {"order_by": ["n"]}  # a typo for "order"
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "99-typo.ipynb")
    with pytest.raises(ValueError, match=r"unknown policy key.*order_by"):
        refresh.solutions(tmp_path / "99-typo.ipynb")


ACTING_USER = "NULLIF(current_setting('app.current_user_id', true), '')::uuid"
DEFINER = (
    "CREATE FUNCTION recent_order_count(customer uuid) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER {setting} AS $$ BEGIN "
    "RETURN (SELECT count(*) FROM orders WHERE user_id = customer AND created_at >= labkit_today() - 30); END $$; {revoke}"
)
REVOKE = "REVOKE EXECUTE ON FUNCTION recent_order_count(uuid) FROM PUBLIC"


@pytest.mark.parametrize(("exercise", "answer"), [
    ("12.2", "GRANT SELECT ON products TO PUBLIC"),  # cost and stock still readable
    ("12.2", "GRANT SELECT (sku, name, description, price, categories), UPDATE ON products TO PUBLIC"),  # still writable
    ("12.3", f"CREATE POLICY p ON order_items FOR SELECT USING (EXISTS (SELECT FROM orders o "
             f"WHERE o.id = order_items.order_id AND o.user_id = {ACTING_USER}))"),  # RLS never enabled
    ("12.3", f"ALTER TABLE order_items ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON order_items FOR SELECT USING ("
             f"EXISTS (SELECT FROM orders o WHERE o.id = order_items.order_id AND o.user_id = {ACTING_USER}) "
             f"OR EXISTS (SELECT FROM users u WHERE u.id = {ACTING_USER} AND u.role = 'admin'))"),  # guests see their own
    ("12.3", "ALTER TABLE order_items ENABLE ROW LEVEL SECURITY; CREATE POLICY p ON order_items FOR SELECT USING (EXISTS ("
             "SELECT FROM orders o WHERE o.id = order_items.order_id "
             "AND o.user_id = current_setting('app.current_user_id', true)::uuid))"),  # an empty setting fails the cast
    ("12.4", f"ALTER TABLE orders ENABLE ROW LEVEL SECURITY; CREATE POLICY s ON orders FOR SELECT USING (user_id = {ACTING_USER}); "
             f"CREATE POLICY u ON orders FOR UPDATE USING (user_id = {ACTING_USER} AND status = 'pending')"),  # no WITH CHECK
    ("12.4", f"ALTER TABLE orders ENABLE ROW LEVEL SECURITY; CREATE POLICY s ON orders FOR SELECT USING (user_id = {ACTING_USER}); "
             f"CREATE POLICY u ON orders FOR UPDATE USING (user_id = {ACTING_USER} AND status = 'pending') "
             "WITH CHECK (status = 'cancelled')"),  # orders can be handed to another user
    ("12.5", f"ALTER TABLE user_events ENABLE ROW LEVEL SECURITY; CREATE POLICY own ON user_events USING (user_id = {ACTING_USER})"),
    ("12.6", DEFINER.format(setting="", revoke=REVOKE)),  # the caller's search_path is used
    ("12.6", DEFINER.format(setting="SET search_path = public", revoke=REVOKE)),  # pg_temp, not listed, comes first
    ("12.6", DEFINER.format(setting="SET search_path = public, pg_temp", revoke="")),  # everyone may still call it
    ("12.7", "CREATE SCHEMA billing; ALTER DEFAULT PRIVILEGES IN SCHEMA billing REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"),
])  # fmt: skip
def test_security_exercises_reject_the_traps_they_teach(shop: ConnectionInfo, exercise: str, answer: str) -> None:
    with shop.connect("shop") as conn:
        assert not checker.evaluate(conn, exercise, answer, count_attempt=False).passed


# -- hints -------------------------------------------------------------------------------------
# Clauses that are an answer's key expression wherever a reference solution uses them.
KEY_CLAUSES = ("over (", "partition by", "with recursive", "for update", "skip locked", "on conflict", "do update", "excluded.",
               "referencing", "for each", "partition of", "for values", "filter (", "not exists", "select distinct", "check (",
               "lateral", "union all")  # fmt: skip
KEY_OPERATORS = ("@>", "<@", "@@", "#>>", "#>", "->>", "->", "?|", "?&", "||")


def key_expressions(sql: str) -> set[str]:
    """What gives a reference solution away, as lower-case patterns (regexes): every function it calls
    (``name(``), every cast (``::type``), its distinctive operators (jsonb, text search, concatenation)
    and its distinctive clauses (window, recursion, locking, upsert, trigger and partition syntax)."""
    import pglast
    from pglast import ast

    from labkit.exercises import structure

    found: set[str] = set()
    for node in structure.walk(pglast.parse_sql(sql)):
        if isinstance(node, (ast.FuncCall, ast.CreateTrigStmt)) and node.funcname:
            found.add(rf"\b{re.escape(node.funcname[-1].sval.lower())}\s*\(")
        if isinstance(node, ast.TypeCast) and node.typeName.names:
            found.add(rf"::\s*{re.escape(node.typeName.names[-1].sval.lower())}\b")
        if isinstance(node, ast.A_Expr) and node.name and (op := node.name[-1].sval) in (*KEY_OPERATORS, "?"):
            found.add(r"\?\s*'" if op == "?" else rf"(?<![-@#<>|?&]){re.escape(op)}(?![-@#<>|?&])")
    normalized = " ".join(sql.lower().split())
    found.update(re.escape(clause) for clause in KEY_CLAUSES if clause in normalized)
    return found


def test_the_key_expressions_of_a_solution_are_found() -> None:
    patterns = key_expressions("SELECT o.id, ROW_NUMBER() OVER (PARTITION BY u.id ORDER BY o.created_at) AS n, p ? 'a', "
                               "p->>'b', x::date FROM orders o JOIN users u ON true FOR UPDATE SKIP LOCKED")  # fmt: skip
    for giveaway in ("row_number() over", "over (order", "partition by user", "profile ? 'address'", "profile->>'x'", "created_at::date",
                     "for update skip locked"):  # fmt: skip
        assert any(re.search(p, giveaway) for p in patterns), giveaway
    for harmless in ("Which rows are the active ones?", "number the rows in time order", "a date, not a timestamp"):
        assert not any(re.search(p, harmless.lower()) for p in patterns), harmless


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.exercise for s in SOLUTIONS])
def test_hints_come_in_levels_and_the_first_does_not_give_the_answer_away(solution: refresh.Solution) -> None:
    hints = solution.policy.get("hints", [])
    assert len(hints) >= 2 and all(isinstance(h, str) and h.strip() for h in hints), hints
    assert len(set(hints)) == len(hints), "each level says something new"
    assert checker.spec(solution.exercise).get("hints") == hints, "run 'labkit exercises refresh'"
    first = hints[0].lower()
    giveaways = [p for p in key_expressions(solution.sql) if re.search(p, first)]
    assert not giveaways, f"hint 1 of {solution.exercise} holds a key expression of the answer ({giveaways}): {hints[0]!r}"
