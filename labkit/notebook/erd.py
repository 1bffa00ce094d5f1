"""An entity-relationship diagram drawn from the live catalog (so it never goes stale).

``draw`` returns a Mermaid ``erDiagram``: JupyterLab 4 renders it (``text/vnd.mermaid``), and the
Markdown fallback (a fenced ``mermaid`` block) is what GitHub's notebook view shows. Relationships use
crow's feet: ``users ||--o{ orders`` reads "one user has zero or more orders".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from labkit.config import SQL_DIR

QUERIES = SQL_DIR / "queries"
# Drawn at its natural size (text at reading size; a wide diagram scrolls) rather than shrunk to the page width.
MERMAID_CONFIG = '%%{init: {"er": {"useMaxWidth": false}}}%%'
INTERNAL_PREFIX = "labkit_"  # the lab's own bookkeeping tables are not part of the shop
TYPE_NAMES = {"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp", "character varying": "varchar",
              "double precision": "float8", "time without time zone": "time", "character": "char", "bit varying": "varbit"}  # fmt: skip


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str, bool]] = field(default_factory=list)  # name, type, primary key
    not_null: set[str] = field(default_factory=set)


@dataclass
class ForeignKey:
    from_table: str
    to_table: str
    columns: str  # the referencing columns, "a, b"

    @property
    def column_names(self) -> list[str]:
        return [c.strip() for c in self.columns.split(",")]


def read_catalog(conn: psycopg.Connection, schema: str = "public") -> tuple[list[Table], list[ForeignKey]]:
    """The shop's tables (partitions folded into their parent; not labkit's own tables) and foreign keys of ``schema``."""
    tables: dict[str, Table] = {}
    for name, _pos, column, data_type, not_null, is_pk in conn.execute((QUERIES / "erd_tables.sql").read_text(), {"schema": schema}):
        if name.startswith(INTERNAL_PREFIX):
            continue
        table = tables.setdefault(name, Table(name))
        table.columns.append((column, data_type, is_pk))
        if not_null:
            table.not_null.add(column)
    keys = [
        ForeignKey(src, dst, cols)
        for src, dst, _name, cols in conn.execute((QUERIES / "erd_foreign_keys.sql").read_text(), {"schema": schema})
        if src in tables and dst in tables
    ]
    return list(tables.values()), keys


def _short_type(data_type: str) -> str:
    """A Mermaid attribute type is one word: ``numeric(12,2)`` → ``numeric``, ``character varying(20)`` → ``varchar``."""
    base, brackets = re.subn(r"\[\]", "", data_type)
    base = re.sub(r"\(.*?\)", "", base).strip()
    base = TYPE_NAMES.get(base, base)
    return re.sub(r"[^A-Za-z0-9_]", "_", base) + "[]" * brackets


def _relationship(key: ForeignKey, child: Table) -> str:
    """Crow's foot: the referenced side is one (``||``) or zero-or-one (``|o``); the referencing side many or at most one."""
    required = all(c in child.not_null for c in key.column_names)
    primary = {name for name, _type, pk in child.columns if pk}
    one_to_one = set(key.column_names) == primary
    left = "||" if required else "|o"
    right = "o|" if one_to_one else "o{"
    label = key.columns.replace('"', "'")
    return f'    {key.to_table} {left}--{right} {key.from_table} : "{label}"'


def mermaid(tables: list[Table], keys: list[ForeignKey]) -> str:
    """The ``erDiagram`` source: every table with its columns (PK/FK marked), then the relationships."""
    fk_columns = {(k.from_table, c) for k in keys for c in k.column_names}
    lines = [MERMAID_CONFIG, "erDiagram"]
    by_name = {t.name: t for t in tables}
    for key in keys:
        lines.append(_relationship(key, by_name[key.from_table]))
    for table in sorted(tables, key=lambda t: t.name):
        lines.append(f"    {table.name} {{")
        for column, data_type, pk in table.columns:
            marks = ", ".join(m for m, on in (("PK", pk), ("FK", (table.name, column) in fk_columns)) if on)
            lines.append(f"        {_short_type(data_type)} {column}{' ' + marks if marks else ''}")
        lines.append("    }")
    return "\n".join(lines)


@dataclass
class Diagram:
    """A Mermaid diagram for Jupyter: rendered by JupyterLab, a fenced block for GitHub, the source as text."""

    source: str
    title: str = ""
    note: str = ""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        heading = f"**{self.title}**\n\n" if self.title else ""
        note = f"\n\n{self.note}" if self.note else ""
        return {
            "text/vnd.mermaid": self.source,
            "text/markdown": f"{heading}```mermaid\n{self.source}\n```{note}",
            "text/plain": self.source + (f"\n\n{self.note}" if self.note else ""),
        }

    def __str__(self) -> str:
        return self.source


def draw(tables: list[Table], keys: list[ForeignKey], title: str = "The shop database", *, standalone: bool = False) -> Diagram:
    """The ER diagram of ``tables`` and ``keys`` (from :func:`read_catalog`), as a Mermaid ``erDiagram``.

    Tables no foreign key links are named below the diagram rather than drawn (they would only make it
    wider and its text smaller); ``standalone=True`` draws them too."""
    linked = {k.from_table for k in keys} | {k.to_table for k in keys}
    alone = sorted(t.name for t in tables if t.name not in linked)
    if standalone or not alone:
        return Diagram(mermaid(tables, keys), title)
    names = ", ".join(f"`{name}`" for name in alone)
    note = f"Not linked to other tables by a foreign key, so not drawn: {names} (`%sql \\d {alone[0]}` shows a table's columns)."
    return Diagram(mermaid([t for t in tables if t.name in linked], keys), title, note)
