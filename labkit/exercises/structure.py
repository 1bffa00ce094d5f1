"""Technique requirements checked on PostgreSQL's own parse tree (pglast), not with regexes.

An answer is untrusted text: it is bounded in size before it is parsed (``MAX_ANSWER_CHARS``), and
the tree is walked without recursion, so a deeply nested answer cannot exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pglast
from pglast import ast, enums

MAX_ANSWER_CHARS = 64_000  # no exercise needs more; a longer answer is refused before parsing


class AnswerTooLong(ValueError):
    """An answer longer than any exercise needs (it is not parsed)."""


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node of a pglast tree (or list of trees), depth first, without recursion."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, name, None) for name in reversed(type(item).__slots__))


def parse(sql: str) -> tuple[ast.RawStmt, ...]:
    """The statements of ``sql`` (raises :class:`AnswerTooLong` or pglast's ParseError)."""
    limit = MAX_ANSWER_CHARS  # looked up at each call: a grading run may set another bound
    if len(sql) > limit:
        raise AnswerTooLong(f"The answer is {len(sql):,} characters long; no exercise needs more than {limit:,}.")
    return pglast.parse_sql(sql)


def nodes(sql: str) -> list[ast.Node]:
    return list(walk(parse(sql)))


def _has(sql: str, predicate: Any) -> bool:
    return any(predicate(n) for n in nodes(sql))


DATA_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)
REQUIREMENTS: dict[str, tuple[str, Any]] = {
    "window_function": ("use a window function (… OVER (…))", lambda n: isinstance(n, ast.FuncCall) and n.over is not None),
    "recursive_cte": ("use a recursive CTE (WITH RECURSIVE)", lambda n: isinstance(n, ast.WithClause) and bool(n.recursive)),
    "cte": ("use a CTE (WITH …)", lambda n: isinstance(n, ast.WithClause)),
    "data_modifying_cte": ("change the data in a CTE (WITH … AS (UPDATE/INSERT/DELETE … RETURNING …))",
                           lambda n: isinstance(n, ast.CommonTableExpr) and isinstance(n.ctequery, DATA_MODIFYING)),
    "join": ("use a JOIN", lambda n: isinstance(n, ast.JoinExpr)),
    "lateral": ("use LATERAL", lambda n: isinstance(n, (ast.RangeSubselect, ast.RangeFunction)) and bool(n.lateral)),
    "group_by": ("use GROUP BY", lambda n: isinstance(n, ast.SelectStmt) and bool(n.groupClause)),
    "filter": ("use an aggregate FILTER (WHERE …) clause", lambda n: isinstance(n, ast.FuncCall) and n.agg_filter is not None),
    "order_by": ("sort the result with ORDER BY", lambda n: isinstance(n, ast.SelectStmt) and bool(n.sortClause)),
    "skip_locked": (
        "skip rows other transactions have locked (… SKIP LOCKED)",
        lambda n: isinstance(n, ast.LockingClause) and n.waitPolicy == enums.LockWaitPolicy.LockWaitSkip,
    ),
    "on_conflict": (
        "let the INSERT itself settle a conflict on a unique key (INSERT … ON CONFLICT)",
        lambda n: isinstance(n, ast.OnConflictClause),
    ),
    "row_lock": ("lock the rows you read (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE …)",
                 lambda n: isinstance(n, ast.SelectStmt) and bool(n.lockingClause)),
}


def _reads_a_table(tree: list[ast.Node]) -> bool:
    """Whether the query reads a table, view or catalog (a name in FROM that is not one of its own CTEs, or a
    function in FROM such as ``pg_partition_tree(…)``)."""
    own = {n.ctename for n in tree if isinstance(n, ast.CommonTableExpr)}
    return any(isinstance(n, ast.RangeFunction) or (isinstance(n, ast.RangeVar) and (n.schemaname or n.relname not in own)) for n in tree)


def _reads_given_data(tree: list[ast.Node]) -> bool:
    """Whether the query reads a CTE made of a VALUES list (the data a task gives: a snapshot of a view, a log)."""
    given = {n.ctename for n in tree if isinstance(n, ast.CommonTableExpr) and isinstance(n.ctequery, ast.SelectStmt)
             and n.ctequery.valuesLists}  # fmt: skip
    return any(isinstance(n, ast.RangeVar) and not n.schemaname and n.relname in given for n in tree)


WHOLE_QUERY: dict[str, tuple[str, Any]] = {
    "reads_table": ("compute the result from the database's tables or catalogs, not type it in", _reads_a_table),
    "reads_given_data": ("compute the result from the data the task gives (its WITH … AS (VALUES …)), not type it in",
                         _reads_given_data),
}
FORBIDDEN: dict[str, tuple[str, Any]] = {
    "no_subquery": ("do it without a subquery", lambda n: isinstance(n, (ast.SubLink, ast.RangeSubselect))),
}


def problems(sql: str, requirements: list[str]) -> list[str]:
    """What the query fails to do of ``requirements`` (empty when all are met)."""
    try:
        tree = nodes(sql)
    except pglast.parser.ParseError as exc:
        return [f"the query does not parse: {exc}"]
    missing = []
    for name in requirements:
        if name in REQUIREMENTS:
            text, predicate = REQUIREMENTS[name]
            if not any(predicate(n) for n in tree):
                missing.append(f"the exercise asks you to {text}")
        elif name in WHOLE_QUERY:
            text, check = WHOLE_QUERY[name]
            if not check(tree):
                missing.append(f"the exercise asks you to {text}")
        elif name in FORBIDDEN:
            text, predicate = FORBIDDEN[name]
            if any(predicate(n) for n in tree):
                missing.append(f"the exercise asks you to {text}")
        else:
            raise ValueError(f"unknown structural requirement {name!r}")
    return missing


def transaction_control(sql: str) -> list[str]:
    """The transaction-control statements in ``sql`` (COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION, …)."""
    found = []
    for statement in parse(sql):
        if isinstance(statement.stmt, ast.TransactionStmt):
            text = sql[statement.stmt_location : statement.stmt_location + (statement.stmt_len or len(sql))]
            found.append(text.strip().split()[0].upper())
    return found


def uses_window(sql: str) -> bool:
    return _has(sql, REQUIREMENTS["window_function"][1])


def sorts_result(sql: str) -> bool:
    """Whether the (last) statement's result is sorted by an ORDER BY of its own.

    An ORDER BY in a subquery, a CTE or a window does not fix the order of the rows returned.
    A SELECT without FROM (e.g. ``SELECT unnest(array)``) returns its rows in a defined order."""
    try:
        statements = parse(sql)
    except (pglast.parser.ParseError, AnswerTooLong):
        return False
    if not statements:
        return False
    top = statements[-1].stmt
    if isinstance(top, ast.SelectStmt) and top.op == enums.SetOperation.SETOP_NONE and not top.fromClause and not top.valuesLists:
        return True
    return isinstance(top, ast.SelectStmt) and bool(top.sortClause)
