"""The exercise checker on the real shop: policies, feedback, structure, state and plan checks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import checker as checking
from labkit.exercises import refresh, release
from labkit.servers.base import ConnectionInfo

TOP = "SELECT status::text AS status, count(*) AS n FROM orders GROUP BY status"


def _notebook(path: Path, solutions: dict[str, tuple[str, dict]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# Test"))
    for key, (sql, policy) in solutions.items():
        cell = nbformat.v4.new_code_cell(f'answer_{key.replace(".", "_")} = """{sql}"""')
        cell.metadata["tags"] = ["solution"]
        cell.metadata["labkit"] = policy
        nb.cells.append(cell)
        check = nbformat.v4.new_code_cell(f'shop.check("{key}", answer_{key.replace(".", "_")})')
        check.metadata["tags"] = ["check"]
        check.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "✓"}, execution_count=1)]
        nb.cells.append(check)
    nbformat.write(nb, path / "99-test.ipynb")
    return path


@pytest.fixture
def exercises(shop: ConnectionInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    notebooks = _notebook(tmp_path, {
        "99.1": (TOP + " ORDER BY n DESC, status", {"order": ["n"]}),
        "99.2": ("SELECT id, username FROM users ORDER BY created_at LIMIT 3", {"requires": ["order_by"], "hints": ["Sort by sign-up."]}),
        "99.3": ("SELECT user_id, rank() OVER (ORDER BY count(*) DESC) AS r FROM orders GROUP BY user_id ORDER BY r, user_id LIMIT 5",
                 {"requires": ["window_function"], "order": "all"}),
        "99.4": ("UPDATE products SET price = price * 2 WHERE sku LIKE 'EC%'",
                 {"kind": "state", "state_sql": "SELECT count(*) AS n, sum(price) AS total FROM products"}),
        "99.5": ("CREATE INDEX ON logs (level)", {"kind": "plan", "plan_sql": "SELECT count(*) FROM logs WHERE level = 'ERROR'",
                                                   "plan": {"uses": [["Index", "logs"]], "avoid": [["Seq Scan", "logs"]]}}),
    })  # fmt: skip
    monkeypatch.setattr(checking, "SPEC_DIR", tmp_path)
    checking.specs.cache_clear()
    with shop.connect("shop") as conn:
        refresh.refresh(conn, notebooks_dir=notebooks, spec_dir=tmp_path)
        yield conn
    checking.specs.cache_clear()


def test_correct_answers_pass_and_specs_hold_no_answer(exercises, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for key, sql in [(s.exercise, s.sql) for s in refresh.solutions(tmp_path / "99-test.ipynb")]:
        assert checking.evaluate(exercises, key, sql).passed, key
    text = (tmp_path / "99-test.json").read_text()
    for fragment in ("ORDER BY n DESC, status", "rank() OVER", "price * 2", "CREATE INDEX", "GROUP BY status", "delivered"):
        assert fragment not in text  # neither reference SQL nor expected values
    assert refresh.stale(exercises, notebooks_dir=tmp_path) == []


def test_wrong_order_is_reported_as_order(exercises) -> None:  # type: ignore[no-untyped-def]
    result = checking.evaluate(exercises, "99.1", TOP)
    assert not result.passed and "no ORDER BY" in result.feedback[0]
    assert checking.evaluate(exercises, "99.1", TOP + " ORDER BY n DESC").passed  # ties in key order are fine


def test_feedback_names_what_differs_without_the_answer(exercises) -> None:  # type: ignore[no-untyped-def]
    assert "column" in checking.evaluate(exercises, "99.1", "SELECT status::text AS status FROM orders").feedback[0]
    assert "row(s)" in checking.evaluate(exercises, "99.1", TOP + " HAVING count(*) > 500 ORDER BY n DESC").feedback[0]
    named = checking.evaluate(exercises, "99.1", "SELECT status::text AS s, count(*) AS n FROM orders GROUP BY 1 ORDER BY 2 DESC")
    assert "'status'" in named.feedback[0]
    wrong = checking.evaluate(exercises, "99.1", TOP.replace("count(*)", "count(*) + 1") + " ORDER BY n DESC")
    assert "'n'" in wrong.feedback[0] and "row 1" in wrong.feedback[1]
    failed = checking.evaluate(exercises, "99.1", "SELECT nope FROM orders")
    assert failed.feedback[0].startswith('ERROR:  column "nope" does not exist\nLINE 1: SELECT nope FROM orders\n')


def test_structure_is_checked_on_the_parse_tree(exercises) -> None:  # type: ignore[no-untyped-def]
    no_window = ("SELECT user_id, (SELECT count(*) FROM (SELECT user_id, count(*) c FROM orders GROUP BY 1) x "
                 "WHERE x.c > count(o.*)) + 1 AS r FROM orders o GROUP BY user_id ORDER BY r, user_id LIMIT 5")  # fmt: skip
    result = checking.evaluate(exercises, "99.3", no_window)
    assert any("window function" in line for line in result.feedback)


def test_locking_and_upsert_clauses_are_found_on_the_parse_tree() -> None:
    from labkit.exercises import structure

    claim = "UPDATE orders SET status = 'processing' WHERE id IN (SELECT id FROM orders WHERE status = 'pending' LIMIT 3 FOR UPDATE{})"
    assert structure.problems(claim.format(" SKIP LOCKED"), ["skip_locked"]) == []
    assert structure.problems(claim.format(""), ["skip_locked"]) and structure.problems(claim.format(" NOWAIT"), ["skip_locked"])
    upsert = "INSERT INTO categories VALUES (48, NULL, 'Gifts', 'gifts') ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name"
    merge = ("MERGE INTO categories c USING (VALUES (48, 'gifts')) AS n(id, slug) ON c.slug = n.slug "
             "WHEN NOT MATCHED THEN INSERT VALUES (n.id, NULL, 'Gifts', n.slug)")  # fmt: skip
    assert structure.problems(upsert, ["on_conflict"]) == []
    assert structure.problems(merge, ["on_conflict"]) == [
        "the exercise asks you to let the INSERT itself settle a conflict on a unique key (INSERT … ON CONFLICT)"
    ]


def test_a_data_modifying_cte_is_told_from_one_that_only_reads(shop: ConnectionInfo) -> None:
    changes = "WITH renamed AS (UPDATE categories SET name = name WHERE parent_id IS NULL RETURNING id) SELECT count(*) AS n FROM renamed"
    reads = "WITH roots AS (SELECT id FROM categories WHERE parent_id IS NULL) SELECT count(*) AS n FROM roots"  # same result
    spec = {"salt": "s", "read_only": False, "requires": ["data_modifying_cte"]}
    with shop.connect("shop") as conn:
        spec["expected"] = refresh.expected_for(conn, spec, changes)
        assert checking.evaluate(conn, "99.9", changes, spec_=spec, count_attempt=False).passed
        refused = checking.evaluate(conn, "99.9", reads, spec_=spec, count_attempt=False)
    assert refused.feedback == ["the exercise asks you to change the data in a CTE (WITH … AS (UPDATE/INSERT/DELETE … RETURNING …))"]


def test_hint_after_repeated_failures(exercises) -> None:  # type: ignore[no-untyped-def]
    for _ in range(checking.HINT_AFTER_FAILURES):
        result = checking.evaluate(exercises, "99.2", "SELECT id, username FROM users ORDER BY created_at DESC LIMIT 3")
    assert result.feedback[-1].startswith("Hint 1 of 1 for 99.2 (the concept): Sort by sign-up.")
    assert checking.hint("99.2").startswith("Hint 1 of 1")


def test_state_and_plan_checks_leave_the_shop_unchanged(exercises) -> None:  # type: ignore[no-untyped-def]
    before = exercises.execute("SELECT sum(price), count(*) FROM products").fetchone()
    assert checking.evaluate(exercises, "99.4", "UPDATE products SET price = price * 2 WHERE sku LIKE 'EC%'").passed
    assert not checking.evaluate(exercises, "99.4", "UPDATE products SET price = price * 3 WHERE sku LIKE 'EC%'").passed
    assert checking.evaluate(exercises, "99.5", "CREATE INDEX ON logs (level)").passed
    assert not checking.evaluate(exercises, "99.5", "CREATE INDEX ON logs (service)").passed
    assert exercises.execute("SELECT sum(price), count(*) FROM products").fetchone() == before
    assert exercises.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'logs'").fetchone() == (2,)


def test_a_state_check_of_several_statements_compares_the_last_result(shop: ConnectionInfo) -> None:
    state_sql = "SET LOCAL ROLE pg_read_all_data; SELECT current_user AS reader, sum(price) AS total FROM products"
    spec = {"kind": "state", "salt": "s", "state_sql": state_sql}
    answer = "UPDATE products SET price = price * 2 WHERE sku LIKE 'EC%'"
    with shop.connect("shop") as conn:
        spec["expected"] = refresh.expected_for(conn, spec, answer)
        assert len(spec["expected"]["columns"]) == 2  # reader, total: not the empty result of SET
        assert checking.evaluate(conn, "99.6", answer, spec_=spec, count_attempt=False).passed
        assert not checking.evaluate(conn, "99.6", answer.replace("* 2", "* 3"), spec_=spec, count_attempt=False).passed


def test_check_raises_with_feedback_only(shop: ConnectionInfo, exercises) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(checking.ExerciseFailed) as raised:
        checking.check(shop, "shop", "99.1", "SELECT 1")
    assert raised.value._render_traceback_()[0] == "✗ Exercise 99.1: not yet."
    assert repr(checking.check(shop, "shop", "99.1", TOP + " ORDER BY n DESC")).startswith("✓ Exercise 99.1: correct. ")


def test_release_strips_solutions_and_keeps_the_rest(exercises, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path.with_name(f"{tmp_path.name}-release")  # beside the course folder: never inside it
    report = release.release(tmp_path, out)
    assert report.solutions == {"99-test.ipynb": 5} and report.written == ["99-test.ipynb"]
    nb = nbformat.read(out / "99-test.ipynb", as_version=4)
    text = json.dumps(nb)
    assert "ORDER BY n DESC" not in text and "CREATE INDEX" not in text
    assert 'answer_99_1 = """' in nb.cells[1].source and nb.cells[2].outputs == []
    assert nb.cells[0].source == "# Test"


def test_feedback_says_what_differs_in_terms_a_learner_can_act_on(shop: ConnectionInfo) -> None:
    base = "FROM orders o JOIN users u ON u.id = o.user_id WHERE u.username = 'aisha.hall4018'"
    with shop.connect("shop") as conn:

        def feedback(exercise: str, sql: str) -> str:
            return "\n".join(checking.evaluate(conn, exercise, sql, count_attempt=False).feedback)

        shuffled_rank = feedback("03.1", f"SELECT o.order_number, ROW_NUMBER() OVER (ORDER BY o.created_at DESC) AS n {base} ORDER BY n")
        assert "Column 'order_number': the same values as expected, assigned to different rows" in shuffled_rank
        assert "ORDER BY (and PARTITION BY) inside OVER" in shuffled_rank
        assert "Missing: 'n'" in feedback("03.1", f"SELECT o.order_number {base}")
        assert "Not asked for: 'extra'" in feedback("03.1", f"SELECT o.order_number, 1 AS n, 2 AS extra {base}")
        assert "too few" in feedback("03.1", f"SELECT o.order_number, ROW_NUMBER() OVER (ORDER BY o.created_at) AS n {base} LIMIT 3")
        assert "more than 11 row(s)" in feedback("03.1", "SELECT order_number, 1 AS n FROM orders")
        per_status = ("SELECT o.status, count(*) AS orders, sum(o.total_amount) AS value, sum(i.units) AS units FROM orders o "
                      "JOIN (SELECT order_id, sum(quantity) AS units FROM order_items GROUP BY order_id) i ON i.order_id = o.id "
                      "GROUP BY o.status")
        assert "sorted by 'status'" in feedback("00.5", per_status + " ORDER BY o.status DESC")
        error = feedback("00.1", "SELECT order_number,\n       nn\nFROM orders")
        assert error.splitlines()[:3] == ['ERROR:  column "nn" does not exist', "LINE 2:        nn", "               ^"]
        hinted = feedback("00.1", "SELECT o.order_numbr FROM orders o")
        assert "HINT:  Perhaps you meant" in hinted and "Traceback" not in hinted and "psycopg" not in hinted
        passed = checking.evaluate(conn, "03.1", next(s.sql for s in refresh.all_solutions() if s.exercise == "03.1"), count_attempt=False)
    assert repr(passed) == "✓ Exercise 03.1: correct. Next: Exercise 03.2 — Running total."
    assert checking.next_step("03.9").startswith("That was the last exercise of notebook 03")


def test_an_answer_with_no_rows_is_judged_on_its_columns(shop: ConnectionInfo) -> None:
    """A stream of no rows carries no column description; the check still names the columns the answer has."""
    from labkit.exercises import checker

    with shop.connect("shop") as conn:
        assert checker.run_query(conn, "SELECT 1 AS a, 2 AS b WHERE false") == (["a", "b"], [])
        feedback = checker.evaluate(conn, "03.1", "SELECT 1 AS nothing WHERE false").feedback
        assert any("Not asked for: 'nothing'" in line for line in feedback), feedback
        assert checker.run_query(conn, "SELECT 1 AS still_usable") == (["still_usable"], [(1,)])  # the transaction was left clean


def test_a_row_lock_requirement_wants_a_locking_clause() -> None:
    from labkit.exercises import structure

    assert structure.problems("SELECT product_id FROM inventory ORDER BY product_id FOR UPDATE", ["row_lock"]) == []
    assert structure.problems("SELECT i.product_id FROM inventory i JOIN products p ON p.id = i.product_id FOR NO KEY UPDATE OF i",
                              ["row_lock"]) == []  # fmt: skip
    assert structure.problems("SELECT product_id FROM inventory ORDER BY product_id", ["row_lock"]) == [
        "the exercise asks you to lock the rows you read (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE …)"
    ]


def test_a_catalog_answer_must_read_the_catalog_not_type_the_result_in() -> None:
    from labkit.exercises import structure

    typed_in = "SELECT * FROM (VALUES ('orders_pkey', 'btree')) AS t(index_name, method)"
    disguised = "WITH pg_index (index_name, method) AS (VALUES ('orders_pkey', 'btree')) SELECT * FROM pg_index"
    for answer in (typed_in, disguised):
        assert structure.problems(answer, ["reads_table"]) == [
            "the exercise asks you to compute the result from the database's tables or catalogs, not type it in"
        ]
    assert structure.problems("SELECT relname FROM pg_class JOIN pg_index ON indexrelid = pg_class.oid", ["reads_table"]) == []


def test_a_task_that_gives_its_data_wants_an_answer_computed_from_it() -> None:
    from labkit.exercises import structure

    computed = "WITH pools(db, waiting) AS (VALUES ('shop', 3), ('crm', 0)) SELECT db FROM pools WHERE waiting > 0"
    typed_in = ("WITH RECURSIVE unused(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM unused WHERE n < 1) "
                "SELECT * FROM (VALUES ('shop')) AS t(db)")
    ignored = "WITH pools(db, waiting) AS (VALUES ('shop', 3)) SELECT 'shop' AS db"
    assert structure.problems(computed, ["reads_given_data"]) == []
    for answer in (typed_in, ignored):
        assert structure.problems(answer, ["reads_given_data"]), answer
