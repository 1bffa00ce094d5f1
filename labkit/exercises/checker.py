"""Checking a learner's answer against an exercise spec, with feedback that teaches.

Specs live in exercises/*.json at the repository root, keyed by exercise id ("03.2"). They
hold the policy, hints and a salted fingerprint of the expected result — never the reference
query, which exists only in the instructor notebooks (cells tagged ``solution``).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pglast
import psycopg

from labkit.config import EXERCISES_DIR
from labkit.exercises import hints, structure
from labkit.exercises.fingerprint import Fingerprint, fingerprint, same_multiset
from labkit.servers.base import ConnectionInfo

SPEC_DIR = EXERCISES_DIR
STATEMENT_TIMEOUT = "30s"
HINT_AFTER_FAILURES = 3
_attempts: Counter[str] = Counter()
_failures: Counter[str] = Counter()


class ExerciseFailed(AssertionError):
    """A wrong answer: the self-check cell fails (so CI notices), showing only the feedback."""

    def __init__(self, exercise: str, feedback: list[str]) -> None:
        super().__init__(f"Exercise {exercise}: not yet. " + " ".join(feedback))
        self.exercise = exercise
        self.feedback = feedback

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"✗ Exercise {self.exercise}: not yet.", *_bullets(self.feedback)]


@dataclass
class CheckResult:
    exercise: str
    passed: bool
    feedback: list[str] = field(default_factory=list)
    points: float = 0.0
    sqlstate: str | None = None  # the SQL error the answer ran into, if any

    def __repr__(self) -> str:
        if self.passed:
            return f"✓ Exercise {self.exercise}: correct. {next_step(self.exercise)}"
        return "\n".join([f"✗ Exercise {self.exercise}: not yet.", *_bullets(self.feedback)])


def _bullets(feedback: list[str]) -> list[str]:
    """One bullet per feedback item; a multi-line item (a psql-style error) keeps its lines aligned under it."""
    return [f"  • {item}".replace("\n", "\n    ") for item in feedback]


def next_step(exercise: str) -> str:
    """What comes after ``exercise``: the next exercise of its notebook, or the next notebook."""
    ids = sorted(specs(), key=lambda e: tuple(int(p) for p in e.split(".")))
    later = ids[ids.index(exercise) + 1 :] if exercise in ids else []
    notebook = exercise.split(".")[0]
    if later and later[0].split(".")[0] == notebook:
        title = specs()[later[0]].get("title")
        text = f"Next: Exercise {later[0]}{' — ' + title if title else ''}"
        return text if text.endswith(("?", "!", ".")) else text + "."
    if later:
        return f"That was the last exercise of notebook {notebook}: on to the next notebook."
    return "That was the last exercise of the course."


@functools.cache
def specs() -> dict[str, dict[str, Any]]:
    """Every exercise spec, by id."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SPEC_DIR.glob("*.json")):
        for key, spec in json.loads(path.read_text()).items():
            found[key] = {**spec, "_file": path.name}
    return found


def selected(exercise: str, selectors: list[str]) -> bool:
    """Whether ``exercise`` ("03.2") is named by one of ``selectors``: an id ("03.2") or a notebook ("03", "3")."""
    return any(exercise == s or exercise.split(".")[0] == s.zfill(2) for s in selectors)


def spec(exercise: str) -> dict[str, Any]:
    try:
        return specs()[exercise]
    except KeyError:
        raise KeyError(f"No exercise {exercise!r}; known: {', '.join(sorted(specs()))}") from None


# -- running answers ----------------------------------------------------------------------
MAX_RESULT_BYTES = 8_000_000  # far more than any expected result; fetching stops there
CHECKER_SEARCH_PATH = "pg_catalog, public, pg_temp"  # the checks' own queries: the real catalog first, the learner's temp objects last


class ResultTooLarge(Exception):
    """The answer returned more rows or bytes than a right answer could (fetching stopped)."""

    def __init__(self, columns: list[str], rows: int, limit_rows: int | None, nbytes: int) -> None:
        super().__init__(f"more than {rows} rows" if limit_rows is not None and rows > limit_rows else f"more than {nbytes:,} bytes")
        self.columns, self.rows, self.limit_rows, self.nbytes = columns, rows, limit_rows, nbytes


def _as_rows(answer: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Columns and rows of a DataFrame or a JupySQL result."""
    frame = answer.DataFrame() if hasattr(answer, "DataFrame") else answer
    columns = [str(c) for c in frame.columns]
    rows = [tuple(None if _isnull(v) else v for v in row) for row in frame.itertuples(index=False, name=None)]
    return columns, rows


def _isnull(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN / NaT
    except (TypeError, ValueError):
        return value is None


def _fetch(cur: psycopg.Cursor, sql: str, max_rows: int | None, max_bytes: int) -> tuple[list[str], list[tuple]]:
    """Stream the rows of ``sql`` one by one; stop (cancelling the query) past ``max_rows`` or ``max_bytes``."""
    rows: list[tuple] = []
    size = 0
    for row in cur.stream(sql):  # type: ignore[call-overload]
        result = cur.pgresult
        size += sum(len(result.get_value(0, i) or b"") for i in range(result.nfields)) if result is not None else 0
        rows.append(row)
        if (max_rows is not None and len(rows) > max_rows) or size > max_bytes:
            raise ResultTooLarge([d.name for d in cur.description or []], len(rows), max_rows, size)
    if cur.description:
        return [d.name for d in cur.description], rows
    return (_describe(cur.connection, sql) if not rows else []), rows


def _describe(conn: psycopg.Connection, sql: str) -> list[str]:
    """The column names of ``sql`` without running it again (a stream of no rows reports none): prepared and
    described inside a savepoint, so that a statement that cannot be prepared leaves the transaction as it was."""
    pgconn, name, encoding = conn.pgconn, b"labkit_describe", conn.info.encoding or "utf-8"
    pgconn.exec_(b"SAVEPOINT labkit_describe")
    prepared = False
    try:
        prepared = pgconn.prepare(name, sql.encode(encoding)).status == psycopg.pq.ExecStatus.COMMAND_OK
        if not prepared:
            return []
        described = pgconn.describe_prepared(name)
        return [(described.fname(i) or b"").decode(encoding) for i in range(described.nfields)]
    finally:
        pgconn.exec_(b"ROLLBACK TO SAVEPOINT labkit_describe")
        pgconn.exec_(b"RELEASE SAVEPOINT labkit_describe")
        if prepared:
            pgconn.exec_(b"DEALLOCATE labkit_describe")


def run_query(
    conn: psycopg.Connection,
    sql: str,
    *,
    read_only: bool = True,
    setup: str | None = None,
    setup_runs: int = 1,
    timeout: str = STATEMENT_TIMEOUT,
    trusted: bool = False,
    max_rows: int | None = None,
    max_bytes: int = MAX_RESULT_BYTES,
) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (after ``setup``, ``setup_runs`` times) in a transaction that is always rolled
    back; return columns and rows. ``trusted``: ``sql`` is the check's own query (a state or plan
    query), run with a fixed search_path so that objects the learner made cannot stand in for the catalog."""
    if re.search(r"\bCONCURRENTLY\b", setup or sql, re.IGNORECASE):
        raise psycopg.ProgrammingError("CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction; leave out CONCURRENTLY here.")
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT pg_catalog.set_config('statement_timeout', %s, true)", [timeout])
        if read_only:
            conn.execute("SET TRANSACTION READ ONLY")
        for _ in range(setup_runs if setup is not None else 0):
            conn.execute(setup)  # type: ignore[arg-type]
        if trusted:
            conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", [CHECKER_SEARCH_PATH])
            cur = conn.execute(sql)  # type: ignore[arg-type]
            while cur.nextset():  # the check's own query may be several statements (SET LOCAL ROLE …; SELECT …): the last counts
                pass
            return ([d.name for d in cur.description], cur.fetchall()) if cur.description is not None else ([], [])
        with conn.cursor() as cur:
            return _fetch(cur, sql, max_rows, max_bytes)


def _state(
    conn: psycopg.Connection, learner_sql: str, spec_: dict[str, Any], timeout: str = STATEMENT_TIMEOUT
) -> tuple[list[str], list[tuple]]:
    """The answer runs (``runs`` times: e.g. twice for an update that must not apply twice), then ``state_sql``."""
    return run_query(
        conn, spec_["state_sql"], read_only=False, setup=learner_sql, setup_runs=spec_.get("runs", 1), timeout=timeout, trusted=True
    )


EXPLAIN_PREFIX = "EXPLAIN (FORMAT JSON) "


def _plan_nodes(conn: psycopg.Connection, learner_sql: str, plan_sql: str | None, timeout: str = STATEMENT_TIMEOUT) -> list[dict[str, Any]]:
    query = plan_sql or learner_sql
    setup = learner_sql if plan_sql else None
    _, rows = run_query(conn, EXPLAIN_PREFIX + query, read_only=setup is None, setup=setup, timeout=timeout, trusted=plan_sql is not None)
    document = rows[0][0] if not isinstance(rows[0][0], str) else json.loads(rows[0][0])
    found: list[dict[str, Any]] = []
    stack = [document[0]["Plan"]]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(reversed(node.get("Plans", [])))
    return found


# -- what went wrong, as psql would say it --------------------------------------------------------
def psql_error(exc: psycopg.Error, sql: str | None = None, *, offset: int = 0) -> str:
    """``ERROR:  …`` / ``LINE n: …`` with a caret under the position / ``DETAIL`` / ``HINT``, as psql prints it."""
    diag = exc.diag
    message = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    lines = [f"ERROR:  {message}"]
    position = diag.statement_position
    if sql and position and position.isdigit() and 0 < int(position) - offset <= len(sql):
        index = int(position) - 1 - offset
        line_start = sql.rfind("\n", 0, index) + 1
        line_end = sql.find("\n", index)
        text = sql[line_start : line_end if line_end >= 0 else len(sql)].expandtabs(1)
        column = index - line_start
        if len(text) > 100:  # psql shortens long lines around the caret too
            cut = max(0, min(column - 50, len(text) - 100))
            text, column = ("…" if cut else "") + text[cut : cut + 100], column - cut + (1 if cut else 0)
        prefix = f"LINE {sql.count(chr(10), 0, index) + 1}: "
        lines += [prefix + text, " " * (len(prefix) + column) + "^"]
    for label, value in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)):
        if value:
            lines.append(f"{label}:  {value}")
    return "\n".join(lines)


# -- comparing ------------------------------------------------------------------------------
def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _columns_feedback(got: Fingerprint, expected: Fingerprint, check_names: bool) -> list[str]:
    if len(got.columns) == len(expected.columns) and (not check_names or got.columns == expected.columns):
        return []
    missing = [c for c in expected.columns if c not in got.columns]
    extra = [c for c in got.columns if c not in expected.columns]
    if len(got.columns) != len(expected.columns):
        line = f"Your result has {len(got.columns)} column(s); the task asks for {len(expected.columns)}."
        if check_names and missing:
            line += f" Missing: {_quoted(missing)}."
        if check_names and extra:
            line += f" Not asked for: {_quoted(extra)}."
        return [line]
    if missing:
        return [f"Name your columns as the task says: no column named {_quoted(missing)}"
                + (f" (yours: {_quoted(extra)})." if extra else ".")]  # fmt: skip
    return [f"The columns are there but in another order than the task asks: {_quoted(expected.columns)}."]


def _rows_feedback(got: Fingerprint, expected: Fingerprint, rows: list[tuple], learner_sql: str | None) -> list[str]:
    """Which columns differ from the expected result, and how (the values, or which row they belong to)."""
    names = got.columns
    width = len(names)
    differing = [names[i] for i in range(width) if i < len(expected.column_sets) and got.column_sets[i] != expected.column_sets[i]]
    feedback = []
    if differing:
        feedback.append(f"Column {_quoted(differing[:3])}{' and more' if len(differing) > 3 else ''}: "
                        "not the expected values.")  # fmt: skip
    elif expected.cells and got.cells:
        for i in range(width):

            def without(cells: list[list[str]], i: int = i) -> Counter[tuple[str, ...]]:
                return Counter(tuple(c for j, c in enumerate(row) if j != i) for row in cells)

            if without(got.cells) == without(expected.cells):
                question = (" What decides which row gets which value: the ORDER BY (and PARTITION BY) inside OVER (…)?"
                            if learner_sql and _uses_window(learner_sql) else " What decides which row gets which value?")  # fmt: skip
                feedback.append(f"Column {names[i]!r}: the same values as expected, assigned to different rows.{question}")
                break
        else:
            feedback.append(f"Each column has the expected values, but they are combined into rows differently"
                            f" (columns {_quoted(names)}).")  # fmt: skip
    pool = Counter(expected.rows)
    for index, row_hash in enumerate(got.rows):
        if pool[row_hash] > 0:
            pool[row_hash] -= 1
            continue
        shown = ", ".join(repr(v) for v in rows[index])
        feedback.append(f"For example row {index + 1} of your result ({shown}) is not in the expected result.")
        break
    return feedback or ["Some rows differ from the expected result."]


def _uses_window(sql: str) -> bool:
    try:
        return structure.uses_window(sql)
    except Exception:  # an answer pglast cannot take is judged by the server alone
        return False


def compare(spec_: dict[str, Any], columns: list[str], rows: list[tuple], learner_sql: str | None) -> list[str]:
    """Feedback lines; empty when the result matches the expected fingerprint."""
    expected = Fingerprint.from_json(spec_["expected"])
    got = fingerprint(columns, rows, spec_["salt"], spec_.get("decimals", 2))
    if problems := _columns_feedback(got, expected, spec_.get("column_names", True)):
        return problems
    if len(got.rows) != len(expected.rows):
        few = len(got.rows) < len(expected.rows)
        why = ("too few: is a condition too strict, or does an inner JOIN drop rows that have no match?" if few
               else "too many: is a condition (WHERE, JOIN … ON, HAVING) missing, or does a join repeat rows?")  # fmt: skip
        return [f"Your result has {len(got.rows)} row(s); the expected result has {len(expected.rows)}: {why}"]
    if not same_multiset(got.rows, expected.rows):
        return _rows_feedback(got, expected, rows, learner_sql)
    order = spec_.get("order", "any")
    if order != "any" and learner_sql and spec_.get("kind", "result") == "result" and not structure.sorts_result(learner_sql):
        return ["The task asks for the rows in a given order, but your query has no ORDER BY of its own: without one, "
                "PostgreSQL may return them in any order (this time it may even look right)."]  # fmt: skip
    if order != "any":
        keys = list(range(len(columns))) if order == "all" else [expected.columns.index(k.lower()) for k in order]
        mine_seq = [tuple(r[k] for k in keys) for r in got.cells]
        expected_seq = [tuple(r[k] for k in keys) for r in expected.cells]
        if mine_seq != expected_seq:
            by = "" if order == "all" else f" the task asks for them sorted by {_quoted(list(order))}"
            return [f"Right rows, wrong order:{by or ' look at your ORDER BY (its columns, their sequence, ASC or DESC)'}."]
    return []


def _plan_feedback(spec_: dict[str, Any], plan_nodes: list[dict[str, Any]]) -> list[str]:
    feedback = []
    for node_type, relation in spec_.get("plan", {}).get("uses", []):
        where = f" on {relation}" if relation else ""
        found = [n for n in plan_nodes if node_type in n["Node Type"] and (relation is None or n.get("Relation Name") in (relation, None))]
        searched = [n for n in found if "Index" not in node_type or "Index Cond" in n]  # an index read whole is no index search
        if not found:
            feedback.append(f"The plan should use a {node_type}{where} node; it does not yet.")
        elif not searched:
            feedback.append(f"The plan reads an index{where} from end to end (no Index Cond): PostgreSQL cannot search an index "
                            "when the indexed column is wrapped in a function or cast. Compare the column itself (a range).")  # fmt: skip
    for node_type, relation in spec_.get("plan", {}).get("avoid", []):
        if any(node_type in n["Node Type"] and n.get("Relation Name") == relation for n in plan_nodes):
            feedback.append(f"The plan still uses a {node_type} on {relation}.")
    return feedback


def statement_problems(learner_sql: str, spec_: dict[str, Any]) -> list[str]:
    """The answer's form: one statement (unless the exercise allows more), no transaction control.

    Every part of a check then looks at the same statement: its rows, its technique, its ORDER BY."""
    statements = structure.parse(learner_sql)
    allowed = spec_.get("statements", 1)
    problems = []
    if control := structure.transaction_control(learner_sql):
        problems.append(f"Leave out {', '.join(dict.fromkeys(control))}: the check runs your answer in a transaction of its own "
                        "(and rolls it back), so an answer is the statement(s) alone.")  # fmt: skip
    if allowed != "many" and len(statements) > int(allowed):
        problems.append(f"Your answer holds {len(statements)} statements; this exercise asks for "
                        f"{'one' if int(allowed) == 1 else allowed}. Keep only the statement that answers the task.")  # fmt: skip
    return problems


# -- the learner's entry points ----------------------------------------------------------------
def evaluate(
    conn: psycopg.Connection,
    exercise: str,
    answer: Any,
    *,
    spec_: dict[str, Any] | None = None,
    timeout: str = STATEMENT_TIMEOUT,
    count_attempt: bool = True,
) -> CheckResult:
    """Check ``answer`` (SQL text, a DataFrame or a JupySQL result) without raising.

    ``spec_`` replaces the stored spec (grading on other data); ``count_attempt=False`` keeps the
    learner's attempt counter (and so the automatic hint) out of it."""
    spec_ = spec_ or spec(exercise)
    learner_sql = answer if isinstance(answer, str) else None
    if learner_sql is not None and not learner_sql.strip().strip(";").strip():
        return CheckResult(exercise, False, ["Write your answer first (the cell above is still empty)."])
    feedback: list[str] = []
    error: psycopg.Error | None = None
    kind = spec_.get("kind", "result")
    try:
        refused: list[str] = []
        if learner_sql is not None:
            try:
                refused = statement_problems(learner_sql, spec_)
                if not refused and spec_.get("requires"):
                    feedback += structure.problems(learner_sql, spec_["requires"])
            except structure.AnswerTooLong as exc:
                refused = [str(exc)]
            except pglast.parser.ParseError:
                pass  # the server says what is wrong with it, with the position
        if refused:
            feedback = refused  # an answer of the wrong form never runs
        elif kind == "plan":
            feedback += _plan_feedback(spec_, _plan_nodes(conn, learner_sql or "", spec_.get("plan_sql"), timeout))
            if spec_.get("expected") and learner_sql is not None:  # "same_result": the fast query must also return the right rows
                columns, rows = run_query(conn, learner_sql, timeout=timeout, max_rows=len(spec_["expected"]["rows"]))
                feedback += compare(spec_, columns, rows, learner_sql)
        else:
            expected_rows = len(spec_["expected"]["rows"]) if spec_.get("expected") else None
            if learner_sql is None:
                columns, rows = _as_rows(answer)
            elif kind == "state":
                columns, rows = _state(conn, learner_sql, spec_, timeout)
            else:
                columns, rows = run_query(conn, learner_sql, read_only=spec_.get("read_only", True), timeout=timeout,
                                          max_rows=expected_rows)  # fmt: skip
            feedback += compare(spec_, columns, rows, learner_sql)
    except ResultTooLarge as exc:
        shape = Fingerprint(exc.columns, []) if spec_.get("expected") else None
        if shape is not None and (columns_wrong := _columns_feedback(shape, Fingerprint.from_json(spec_["expected"]),
                                                                     spec_.get("column_names", True))):  # fmt: skip
            feedback += columns_wrong
        elif exc.limit_rows is not None and exc.rows > exc.limit_rows:
            feedback += [f"Your result has more than {exc.limit_rows} row(s) (the check stopped reading there); the expected "
                        f"result has {exc.limit_rows}: is a condition missing, or does a join repeat rows?"]  # fmt: skip
        else:
            feedback += [f"Your result is larger than {exc.nbytes // 1_000_000} MB, far more than the expected one "
                        "(the check stopped reading there): is a join condition missing?"]  # fmt: skip
    except psycopg.Error as exc:
        error = exc
        offset = len(EXPLAIN_PREFIX) if kind == "plan" and not spec_.get("plan_sql") else 0
        feedback += [psql_error(exc, learner_sql, offset=offset)]  # after what the structure check found
    passed = not feedback
    if count_attempt:
        _attempts[exercise] += 1  # every checked attempt: shop.solution() waits for one
        _failures[exercise] += not passed
        if not passed and _failures[exercise] >= HINT_AFTER_FAILURES and (line := hints.automatic(exercise, spec_)):
            feedback.append(line)
    return CheckResult(exercise, passed, feedback, float(spec_.get("points", 1)) if passed else 0.0,
                       error.sqlstate if error is not None else None)  # fmt: skip


BY_LUCK = ("Right on this copy of the data, but not on the same data stored in another physical order: the result "
           "depends on the order rows happen to be read in. Does every ROW_NUMBER/RANK/LAG … OVER (…) say ORDER BY, "
           "and does every LIMIT come with an ORDER BY that decides which rows are kept?")  # fmt: skip


def order_independent(conn: psycopg.Connection, exercise: str, answer: str, *, spec_: dict[str, Any] | None = None,
                      timeout: str = STATEMENT_TIMEOUT) -> list[str]:  # fmt: skip
    """Feedback when a passing ``answer`` fails on the shuffled copy (``conn``); empty when it holds there too,
    when the exercise is not checked there, or when the answer cannot run there (it may use the learner's own objects)."""
    spec_ = spec_ or spec(exercise)
    if not spec_.get("shuffled"):
        return []
    from labkit.exercises import shuffled

    shuffled.prepare_session(conn)
    there = evaluate(conn, exercise, answer, spec_=spec_, timeout=timeout, count_attempt=False)
    if there.passed or there.sqlstate is not None:
        return []
    return [BY_LUCK, *there.feedback]


def _check_shuffled(info: ConnectionInfo, exercise: str, answer: str) -> list[str]:
    from labkit.exercises import shuffled

    if not spec(exercise).get("shuffled"):
        return []
    if not shuffled.current(info):
        print("Preparing a copy of the shop stored in another order, for the checks (once, about 10 s) …", file=sys.stderr, flush=True)
        if not shuffled.ensure(info):
            return []
    with info.connect(shuffled.SHUFFLED_DB, autocommit=True) as conn:
        return order_independent(conn, exercise, answer)


def check(info: ConnectionInfo, dbname: str, exercise: str, answer: Any) -> CheckResult:
    """Evaluate and raise :class:`ExerciseFailed` on a wrong answer (the cell fails, briefly).

    A passing SQL answer is checked on the shuffled copy too: right by luck is not right."""
    with info.connect(dbname, autocommit=True) as conn:
        result = evaluate(conn, exercise, answer)
    if result.passed and isinstance(answer, str) and (luck := _check_shuffled(info, exercise, answer)):
        _attempts[exercise] += 1
        result = CheckResult(exercise, False, luck)
    if not result.passed:
        raise ExerciseFailed(exercise, result.feedback)
    return result


def hint(exercise: str) -> hints.Hint:
    """The next level of hint for ``exercise``: the concept, the approach, then nearly the answer."""
    return hints.next_hint(exercise, spec(exercise))
