"""A hostile class: submissions that try to crash the run, starve the server, fool the checks.

One grading run over a folder of such submissions (against the real lab server) must complete,
list each culprit in its own row, and give the correct submissions next to them full marks.
Then the checks themselves: state that cannot carry over, a catalog that cannot be shadowed,
one statement per answer, results right only by luck, typed-in results.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import checker, mutants, refresh, shuffled
from labkit.grading import gradebook, grader, hidden, sandbox, submission
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXERCISES = ["00.1", "00.2", "01.4", "03.1", "03.2", "03.3", "05.2", "05.3"]
LUCKY_03_1 = ("SELECT o.order_number, ROW_NUMBER() OVER () AS n FROM orders o JOIN users u ON u.id = o.user_id "
              "WHERE u.username = 'aisha.hall4018' ORDER BY n")  # fmt: skip
LONG_NAME = "n" * 254
NAMES = ["alice", "alice.", '=HYPERLINK("evil.example","x")', "+cmd|' -C calc'!A0", "-2+3", "@SUM(1+1)",
         "<img src=x onerror=alert(1)> **bold** [link](evil.example)", LONG_NAME]  # fmt: skip


@pytest.fixture(scope="module")
def ref() -> dict[str, str]:
    return {s.exercise: s.sql for s in refresh.all_solutions(NOTEBOOKS)}


def _cells(answers: dict[str, str]) -> list[nbformat.NotebookNode]:
    return [nbformat.v4.new_code_cell(f'answer_{e.replace(".", "_")} = """\n{sql}\n"""') for e, sql in answers.items()]


def _notebook(path: Path, answers: dict[str, str], extra: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = _cells(answers) + [nbformat.v4.new_code_cell(code) for code in extra]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, ref: dict[str, str]) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    everything = {e: ref[e] for e in EXERCISES}
    _notebook(root / "correct" / "work.ipynb", everything)
    _notebook(root / "correct-too" / "work.ipynb", everything)
    # 1. an answer that crashes PostgreSQL's parser (pglast) in the grader
    _notebook(root / "crasher" / "03.ipynb", {"03.1": "SELECT 1 AS x" + " UNION ALL SELECT 1" * 20000, "03.2": ref["03.2"]})
    # 3. shared server resources: locks, memory, disk
    _notebook(root / "advisory" / "00.ipynb",
              {"00.1": "SELECT count(pg_advisory_xact_lock(g)) AS active_users FROM generate_series(1, 100000) g"})  # fmt: skip
    _notebook(root / "lock-table" / "01.ipynb",
              {"01.4": "DO $$ BEGIN FOR i IN 1..100000 LOOP EXECUTE format('CREATE TEMP TABLE t%s ()', i); END LOOP; END $$",
               "00.1": ref["00.1"]})  # fmt: skip
    _notebook(root / "memory-hog" / "00.ipynb",
              {"00.1": "SELECT length(string_agg(repeat('x', 1000), '')) AS active_users FROM generate_series(1, 900000)"})  # fmt: skip
    _notebook(root / "disk-hog" / "01.ipynb",
              {"01.4": "CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 5000000) g",
               "00.1": ref["00.1"]})  # fmt: skip
    # 4. results of unbounded size
    _notebook(root / "huge-results" / "03.ipynb",
              {"03.1": "SELECT repeat('x', 1000000) AS order_number, g AS n FROM generate_series(1, 1000) g",
               "03.2": "SELECT g AS month, g AS revenue, g AS running_total FROM generate_series(1, 3000000) g",
               "03.3": ref["03.3"]})  # fmt: skip
    # 7. state carried to later exercises; 9. several statements; §4 right by luck; 10. not sargable
    _notebook(root / "escaper" / "00.ipynb",
              {"00.1": "COMMIT; ALTER TABLE products ADD CONSTRAINT cost_below_price CHECK (cost < price)",
               "00.2": "COMMIT; ALTER ROLE CURRENT_USER SET enable_seqscan = off",
               "01.4": "SELECT 1", "05.3": "SELECT 1"})  # fmt: skip
    _notebook(root / "role-setter" / "01.ipynb", {"01.4": "ALTER ROLE CURRENT_USER SET enable_seqscan = off", "05.3": "SELECT 1"})
    correlated = ("SELECT o.order_number, (SELECT count(*) FROM orders p "
                  "WHERE p.user_id = o.user_id AND p.created_at <= o.created_at) AS n "
                  "FROM orders o JOIN users u ON u.id = o.user_id WHERE u.username = 'aisha.hall4018' ORDER BY n")  # fmt: skip
    _notebook(root / "multi" / "03.ipynb", {"03.1": correlated + "; SELECT row_number() OVER ()"})
    _notebook(root / "lucky" / "03.ipynb", {"03.1": LUCKY_03_1})
    _notebook(root / "not-sargable" / "05.ipynb",
              {"05.2": "SELECT count(*) FROM orders WHERE date_trunc('month', created_at) = '2025-03-01'"})  # fmt: skip
    # 5. and 6. names
    for name in NAMES:
        _notebook(root / name / "00.ipynb", {"00.1": ref["00.1"]})
    _notebook(root / "bob" / "00.ipynb", {"00.1": ref["00.1"]})
    _notebook(root / "bob.ipynb", {"00.1": "SELECT 0 AS active_users"})
    # 2. files that are not notebooks
    (root / "json-not-notebook.ipynb").write_text('{"hello": "world"}')
    (root / "deep.ipynb").write_text("[" * 200_000 + "]" * 200_000)
    (root / "old-format.ipynb").write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}}))
    os.symlink("/dev/zero", root / "zero.ipynb")
    null_source = root / "null-source" / "00.ipynb"
    _notebook(null_source, {"00.1": ref["00.1"]})
    document = json.loads(null_source.read_text())
    document["cells"].append({"cell_type": "code", "source": None, "metadata": {}, "outputs": [], "execution_count": None})
    null_source.write_text(json.dumps(document))
    (root / "directory-notebook" / "x.ipynb").mkdir(parents=True)
    _notebook(root / "directory-notebook" / "00.ipynb", {"00.1": ref["00.1"]})
    (root / "linker").mkdir()
    os.symlink(NOTEBOOKS / "03-window-functions.ipynb", root / "linker" / "03.ipynb")
    os.symlink(NOTEBOOKS, root / "linked-folder")
    # 11. what a top-to-bottom run leaves
    _notebook(root / "magic" / "00.ipynb", {}, extra=(
        f'%%time\nanswer_00_1 = """{ref["00.1"]}"""',
        'def later():\n    answer_00_2 = """SELECT 1"""',
        'if False:\n    answer_00_1 = """SELECT 0 AS active_users"""',
        f'answer_03_2 = """{ref["03.2"]}"""\nfor _ in range(2):\n    answer_03_2 = """SELECT 1"""',
    ))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def graded(shop: ConnectionInfo, folder: Path) -> Iterator[tuple[dict[str, grader.SubmissionGrade], float]]:
    options = grader.Options(statement_timeout=30.0, time_limit=120.0, workers=2, memory_limit=150 * 1024**2,
                             disk_limit=64 * 1024**2, max_answer_chars=1_000_000)  # fmt: skip
    started = time.monotonic()
    results = grader.grade_all(shop, submission.collect(folder), EXERCISES, options, progress=False)
    yield {r.student: r for r in results}, time.monotonic() - started


def _feedback(result: grader.SubmissionGrade, exercise: str) -> str:
    return " ".join(result.grades[exercise].feedback)


def test_the_correct_submissions_keep_full_marks_beside_a_hostile_class(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    for student in ("correct", "correct-too"):
        assert results[student].total == len(EXERCISES), {e: g.feedback for e, g in results[student].grades.items() if g.feedback}
        assert results[student].graded and not results[student].problems


def test_a_parser_crash_costs_its_author_that_answer_only(graded, shop: ConnectionInfo) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    crasher = results["crasher"]
    assert "crashed the checker" in _feedback(crasher, "03.1")
    assert any("03.1 crashed the checker" in p for p in crasher.problems)
    assert crasher.grades["03.2"].passed  # the next answer is checked by a new checker process
    assert sandbox.leftovers(shop) == []


def test_a_long_answer_is_refused_before_it_is_parsed(shop: ConnectionInfo) -> None:
    with shop.connect(database.SHOP_DB) as conn:
        result = checker.evaluate(conn, "03.1", "SELECT 1 AS x" + " UNION ALL SELECT 1" * 20000, count_attempt=False)
    assert not result.passed and "characters long" in result.feedback[0]


def test_unreadable_files_are_problems_in_their_rows(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    expected = {"json-not-notebook": "not a notebook", "deep": "nested too deeply", "old-format": "not a notebook",
                "zero": "link out of the submissions folder", "linker": "outside the submissions folder",
                "linked-folder": "link out of the submissions folder", "directory-notebook": "not a regular file"}  # fmt: skip
    for student, words in expected.items():
        assert any(words in p for p in results[student].problems), (student, results[student].problems)
    assert results["linker"].total == 0  # the instructor's notebook behind the link was not read
    for student in ("null-source", "directory-notebook"):
        assert results[student].grades["00.1"].passed


def test_locks_memory_and_disk_are_bounded_per_submission(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    assert "permission denied for function pg_advisory_xact_lock" in _feedback(results["advisory"], "00.1")
    lock_table = results["lock-table"]
    assert "shared server resource" in _feedback(lock_table, "01.4") and "out of shared memory" in _feedback(lock_table, "01.4")
    assert lock_table.grades["00.1"].passed and lock_table.graded
    assert "more than 150 MB of server memory" in _feedback(results["memory-hog"], "00.1")
    assert "wrote more than 64 MB" in _feedback(results["disk-hog"], "01.4")
    assert results["disk-hog"].grades["00.1"].passed


def test_unbounded_results_are_wrong_answers_within_the_time_limit(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    huge = results["huge-results"]
    assert "larger than 8 MB" in _feedback(huge, "03.1")
    assert "more than 13 row(s)" in _feedback(huge, "03.2") or "more than" in _feedback(huge, "03.2")
    assert huge.grades["03.3"].passed
    assert huge.seconds < 60


def test_names_are_distinct_safe_and_neutralised(graded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    assert {"bob", "bob.ipynb", *NAMES} <= set(results)
    assert results["bob"].total == 1 and results["bob.ipynb"].total == 0  # never merged
    assert any("share the name 'bob'" in p for p in results["bob"].problems + results["bob.ipynb"].problems)
    ordered = [results[k] for k in sorted(results)]
    gradebook.write_csv(tmp_path / "grades.csv", ordered, EXERCISES)
    with (tmp_path / "grades.csv").open() as handle:
        rows = list(csv.reader(handle))
    for row in rows:
        for value in row:
            assert not value.startswith(("=", "+", "-", "@")), row
    files = gradebook.write_feedback(tmp_path / "feedback", ordered, EXERCISES)
    assert len({f.name.casefold() for f in files}) == len(ordered)
    assert all(len(f.name) <= 100 for f in files)
    text = next(f.read_text() for f in files if "bold" in f.read_text())
    assert "\\<img" in text and not re.search(r"(?<!\\)<img|(?<!\\)\]\(evil|(?<!\\)\*\*bold", text)


def test_state_cannot_carry_from_one_exercise_to_the_next(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    escaper = results["escaper"]
    assert escaper.total == 0
    assert _feedback(escaper, "00.1").startswith("Leave out COMMIT") and _feedback(escaper, "00.2").startswith("Leave out COMMIT")
    # the constraint 00.1 tried to commit is not there for 01.4: its state check finds no such constraint
    assert not escaper.grades["01.4"].passed and ("0 row(s)" in _feedback(escaper, "01.4") or "column" in _feedback(escaper, "01.4"))
    assert "Index" in _feedback(escaper, "05.3")
    setter = results["role-setter"]
    assert setter.total == 0 and "Index" in _feedback(setter, "05.3")


def test_one_statement_and_no_luck(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    assert "holds 2 statements" in _feedback(results["multi"], "03.1")
    assert _feedback(results["lucky"], "03.1").startswith(checker.BY_LUCK)
    assert "end to end" in _feedback(results["not-sargable"], "05.2")


def test_the_assignment_a_run_leaves_is_graded(graded) -> None:  # type: ignore[no-untyped-def]
    results, _ = graded
    magic = results["magic"]
    assert magic.grades["00.1"].passed  # after %%time, and not the dead branch's
    assert _feedback(magic, "00.2").startswith("No answer found")  # a function body never ran
    assert "cannot be told without running it" in _feedback(magic, "03.2")


# -- the checks themselves ---------------------------------------------------------------------
def test_a_self_check_does_not_accept_a_result_right_by_luck(shop: ConnectionInfo) -> None:
    assert shuffled.ensure(shop)
    with pytest.raises(checker.ExerciseFailed) as failed:
        checker.check(shop, database.SHOP_DB, "03.1", LUCKY_03_1)
    assert failed.value.feedback[0] == checker.BY_LUCK
    assert "assigned to different rows" in " ".join(failed.value.feedback)
    reference = next(s.sql for s in refresh.all_solutions(NOTEBOOKS) if s.exercise == "03.1")
    assert checker.check(shop, database.SHOP_DB, "03.1", reference).passed


SHADOWS = {
    "07.2": ("CREATE VIEW public.pg_proc AS SELECT oid, 'i'::\"char\" AS provolatile, prolang FROM pg_catalog.pg_proc; "
             "SET search_path = public, pg_catalog; "
             "CREATE FUNCTION net_price(gross numeric, rate numeric) RETURNS numeric LANGUAGE sql RETURN round(gross / (1 + rate), 2)"),
    "01.4": ("CREATE FUNCTION public.pg_get_constraintdef(oid) RETURNS text LANGUAGE sql AS $$ SELECT 'CHECK (reserved_quantity >= 0)' $$; "
             "SET search_path = public, pg_catalog; "
             "ALTER TABLE products ADD CONSTRAINT no_negative_stock CHECK (reserved_quantity IS NOT NULL)"),
    "09.3": ("CREATE TABLE audit_log_2025_08 (LIKE audit_log); "
             "CREATE VIEW public.pg_inherits AS SELECT 'audit_log_2025_08'::regclass::oid AS inhrelid, "
             "'audit_log'::regclass::oid AS inhparent; "
             "CREATE FUNCTION public.pg_get_expr(pg_node_tree, oid) RETURNS text LANGUAGE sql "
             "AS $$ SELECT 'FOR VALUES FROM (''2025-08-01 00:00:00+00'') TO (''2025-09-01 00:00:00+00'')' $$; "
             "SET search_path = public, pg_catalog"),
}  # fmt: skip


@pytest.mark.parametrize("exercise", sorted(SHADOWS))
def test_checks_read_the_real_catalog(shop: ConnectionInfo, exercise: str) -> None:
    spec = {**checker.spec(exercise), "statements": "many"}  # an exercise that allows several statements
    with shop.connect(database.SHOP_DB) as conn:
        result = checker.evaluate(conn, exercise, SHADOWS[exercise], spec_=spec, count_attempt=False)
    assert not result.passed, exercise


def test_transaction_control_and_extra_statements_are_refused_before_they_run(shop: ConnectionInfo) -> None:
    with shop.connect(database.SHOP_DB) as conn:
        for answer in ("SELECT 1 AS active_users; COMMIT", "SAVEPOINT a; SELECT 1 AS active_users", "END; SELECT 1 AS active_users"):
            result = checker.evaluate(conn, "00.1", answer, count_attempt=False)
            assert result.feedback[0].startswith("Leave out"), (answer, result.feedback)
        two = checker.evaluate(conn, "00.1", "SELECT 1 AS active_users; SELECT 2 AS active_users", count_attempt=False)
        assert "holds 2 statements" in two.feedback[0]


def test_typed_in_results_fail_on_the_hidden_dataset(shop: ConnectionInfo) -> None:
    hidden.prepare(shop, 20261125, scale=0.1, progress=False)
    exercises = ["02.2", "02.3", "10.1"]
    expected = hidden.expected_specs(shop, NOTEBOOKS, exercises)
    references = {s.exercise: s.sql for s in refresh.all_solutions(NOTEBOOKS)}
    with shop.connect(database.SHOP_DB) as conn, shop.connect(hidden.HIDDEN_DB) as there:
        for exercise in exercises:
            typed = mutants.literal_mutant(conn, checker.spec(exercise), references[exercise])
            assert typed is not None
            assert checker.evaluate(conn, exercise, typed.sql, count_attempt=False).passed  # the course data is fooled …
            assert not checker.evaluate(there, exercise, typed.sql, spec_=expected[exercise], count_attempt=False).passed, exercise
            assert checker.evaluate(there, exercise, references[exercise], spec_=expected[exercise], count_attempt=False).passed
