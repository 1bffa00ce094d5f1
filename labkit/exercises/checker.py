"""Checking a learner's answer against an exercise spec, with feedback that teaches.

Specs live in exercises/*.json at the repository root, keyed by exercise id ("03.2"). They
hold the policy, hints and a salted fingerprint of the expected result — never the reference
query, which exists only in the instructor notebooks (cells tagged ``solution``).
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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
        return [f"✗ Exercise {self.exercise}: not yet.", *(f"  • {line}" for line in self.feedback)]


@dataclass
class CheckResult:
    exercise: str
    passed: bool
    feedback: list[str] = field(default_factory=list)
    points: float = 0.0

    def __repr__(self) -> str:
        if self.passed:
            return f"✓ Exercise {self.exercise}: correct."
        return "\n".join([f"✗ Exercise {self.exercise}: not yet.", *(f"  • {line}" for line in self.feedback)])


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


def run_query(
    conn: psycopg.Connection,
    sql: str,
    *,
    read_only: bool = True,
    setup: str | None = None,
    setup_runs: int = 1,
    timeout: str = STATEMENT_TIMEOUT,
) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (after ``setup``, ``setup_runs`` times) in a transaction that is always rolled
    back; return columns and rows."""
    if re.search(r"\bCONCURRENTLY\b", sql, re.IGNORECASE):
        raise psycopg.ProgrammingError("CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction; leave out CONCURRENTLY here.")
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
        if read_only:
            conn.execute("SET TRANSACTION READ ONLY")
        for _ in range(setup_runs if setup is not None else 0):
            conn.execute(setup)  # type: ignore[arg-type]
        cur = conn.execute(sql)  # type: ignore[arg-type]
        while cur.nextset():  # several statements (e.g. SET LOCAL ROLE …; SELECT …): the last one's result counts
            pass
        if cur.description is None:
            return [], []
        return [d.name for d in cur.description], cur.fetchall()


def _state(
    conn: psycopg.Connection, learner_sql: str, spec_: dict[str, Any], timeout: str = STATEMENT_TIMEOUT
) -> tuple[list[str], list[tuple]]:
    """The answer runs (``runs`` times: e.g. twice for an update that must not apply twice), then ``state_sql``."""
    return run_query(conn, spec_["state_sql"], read_only=False, setup=learner_sql, setup_runs=spec_.get("runs", 1), timeout=timeout)


def _plan_nodes(conn: psycopg.Connection, learner_sql: str, plan_sql: str | None, timeout: str = STATEMENT_TIMEOUT) -> list[dict[str, Any]]:
    query = plan_sql or learner_sql
    setup = learner_sql if plan_sql else None
    _, rows = run_query(conn, f"EXPLAIN (FORMAT JSON) {query}", read_only=setup is None, setup=setup, timeout=timeout)
    document = rows[0][0] if not isinstance(rows[0][0], str) else json.loads(rows[0][0])
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        found.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(document[0]["Plan"])
    return found


# -- comparing ------------------------------------------------------------------------------
def compare(spec_: dict[str, Any], columns: list[str], rows: list[tuple], learner_sql: str | None) -> list[str]:
    """Feedback lines; empty when the result matches the expected fingerprint."""
    expected = Fingerprint.from_json(spec_["expected"])
    got = fingerprint(columns, rows, spec_["salt"], spec_.get("decimals", 2))
    if len(got.columns) != len(expected.columns):
        return [f"Your result has {len(got.columns)} column(s); the task asks for {len(expected.columns)}."]
    if spec_.get("column_names", True) and got.columns != expected.columns:
        missing = [c for c in expected.columns if c not in got.columns]
        if missing:
            return [f"Name your columns as the task says: no column named {', '.join(repr(c) for c in missing)}."]
        return ["The columns are there but in another order than the task asks."]
    if len(got.rows) != len(expected.rows):
        return [f"Your result has {len(got.rows)} row(s); the expected result has {len(expected.rows)}."]
    if not same_multiset(got.rows, expected.rows):
        feedback = []
        for i, (mine, theirs) in enumerate(zip(got.column_sets, expected.column_sets, strict=True)):
            if mine != theirs:
                feedback.append(f"The values in column {got.columns[i]!r} are not the expected ones (the first such column).")
                break
        pool = Counter(expected.rows)
        for index, row_hash in enumerate(got.rows):
            if pool[row_hash] > 0:
                pool[row_hash] -= 1
                continue
            shown = ", ".join(repr(v) for v in rows[index])
            feedback.append(f"Row {index + 1} of your result ({shown}) is not in the expected result.")
            break
        return feedback or ["Some rows differ from the expected result."]
    order = spec_.get("order", "any")
    if order != "any" and learner_sql and spec_.get("kind", "result") == "result" and not structure.sorts_result(learner_sql):
        return ["The task asks for the rows in a given order, but your query has no ORDER BY of its own: without one, "
                "PostgreSQL may return them in any order (this time it may even look right)."]  # fmt: skip
    if order != "any":
        keys = list(range(len(columns))) if order == "all" else [expected.columns.index(k.lower()) for k in order]
        mine_seq = [tuple(r[k] for k in keys) for r in got.cells]
        expected_seq = [tuple(r[k] for k in keys) for r in expected.cells]
        if mine_seq != expected_seq:
            return ["Right rows, wrong order."]
    return []


def _plan_feedback(spec_: dict[str, Any], plan_nodes: list[dict[str, Any]]) -> list[str]:
    feedback = []
    for node_type, relation in spec_.get("plan", {}).get("uses", []):
        if not any(node_type in n["Node Type"] and (relation is None or n.get("Relation Name") in (relation, None)) for n in plan_nodes):
            where = f" on {relation}" if relation else ""
            feedback.append(f"The plan should use a {node_type}{where} node; it does not yet.")
    for node_type, relation in spec_.get("plan", {}).get("avoid", []):
        if any(node_type in n["Node Type"] and n.get("Relation Name") == relation for n in plan_nodes):
            feedback.append(f"The plan still uses a {node_type} on {relation}.")
    return feedback


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
    try:
        if learner_sql is not None and spec_.get("requires"):
            feedback += structure.problems(learner_sql, spec_["requires"])
        kind = spec_.get("kind", "result")
        if kind == "plan":
            feedback += _plan_feedback(spec_, _plan_nodes(conn, learner_sql or "", spec_.get("plan_sql"), timeout))
        else:
            if learner_sql is None:
                columns, rows = _as_rows(answer)
            elif kind == "state":
                columns, rows = _state(conn, learner_sql, spec_, timeout)
            else:
                columns, rows = run_query(conn, learner_sql, read_only=spec_.get("read_only", True), timeout=timeout)
            feedback += compare(spec_, columns, rows, learner_sql)
    except psycopg.Error as exc:
        feedback = [f"Your SQL failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"]
    passed = not feedback
    if count_attempt:
        _attempts[exercise] += 1  # every checked attempt: shop.solution() waits for one
        _failures[exercise] += not passed
        if not passed and _failures[exercise] >= HINT_AFTER_FAILURES and (line := hints.automatic(exercise, spec_)):
            feedback.append(line)
    return CheckResult(exercise, passed, feedback, float(spec_.get("points", 1)) if passed else 0.0)


def check(info: ConnectionInfo, dbname: str, exercise: str, answer: Any) -> CheckResult:
    """Evaluate and raise :class:`ExerciseFailed` on a wrong answer (the cell fails, briefly)."""
    with info.connect(dbname, autocommit=True) as conn:
        result = evaluate(conn, exercise, answer)
    if not result.passed:
        raise ExerciseFailed(exercise, result.feedback)
    return result


def hint(exercise: str) -> hints.Hint:
    """The next level of hint for ``exercise``: the concept, the approach, then nearly the answer."""
    return hints.next_hint(exercise, spec(exercise))
