"""Mutation testing of exercises: would the check accept a plausible wrong answer?

Each mutant is the reference solution with one deliberate mistake made on PostgreSQL's parse
tree (pglast): a WHERE (also of an UPDATE or DELETE) or HAVING condition dropped, a LEFT JOIN
made INNER (or back), a bound's ``<`` turned into ``<=``, DISTINCT / ORDER BY / LIMIT left out, the
ORDER BY a LIMIT depends on left out, the ORDER BY or PARTITION BY inside a window's OVER (…)
left out, a sort direction flipped. Two more kinds: the course data's result typed in as
literals (VALUES), which only a second dataset can catch, and, for plan exercises, a function
around a compared column (``COALESCE(created_at, created_at) >= …``), which no index can search.
A mutant the check accepts is a hole a learner could fall through: tighten the exercise (its
order policy, its data or its wording) until none survives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pglast
import psycopg
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql
from psycopg.types.json import Jsonb

from labkit.exercises import checker
from labkit.exercises.structure import walk

FLIP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
Mutation = Callable[[], str]  # applies itself to the freshly parsed tree; returns a description


@dataclass(frozen=True)
class Mutant:
    description: str
    sql: str


@dataclass
class Report:
    exercise: str
    mutants: int
    survivors: list[Mutant]
    caught_by_hidden: int = 0  # accepted on the course data, rejected on the hidden dataset

    @property
    def killed(self) -> int:
        return self.mutants - len(self.survivors)


def _drop_term(owner: ast.Node, slot: str, index: int | None) -> str:
    clause = getattr(owner, slot)
    if index is None:
        setattr(owner, slot, None)
        return f"{'WHERE' if slot == 'whereClause' else 'HAVING'} left out"
    remaining = [a for i, a in enumerate(clause.args) if i != index]
    setattr(owner, slot, remaining[0] if len(remaining) == 1 else ast.BoolExpr(boolop=enums.BoolExprType.AND_EXPR, args=remaining))
    return f"condition {index + 1} of the {'WHERE' if slot == 'whereClause' else 'HAVING'} clause left out"


def _joins(items: Any) -> Any:
    """The JoinExpr nodes of a FROM list's join trees (not of subqueries)."""
    for item in items or ():
        if isinstance(item, ast.JoinExpr):
            yield item
            yield from _joins((item.larg, item.rarg))


def _name(item: Any) -> str | None:
    if isinstance(item, ast.RangeVar):
        return item.alias.aliasname if item.alias else item.relname
    if isinstance(item, ast.RangeSubselect) and item.alias:
        return str(item.alias.aliasname)
    return None


def _column_of(expr: Any) -> str | None:
    """The table a plain column reference (maybe cast) is qualified with: ``u.name``, ``u.id::text``."""
    while isinstance(expr, ast.TypeCast):
        expr = expr.arg
    if isinstance(expr, ast.ColumnRef) and len(expr.fields) == 2 and isinstance(expr.fields[0], ast.String):
        return str(expr.fields[0].sval)
    return None


def _reduced_joins(tree: Any) -> set[int]:
    """Inner joins that a LEFT JOIN would not change: a top-level WHERE condition compares a column of
    the right side with an operator or IN, which is false for the NULLs an outer join adds, so
    PostgreSQL itself reduces such a LEFT JOIN to an inner one. Mutating them finds nothing."""
    reduced = set()
    for select in walk(tree):
        if not isinstance(select, ast.SelectStmt) or select.whereClause is None:
            continue
        where = select.whereClause
        terms = where.args if isinstance(where, ast.BoolExpr) and where.boolop == enums.BoolExprType.AND_EXPR else (where,)
        strict = enums.A_Expr_Kind.AEXPR_OP, enums.A_Expr_Kind.AEXPR_IN
        filtered = {_column_of(side) for t in terms if isinstance(t, ast.A_Expr) and t.kind in strict for side in (t.lexpr, t.rexpr)}
        reduced |= {id(join) for join in _joins(select.fromClause) if _name(join.rarg) in filtered}
    return reduced


def _sites(tree: Any) -> list[Mutation]:
    """Every single-mistake mutation of ``tree`` (closures over its nodes, applied one at a time)."""
    sites: list[Mutation] = []
    reduced = _reduced_joins(tree)
    for node in walk(tree):
        if isinstance(node, (ast.UpdateStmt, ast.DeleteStmt)):
            clause = node.whereClause
            if isinstance(clause, ast.BoolExpr) and clause.boolop == enums.BoolExprType.AND_EXPR:
                sites += [lambda n=node, i=i: _drop_term(n, "whereClause", i) for i in range(len(clause.args))]
            elif clause is not None:
                sites.append(lambda n=node: _drop_term(n, "whereClause", None))
        if isinstance(node, ast.SelectStmt):
            for slot in ("whereClause", "havingClause"):
                clause = getattr(node, slot)
                if isinstance(clause, ast.BoolExpr) and clause.boolop == enums.BoolExprType.AND_EXPR:
                    sites += [lambda n=node, s=slot, i=i: _drop_term(n, s, i) for i in range(len(clause.args))]
                elif clause is not None:
                    sites.append(lambda n=node, s=slot: _drop_term(n, s, None))
            if node.distinctClause:
                sites.append(lambda n=node: (setattr(n, "distinctClause", None), "DISTINCT left out")[1])
            if node.sortClause:
                what = "the ORDER BY of a LIMIT left out" if node.limitCount is not None else "ORDER BY left out"
                sites.append(lambda n=node, what=what: (setattr(n, "sortClause", None), what)[1])
            if node.limitCount is not None:
                sites.append(
                    lambda n=node: (
                        setattr(n, "limitCount", None),
                        setattr(n, "limitOption", enums.LimitOption.LIMIT_OPTION_DEFAULT),
                        "LIMIT left out",
                    )[2]
                )
            if node.limitOption == enums.LimitOption.LIMIT_OPTION_WITH_TIES:
                sites.append(lambda n=node: (setattr(n, "limitOption", enums.LimitOption.LIMIT_OPTION_COUNT), "WITH TIES left out")[1])
        elif isinstance(node, ast.JoinExpr) and node.quals is not None:
            if node.jointype == enums.JoinType.JOIN_LEFT:
                sites.append(lambda n=node: (setattr(n, "jointype", enums.JoinType.JOIN_INNER), "LEFT JOIN made INNER")[1])
            elif node.jointype == enums.JoinType.JOIN_INNER and id(node) not in reduced:
                sites.append(lambda n=node: (setattr(n, "jointype", enums.JoinType.JOIN_LEFT), "INNER JOIN made LEFT")[1])
        elif isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP and len(node.name) == 1:
            op = node.name[0].sval
            if op in FLIP:
                sites.append(lambda n=node, op=op: (setattr(n, "name", (ast.String(FLIP[op]),)), f"'{op}' made '{FLIP[op]}'")[1])
        elif isinstance(node, ast.FuncCall) and node.agg_distinct:
            sites.append(lambda n=node: (setattr(n, "agg_distinct", False), "DISTINCT inside an aggregate left out")[1])
        elif isinstance(node, ast.WindowDef):
            if node.partitionClause:
                sites.append(lambda n=node: (setattr(n, "partitionClause", None), "PARTITION BY left out")[1])
            if node.orderClause:
                sites.append(lambda n=node: (setattr(n, "orderClause", None), "the ORDER BY inside OVER (…) left out")[1])
        elif isinstance(node, ast.SortBy) and node.sortby_dir in (
            enums.SortByDir.SORTBY_DESC,
            enums.SortByDir.SORTBY_ASC,
            enums.SortByDir.SORTBY_DEFAULT,
        ):
            flipped = enums.SortByDir.SORTBY_ASC if node.sortby_dir == enums.SortByDir.SORTBY_DESC else enums.SortByDir.SORTBY_DESC
            sites.append(lambda n=node, d=flipped: (setattr(n, "sortby_dir", d), "a sort direction flipped")[1])
    return sites


def _plain_column(expr: Any) -> bool:
    while isinstance(expr, ast.TypeCast):
        expr = expr.arg
    return isinstance(expr, ast.ColumnRef)


def _function_sites(tree: Any) -> list[Mutation]:
    """A function around a column wherever the query compares it: ``COALESCE(col, col) >= …`` has the
    same value, but no index on ``col`` can be searched with it (as with ``date_trunc('month', col) = …``)."""
    compared: dict[str, list[tuple[ast.A_Expr, str]]] = {}
    for node in walk(tree):
        if isinstance(node, ast.A_Expr) and node.kind in (enums.A_Expr_Kind.AEXPR_OP, enums.A_Expr_Kind.AEXPR_IN):
            for side in ("lexpr", "rexpr"):
                if _plain_column(getattr(node, side)):
                    compared.setdefault(RawStream()(getattr(node, side)), []).append((node, side))

    def wrap(column: str, places: list[tuple[ast.A_Expr, str]]) -> str:
        for node, side in places:
            col = getattr(node, side)
            setattr(node, side, ast.CoalesceExpr(args=(col, col)))
        return f"a function around the column {column} (no index can search it)"

    return [lambda c=column, p=places: wrap(c, p) for column, places in compared.items()]


def mutants(sql: str, kind: str = "result") -> list[Mutant]:
    """One mutant per mutation site of ``sql`` (each made on a fresh parse). A plan exercise gets the
    mutants that change how a query runs, not what it returns."""
    finder = _function_sites if kind == "plan" else _sites
    count = len(finder(pglast.parse_sql(sql)))
    found = []
    for index in range(count):
        tree = pglast.parse_sql(sql)
        description = finder(tree)[index]()
        found.append(Mutant(description, RawStream()(tree)))
    return found


def _literal(conn: psycopg.Connection, value: Any) -> str:
    """A result value as SQL text; a JSON document (read back as a dict, or a list no array can hold) as a jsonb literal."""
    try:
        return sql.Literal(value).as_string(conn)
    except psycopg.ProgrammingError:  # "cannot adapt type 'dict'"
        if isinstance(value, dict | list):
            return sql.Literal(Jsonb(value)).as_string(conn)
        raise


def literal_mutant(conn: psycopg.Connection, spec: dict[str, Any], sql_text: str) -> Mutant | None:
    """The reference result on this data typed in as VALUES, in the same order, dressed up to meet the
    exercise's technique requirements: right on the course data, right nowhere else."""
    if spec.get("kind", "result") != "result":
        return None
    columns, rows = checker.run_query(conn, sql_text, read_only=spec.get("read_only", True))
    if not rows or not columns:
        return None
    values = ", ".join("(" + ", ".join([*(_literal(conn, v) for v in row), str(i)]) + ")" for i, row in enumerate(rows))
    names = [sql.Identifier(c).as_string(conn) for c in columns]
    picked = ", ".join(f"t.{n}" for n in names)
    needs = set(spec.get("requires", []))
    prefix = (
        "WITH RECURSIVE unused(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM unused WHERE n < 1) " if needs & {"cte", "recursive_cte"} else ""
    )
    window = " CROSS JOIN LATERAL (SELECT row_number() OVER () AS w) AS w" if needs & {"window_function", "join", "lateral"} else ""
    group = f" GROUP BY {picked}, t.labkit_n" if "group_by" in needs else ""
    text = (f"{prefix}SELECT {picked} FROM (VALUES {values}) AS t({', '.join(names)}, labkit_n){window}{group} "
            "ORDER BY t.labkit_n")  # fmt: skip
    return Mutant("the course data's result typed in (VALUES)", text)


def try_mutants(
    conn: psycopg.Connection,
    exercise: str,
    sql_text: str,
    spec: dict[str, Any] | None = None,
    *,
    hidden: tuple[psycopg.Connection, dict[str, Any]] | None = None,
    shuffled: psycopg.Connection | None = None,
) -> Report:
    """Run every mutant of the reference ``sql`` through the exercise's check; collect those it accepts.

    With ``hidden`` (a connection to the hidden dataset and the spec expected there), a mutant
    counts as accepted only if that check accepts it too, as when grading with a hidden seed. With
    ``shuffled`` (a connection to the shop stored in another order), an accepted mutant must hold
    there too, as in a self-check."""
    spec = spec or checker.spec(exercise)
    found = mutants(sql_text, spec.get("kind", "result"))
    if (typed := literal_mutant(conn, spec, sql_text)) is not None:
        found.append(typed)
    survivors = [m for m in found if checker.evaluate(conn, exercise, m.sql, spec_=spec, count_attempt=False).passed]
    if shuffled is not None:
        survivors = [m for m in survivors if not checker.order_independent(shuffled, exercise, m.sql, spec_=spec)]
    if hidden is None:
        return Report(exercise, len(found), survivors)
    hidden_conn, hidden_spec = hidden
    still = [m for m in survivors if checker.evaluate(hidden_conn, exercise, m.sql, spec_=hidden_spec, count_attempt=False).passed]
    return Report(exercise, len(found), still, caught_by_hidden=len(survivors) - len(still))


def report_text(reports: list[Report]) -> str:
    lines = []
    for report in reports:
        status = "all caught" if not report.survivors else f"{len(report.survivors)} accepted"
        by_hidden = f" ({report.caught_by_hidden} caught only by the hidden dataset)" if report.caught_by_hidden else ""
        lines.append(f"{report.exercise}: {report.mutants} mutant(s), {status}{by_hidden}")
        lines += [f"    accepted: {m.description}: {m.sql}" for m in report.survivors]
    total = sum(r.mutants for r in reports)
    accepted = sum(len(r.survivors) for r in reports)
    by_hidden = sum(r.caught_by_hidden for r in reports)
    hidden_note = f" ({by_hidden} of them only on the hidden dataset)" if by_hidden else ""
    caught = f"{total - accepted}{hidden_note}"
    lines.append(f"{total} mutants of {len(reports)} reference solutions; the checks catch {caught}, accept {accepted}.")
    return "\n".join(lines)
