"""psql meta-commands (``\\d orders``, ``\\dt``, ``\\di+``) in a notebook, laid out as psql prints them.

pgspecial runs the catalog queries; we keep every section it returns (a pattern can match several
relations) and print each as psql does: the title, the column table, then the footers (indexes,
constraints, references, triggers). Text columns are left-aligned, in text and in HTML.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

RELATION_KINDS = {"r": "Table", "p": "Partitioned table", "v": "View", "m": "Materialized view", "i": "Index",
                  "I": "Partitioned index", "S": "Sequence", "f": "Foreign table", "c": "Composite type", "t": "TOAST table"}  # fmt: skip
LIST_TITLES = {"dt": "List of relations", "di": "List of relations", "dv": "List of relations", "dm": "List of relations",
               "ds": "List of relations", "d": "List of relations", "dn": "List of schemas", "df": "List of functions",
               "dT": "List of data types", "du": "List of roles", "dx": "List of installed extensions",
               "l": "List of databases"}  # fmt: skip
SELECT_STATUS = re.compile(r"^SELECT (\d+)$")


@dataclass
class Section:
    """One result of a meta-command: what psql prints for one relation or list."""

    title: str | None
    headers: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    footer: str = ""

    def text(self) -> str:
        lines = []
        if self.headers:
            cells = [[_cell(v) for v in row] for row in self.rows]
            widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(self.headers)]
            table = [" " + " | ".join(h.center(w) for h, w in zip(self.headers, widths, strict=True)),
                     "-" + "-+-".join("-" * w for w in widths) + "-"]  # fmt: skip
            for texts, row in zip(cells, self.rows, strict=True):
                table.append(" " + " | ".join(_align(v, w, raw) for v, w, raw in zip(texts, widths, row, strict=True)))
            if self.title:
                lines.append(self.title.center(len(table[1])).rstrip())
            lines += [line.rstrip() for line in table]
        elif self.title:
            lines.append(self.title)
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    def html(self) -> str:
        parts = [f"<p style='text-align:left'><b>{html.escape(self.title)}</b></p>"] if self.title else []
        if self.headers:
            left = "text-align:left;white-space:pre"
            head = "".join(f"<th style='{left}'>{html.escape(h)}</th>" for h in self.headers)
            body = "".join(
                "<tr>" + "".join(f"<td style='{_html_align(v)}'>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in self.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if self.footer:
            parts.append(f"<pre style='text-align:left'>{html.escape(self.footer)}</pre>")
        return "".join(parts)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _align(text: str, width: int, raw: Any) -> str:
    return text.rjust(width) if _is_number(raw) else text.ljust(width)


def _html_align(value: Any) -> str:
    return "text-align:right" if _is_number(value) else "text-align:left;white-space:pre"


class MetaOutput:
    """What ``%sql \\d …`` returns: text for the terminal and nbval, HTML for JupyterLab."""

    def __init__(self, sections: list[Section]) -> None:
        self.sections = sections

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return [row for section in self.sections for row in section.rows]

    def DataFrame(self) -> Any:  # JupySQL's name for the same thing
        import pandas as pd

        first = next((s for s in self.sections if s.headers), None)
        return pd.DataFrame(first.rows, columns=first.headers) if first else pd.DataFrame()

    def __repr__(self) -> str:
        return "\n\n".join(s.text() for s in self.sections)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        return "<div class='labkit-describe'>" + "<hr>".join(s.html() for s in self.sections) + "</div>"


def _titles(cursor: psycopg.Cursor, command: str, pattern: str) -> list[str | None]:
    """Titles for ``\\d pattern``: one per matching relation, in pgspecial's order."""
    from pgspecial.dbcommands import sql_name_pattern

    if command.rstrip("+") != "d" or not pattern:
        return []
    schema, relname = sql_name_pattern(pattern)
    where = ["n.nspname ~ %(nspname)s" if schema else "pg_catalog.pg_table_is_visible(c.oid)"]
    if relname:
        where.append("c.relname OPERATOR(pg_catalog.~) %(relname)s")
    cursor.execute(
        "SELECT c.relkind, n.nspname, c.relname FROM pg_catalog.pg_class c "  # fixed clauses; values are parameters
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " + " AND ".join(where) + " ORDER BY 2, 3",
        {"nspname": schema, "relname": relname},
    )
    return [f'{RELATION_KINDS.get(kind, "Relation")} "{nsp}.{name}"' for kind, nsp, name in cursor.fetchall()]


def meta_command(conn: psycopg.Connection, statement: str) -> MetaOutput:
    """Run a psql meta-command with pgspecial and lay its results out as psql does."""
    from pgspecial.main import PGSpecial

    command, _, pattern = statement.lstrip("\\").partition(" ")
    pattern = pattern.strip().rstrip(";").strip()
    cursor = conn.cursor()
    titles = _titles(conn.cursor(), command, pattern)
    list_title = LIST_TITLES.get(command.rstrip("+S"))
    sections = []
    for index, (title, cur, headers, status) in enumerate(PGSpecial().execute(cursor, statement)):
        rows = [tuple(r) for r in cur] if cur is not None and headers else []
        footer = str(status or "").rstrip()
        if match := SELECT_STATUS.match(footer):
            count = int(match.group(1))
            footer = f"({count} row{'' if count == 1 else 's'})"
        chosen = title or (titles[index] if index < len(titles) else None) or (list_title if headers else None)
        sections.append(Section(chosen, list(headers or []), rows, footer))
    return MetaOutput(sections)
