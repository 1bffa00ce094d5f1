"""Regenerate exercise fingerprints from the reference solutions in the instructor notebooks.

A reference solution is a code cell tagged ``solution`` that assigns the SQL to a variable
named ``answer_NN_K`` (exercise "NN.K"); its ``metadata.labkit`` holds the policy:
``order``, ``column_names``, ``decimals``, ``requires``, ``kind``, ``state_sql``, ``plan``,
``plan_sql``, ``hints``, ``points``, ``read_only``, ``runs``, ``statements`` (how many statements an
answer may hold: 1 unless the exercise says e.g. ``"many"``). Refresh also finds out whether the
reference result holds on the shop stored in another physical order (``shuffled``): then a
passing answer is checked there too.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psycopg

from labkit.config import NOTEBOOKS_DIR
from labkit.exercises import checker as checking
from labkit.exercises.fingerprint import canonical, fingerprint

POLICY_KEYS = (
    "title",
    "kind",
    "order",
    "column_names",
    "decimals",
    "requires",
    "state_sql",
    "plan",
    "plan_sql",
    "hints",
    "points",
    "read_only",
    "runs",
    "statements",
    "functions",
    "task",
    "creates_foreign_servers",
)
TASKS = ("recall", "transfer", "debug")  # what an exercise asks: repeat the lesson, use it on a new question, fix something broken
TITLE = re.compile(r"^#+\s*Exercise\s+(\d\d\.\d+)\s*[—–:-]+\s*(.+)$", re.MULTILINE)
NOTEBOOKS = NOTEBOOKS_DIR


@dataclass(frozen=True)
class Solution:
    exercise: str
    sql: str
    notebook: str
    policy: dict[str, Any]


def exercise_id(variable: str) -> str | None:
    parts = variable.split("_")
    if len(parts) == 3 and parts[0] == "answer" and parts[1].isdigit() and parts[2].isdigit():
        return f"{parts[1]}.{parts[2]}"
    return None


def solutions(notebook: Path) -> list[Solution]:
    """Reference solutions in one instructor notebook."""
    nb = nbformat.read(notebook, as_version=4)
    found = []
    titles: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (heading := TITLE.search(cell.source)):
            titles[heading[1]] = heading[2].strip()
        if cell.cell_type != "code" or "solution" not in cell.metadata.get("tags", []):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name) and (key := exercise_id(target.id)):
                        policy = dict(cell.metadata.get("labkit", {}))
                        if unknown := sorted(set(policy) - set(POLICY_KEYS)):
                            raise ValueError(
                                f"{notebook.name}, exercise {key}: unknown policy key(s) {', '.join(unknown)} in the cell's "
                                f"metadata.labkit; known: {', '.join(POLICY_KEYS)}"
                            )
                        if policy.get("task", "recall") not in TASKS:
                            known = ", ".join(TASKS)
                            raise ValueError(f"{notebook.name}, exercise {key}: task must be one of {known}, not {policy['task']!r}")
                        if key in titles:
                            policy.setdefault("title", titles[key])
                        found.append(Solution(key, node.value.value, notebook.stem, policy))
    return found


def all_solutions(notebooks_dir: Path = NOTEBOOKS) -> list[Solution]:
    """Reference solutions of every numbered notebook in ``notebooks_dir``, in course order."""
    return [s for notebook in sorted(notebooks_dir.glob("[0-9][0-9]-*.ipynb")) for s in solutions(notebook)]


def same_result(spec: dict[str, Any]) -> bool:
    """A plan exercise whose answer must also return the reference's rows (``"plan": {"same_result": true}``)."""
    return spec.get("kind") == "plan" and bool(spec.get("plan", {}).get("same_result")) and not spec.get("plan_sql")


def expected_for(conn: psycopg.Connection, spec: dict[str, Any], sql: str) -> dict[str, Any] | None:
    kind = spec.get("kind", "result")
    if kind == "plan" and not same_result(spec):
        return None
    if kind == "state":
        columns, rows = checking._state(conn, sql, spec)
    else:
        columns, rows = checking.run_query(conn, sql, read_only=spec.get("read_only", True))
    return canonical(fingerprint(columns, rows, spec["salt"], spec.get("decimals", 2)), spec.get("order", "any")).to_json()


def order_independent(shuffled_conn: psycopg.Connection | None, spec: dict[str, Any], sql: str) -> bool:
    """Whether the reference result is the same on the shuffled copy (only read-only result exercises)."""
    if shuffled_conn is None or spec.get("kind", "result") != "result" or not spec.get("read_only", True):
        return False
    from labkit.exercises import shuffled

    try:
        shuffled.prepare_session(shuffled_conn)
        return expected_for(shuffled_conn, spec, sql) == spec.get("expected")
    except psycopg.Error:
        return False


def refresh(conn: psycopg.Connection, notebooks_dir: Path = NOTEBOOKS, spec_dir: Path = checking.SPEC_DIR,
            shuffled_conn: psycopg.Connection | None = None) -> list[str]:  # fmt: skip
    """Rewrite exercises/NN-*.json from the notebooks. Returns the ids written."""
    written = []
    for notebook in sorted(notebooks_dir.glob("[0-9][0-9]-*.ipynb")):
        found = solutions(notebook)
        if not found:
            continue
        path = spec_dir / f"{notebook.stem}.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        new: dict[str, Any] = {}
        for solution in found:
            spec = {"salt": old.get(solution.exercise, {}).get("salt") or secrets.token_hex(8), **solution.policy}
            spec["points"] = spec.get("points", 1)
            if (expected := expected_for(conn, spec, solution.sql)) is not None:
                spec["expected"] = expected
            if order_independent(shuffled_conn, spec, solution.sql):
                spec["shuffled"] = True
            new[solution.exercise] = spec
            written.append(solution.exercise)
        path.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    checking.specs.cache_clear()
    return written


def stale(conn: psycopg.Connection, notebooks_dir: Path = NOTEBOOKS) -> list[str]:
    """Exercises whose stored fingerprint or policy no longer matches their reference solution."""
    problems = []
    for notebook in sorted(notebooks_dir.glob("[0-9][0-9]-*.ipynb")):
        for solution in solutions(notebook):
            try:
                spec = checking.spec(solution.exercise)
            except KeyError:
                problems.append(f"{solution.exercise}: no spec (run 'labkit exercises refresh')")
                continue
            if any(spec.get(k) != v for k, v in solution.policy.items()):
                problems.append(f"{solution.exercise}: the policy in {notebook.name} differs from the spec")
            elif (spec.get("kind", "result") != "plan" or same_result(spec)) and spec.get("expected") != expected_for(
                conn, spec, solution.sql
            ):
                problems.append(f"{solution.exercise}: stored fingerprint is stale")
            elif spec.get("kind") == "plan" and not checking.evaluate(conn, solution.exercise, solution.sql).passed:
                problems.append(f"{solution.exercise}: the reference solution does not pass its plan check")
    return problems
