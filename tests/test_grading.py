"""Grading a class for real: submissions made here, graded in sandboxes on the lab server.

Each kind of submission (correct, partial, wrong, failing SQL, destructive, hanging, Python
tricks, unreadable, fingerprint readers, hard-coded answers) must get exactly the points it
deserves, and the server, the shop and its template must be intact afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import refresh
from labkit.grading import gradebook, grader, hidden, sandbox, submission
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXERCISES = ["00.1", "00.2", "01.4", "03.1", "03.2", "03.3", "03.4", "05.2"]
MARKER = Path("/tmp") / f"labkit-grading-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def references() -> dict[str, str]:
    return {s.exercise: s.sql for s in refresh.all_solutions(NOTEBOOKS)}


def _notebook(path: Path, answers: dict[str, str], extra_code: tuple[str, ...] = ()) -> None:
    """A student notebook: the lab call, any extra code, one cell per answer (as the release's stubs)."""
    cells = [nbformat.v4.new_code_cell("import labkit\nshop = labkit.lab()")]
    cells += [nbformat.v4.new_code_cell(code) for code in extra_code]
    for exercise, sql in answers.items():
        cells.append(nbformat.v4.new_code_cell(f'answer_{exercise.replace(".", "_")} = """\n{sql}\n"""'))
        cells.append(nbformat.v4.new_code_cell(f'shop.check("{exercise}", answer_{exercise.replace(".", "_")})'))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def _hard_coded(info: ConnectionInfo, sql: str, order_by: str = "") -> str:
    """The reference result typed in as literals: right on the course data, wrong anywhere else."""
    with info.connect(database.SHOP_DB) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
    values = ", ".join("(" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {values}) AS t({', '.join(names)}) {order_by}".replace('"', "'")


@pytest.fixture(scope="module")
def submissions(tmp_path_factory: pytest.TempPathFactory, references: dict[str, str], shop: ConnectionInfo) -> Path:
    folder = tmp_path_factory.mktemp("submissions")
    ref = references
    _notebook(folder / "correct" / "work.ipynb", {e: ref[e] for e in EXERCISES})
    # The released notebooks with the reference answers typed into the stubs: a real student's files.
    for name in ("00-welcome", "01-schema-design", "03-window-functions", "05-indexing-explain"):
        _notebook(folder / "released" / f"{name}.ipynb", {e: ref[e] for e in EXERCISES if e.startswith(name[:2])})
    _notebook(
        folder / "partial" / "03.ipynb",
        {"03.1": ref["03.1"], "03.2": ref["03.2"], "03.3": ref["03.3"].replace("BY month, day", "BY month DESC, day"), "03.4": "-- later"},
    )
    wrong = {"03.1": "SELECT 1 AS n", "03.2": "SELECT order_number FROM orders", "00.1": "SELECT 0 AS active_users"}
    _notebook(folder / "wrong" / "03.ipynb", wrong)
    _notebook(folder / "sql-errors" / "03.ipynb", {"03.1": "SELEC order_number FROM orders", "03.2": "SELECT no_such_column FROM orders"})
    _notebook(
        folder / "destructive" / "03.ipynb",
        {
            "03.1": "DROP TABLE orders CASCADE",
            "03.2": "ROLLBACK; ALTER ROLE postgres NOSUPERUSER",  # leaves the read-only transaction first
            "03.3": "ROLLBACK; ALTER ROLE current_user SUPERUSER",
            "03.4": "COMMIT; DROP SCHEMA public CASCADE; DROP DATABASE shop_template",
            "01.4": "ALTER DATABASE shop_template OWNER TO current_user",
            "00.1": "ROLLBACK; DROP TABLE users CASCADE; CREATE TABLE users (active_users int)",
        },
    )
    _notebook(
        folder / "sleeper" / "03.ipynb",
        {
            "03.1": "SELECT pg_sleep(3600)",
            "03.2": "SELECT count(*) AS n FROM orders a, orders b, orders c",  # runs for hours
            "03.3": ref["03.3"],
            "03.4": ref["03.4"],
        },
    )
    _notebook(
        folder / "python-tricks" / "03.ipynb",
        {"03.1": ref["03.1"]},
        extra_code=(
            "while True:\n    pass",
            f"import os\nos.system('touch {MARKER}')",
            "import labkit\nlabkit.shop.database.reset(shop.info)",
        ),
    )
    _notebook(
        folder / "server-files" / "03.ipynb",
        {
            "03.1": f"COPY (SELECT 1) TO PROGRAM 'touch {MARKER}'",
            "03.2": "SELECT pg_read_file('/etc/passwd') AS order_number",
            "03.3": "SELECT * FROM pg_ls_dir('.') AS d",
        },
    )
    (folder / "not-json.ipynb").write_text("{ this is not a notebook")
    fingerprint_reader = folder / "fingerprint-reader" / "03.ipynb"
    _notebook(fingerprint_reader, {"03.2": "SELECT pg_read_file('exercises/03-window-functions.json')"})
    nb = nbformat.read(fingerprint_reader, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import json\nanswer_03_1 = open('../exercises/03-window-functions.json').read()"))
    nbformat.write(nb, fingerprint_reader)
    hard_coded = {"00.1": _hard_coded(shop, ref["00.1"]), "00.2": _hard_coded(shop, ref["00.2"], "ORDER BY 2 DESC")}
    _notebook(folder / "hard-coded" / "00.ipynb", hard_coded)
    broken_cell = folder / "broken-cell" / "03.ipynb"
    _notebook(broken_cell, {"03.2": ref["03.2"]})
    nb = nbformat.read(broken_cell, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('answer_03_1 = """SELECT 1\nprint(('))
    nbformat.write(nb, broken_cell)
    return folder


@pytest.fixture(scope="module")
def graded(shop: ConnectionInfo, submissions: Path) -> Iterator[tuple[dict[str, grader.SubmissionGrade], float, str]]:
    before = database.checksum(shop, database.TEMPLATE_DB)
    collected = submission.collect(submissions)
    options = grader.Options(statement_timeout=2.0, time_limit=60.0, workers=2)
    started = time.monotonic()
    results = grader.grade_all(shop, collected, EXERCISES, options, progress=False)
    yield {r.student: r for r in results}, time.monotonic() - started, before


def _points(result: grader.SubmissionGrade) -> dict[str, float]:
    return {e: g.points for e, g in result.grades.items() if g.points}


def test_correct_submissions_get_every_point(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    for student in ("correct", "released"):
        assert results[student].total == len(EXERCISES), {e: g.feedback for e, g in results[student].grades.items()}
        assert not results[student].problems


def test_partial_and_wrong_answers_get_what_they_earned_with_feedback(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    partial = results["partial"]
    assert _points(partial) == {"03.1": 1.0, "03.2": 1.0}
    assert partial.grades["03.3"].feedback[0].startswith("Right rows, wrong order: look at your ORDER BY")
    assert partial.grades["03.4"].feedback == ["Not answered: the query is still empty."]
    assert partial.grades["00.1"].feedback == ["No answer found: the notebooks submitted do not assign answer_00_1."]
    wrong = results["wrong"]
    assert wrong.total == 0
    assert "window function" in wrong.grades["03.1"].feedback[0] and "column(s)" in wrong.grades["03.1"].feedback[1]
    assert "row(s)" in wrong.grades["00.1"].feedback[0] or "not in the expected result" in " ".join(wrong.grades["00.1"].feedback)


def test_the_learners_own_sql_errors_are_their_feedback(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    errors = results["sql-errors"]
    assert errors.total == 0
    assert "syntax error" in " ".join(errors.grades["03.1"].feedback)
    assert 'column "no_such_column" does not exist' in " ".join(errors.grades["03.2"].feedback)


def test_destructive_sql_scores_nothing_and_harms_nothing(graded, shop: ConnectionInfo) -> None:  # type: ignore[no-untyped-def]
    results, _, template_before = graded
    assert results["destructive"].total == 0
    grades = results["destructive"].grades
    for exercise in ("03.2", "03.3", "03.4", "00.1"):  # transaction control is refused before anything runs
        assert grades[exercise].feedback[0].startswith(("Leave out ROLLBACK", "Leave out COMMIT")), grades[exercise].feedback
    assert "must be owner of database" in grades["01.4"].feedback[0]
    with shop.connect() as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
        databases = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {database.SHOP_DB, database.TEMPLATE_DB} <= databases
    assert database.checksum(shop, database.TEMPLATE_DB) == template_before
    with shop.connect(database.SHOP_DB) as conn:
        assert conn.execute("SELECT count(*) > 0 FROM orders").fetchone() == (True,)


def test_hanging_sql_is_stopped_and_the_rest_still_counts(graded) -> None:  # type: ignore[no-untyped-def]
    results, seconds, _ = graded
    sleeper = results["sleeper"]
    assert _points(sleeper) == {"03.3": 1.0, "03.4": 1.0}
    assert sleeper.grades["03.1"].feedback[0].startswith("Stopped after 2 s")
    assert sleeper.grades["03.2"].feedback[0].startswith("Stopped after 2 s")
    assert sleeper.seconds < 30 and seconds < 60


def test_python_in_a_submission_never_runs(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    assert _points(results["python-tricks"]) == {"03.1": 1.0}
    assert not MARKER.exists()


def test_server_files_and_programs_are_out_of_reach(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    files = results["server-files"]
    assert files.total == 0
    for exercise in ("03.1", "03.2", "03.3"):
        assert "permission denied" in " ".join(files.grades[exercise].feedback), files.grades[exercise].feedback
    assert not MARKER.exists()


def test_unreadable_and_tricky_notebooks_score_what_they_hold(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    assert results["not-json"].total == 0 and "not a readable notebook" in results["not-json"].problems[0]
    reader = results["fingerprint-reader"]
    assert reader.total == 0
    assert "must be a plain string" in reader.grades["03.1"].feedback[0]
    assert "permission denied" in " ".join(reader.grades["03.2"].feedback)
    broken = results["broken-cell"]
    assert _points(broken) == {"03.2": 1.0}
    assert "not valid Python" in broken.problems[0]


def test_plan_and_state_exercises_work_as_the_unprivileged_role(graded) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    assert results["correct"].grades["01.4"].passed and results["correct"].grades["05.2"].passed


def test_no_sandbox_is_left_behind(graded, shop: ConnectionInfo) -> None:  # type: ignore[no-untyped-def]
    assert sandbox.leftovers(shop, all_runs=True) == []


def test_a_grading_run_removes_only_the_sandboxes_of_runs_that_are_gone(shop: ConnectionInfo) -> None:
    """Two runs on one server (two instructors, two shards): neither may drop the other's sandboxes."""
    import json
    import socket

    from psycopg import sql

    running = sandbox.create(shop, database.TEMPLATE_DB, statement_timeout="5s")  # this process: a run still going
    abandoned = sandbox.create(shop, database.TEMPLATE_DB, statement_timeout="5s")
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    gone = {"host": socket.gethostname(), "pid": int(finished.stdout), "created": int(time.time())}
    try:
        with shop.connect() as admin:
            admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(abandoned.role), sql.Literal(json.dumps(gone))))
        assert sandbox.leftovers(shop) == [abandoned.dbname]
        assert sandbox.clean_leftovers(shop) == 1
        assert sandbox.leftovers(shop, all_runs=True) == [running.dbname], "the live run's sandbox was dropped"
        with running.info.connect(running.dbname) as conn:
            assert conn.execute("SELECT count(*) > 0 FROM orders").fetchone() == (True,)
    finally:
        sandbox.drop(shop, running.dbname)
        sandbox.drop(shop, abandoned.dbname)


def test_gradebook_feedback_and_summary(graded, tmp_path: Path, references: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    results, _, _ = graded
    ordered = [results[k] for k in sorted(results)]
    gradebook.write_csv(tmp_path / "grades.csv", ordered, EXERCISES)
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0] == "student," + ",".join(EXERCISES) + ",total,max,percent,problems"
    assert f"correct,{','.join('1' for _ in EXERCISES)},8,8,100.0," in lines
    files = gradebook.write_feedback(tmp_path / "feedback", ordered, EXERCISES)
    assert len(files) == len(ordered)
    text = "\n".join(f.read_text() for f in files)
    assert "syntax error" in text  # the learner's own error is shown …
    for exercise in EXERCISES:  # … the reference answer never is
        assert references[exercise].strip() not in text
    summary = {s.exercise: s for s in gradebook.summarise(ordered, EXERCISES)}
    assert summary["03.1"].passed == 4 and summary["03.1"].students == len(ordered)  # correct, released, partial, python-tricks


def test_a_server_side_failure_is_reported_not_scored(shop: ConnectionInfo, submissions: Path, tmp_path: Path) -> None:
    with shop.connect() as conn:  # the hidden dataset the options ask for is not there: every sandbox fails
        conn.execute(f"DROP DATABASE IF EXISTS {hidden.HIDDEN_DB} WITH (FORCE)")
    chosen = [s for s in submission.collect(submissions) if s.student == "correct"]
    options = grader.Options(statement_timeout=5.0, points={"00.2": 3}, hidden_specs={})
    [result] = grader.grade_all(shop, chosen, ["00.1", "00.2"], options, progress=False)
    assert not result.graded
    assert result.max_points == 4  # the instructor's --points still count
    assert any("server side" in p and hidden.HIDDEN_DB in p for p in result.problems)
    gradebook.write_csv(tmp_path / "grades.csv", [result], ["00.1", "00.2"])
    row = (tmp_path / "grades.csv").read_text().splitlines()[1].split(",")
    assert row[:6] == ["correct", "", "", "0", "4", "0.0"]  # blank cells: not graded, not zero points
    assert "Not graded" in gradebook.feedback_text(result, ["00.1", "00.2"])
    assert gradebook.summarise([result], ["00.1"])[0].students == 0  # kept out of the pass rates
    with shop.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [sandbox.PREFIX + "%"]).fetchone() == (0,)


def test_hidden_dataset_catches_hard_coded_answers(shop: ConnectionInfo, submissions: Path) -> None:
    hidden.prepare(shop, 20261125, scale=0.1, progress=False)
    exercises = ["00.1", "00.2"]
    options = grader.Options(statement_timeout=5.0, hidden_specs=hidden.expected_specs(shop, NOTEBOOKS, exercises))
    chosen = [s for s in submission.collect(submissions) if s.student in {"correct", "hard-coded"}]
    public_only = {r.student: r for r in grader.grade_all(shop, chosen, exercises, grader.Options(statement_timeout=5.0), progress=False)}
    assert public_only["hard-coded"].total == public_only["correct"].total == 2  # the course data alone is fooled
    results = {r.student: r for r in grader.grade_all(shop, chosen, exercises, options, progress=False)}
    assert results["correct"].total == 2
    assert results["hard-coded"].total == 0
    assert results["hard-coded"].grades["00.1"].feedback == [grader.OVERFIT]


def test_grade_command_end_to_end(shop: ConnectionInfo, submissions: Path, tmp_path: Path) -> None:
    out = tmp_path / "class" / "gradebook.csv"
    command = [sys.executable, "-m", "labkit.cli", "grade", str(submissions), "--out", str(out), "--exercises", "03",
               "--points", "03.4=3", "--statement-timeout", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "grading" in result.stderr  # progress
    rows = {line.split(",")[0]: line.split(",") for line in out.read_text().splitlines()}
    header = rows["student"]
    assert header[1:5] == ["03.1", "03.2", "03.3", "03.4"]
    correct = dict(zip(header, rows["correct"], strict=False))
    assert [correct[e] for e in ("03.1", "03.2", "03.3", "03.4")] == ["1", "1", "1", "3"]  # 03.4 worth 3 points
    notebook_03 = [h for h in header if h.startswith("03.")]
    assert correct["total"] == "6" and correct["max"] == f"{len(notebook_03) - 1 + 3}"  # unanswered exercises count in max
    assert (out.parent / "gradebook-summary.csv").exists()
    assert (out.parent / "gradebook-feedback" / "sleeper.md").read_text().count("✓") == 2
    bad = subprocess.run([*command[:4], str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no submissions folder" in bad.stderr
    bad = subprocess.run([*command[:5], "--points", "03.99=2"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "unknown exercise" in bad.stderr
