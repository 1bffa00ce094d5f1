"""An entity-relationship diagram drawn from the live catalog (so it never goes stale)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import psycopg

from labkit.config import SQL_DIR

QUERIES = SQL_DIR / "queries"
MAX_COLUMNS_SHOWN = 9


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str, bool]] = field(default_factory=list)  # name, type, primary key


@dataclass
class ForeignKey:
    from_table: str
    to_table: str
    columns: str


def read_catalog(conn: psycopg.Connection, schema: str = "public") -> tuple[list[Table], list[ForeignKey]]:
    """Tables (partitions folded into their parent) and foreign keys of ``schema``."""
    tables: dict[str, Table] = {}
    for name, _pos, column, data_type, _not_null, is_pk in conn.execute(
        (QUERIES / "erd_tables.sql").read_text(), {"schema": schema}
    ):
        tables.setdefault(name, Table(name)).columns.append((column, data_type, is_pk))
    keys = [
        ForeignKey(src, dst, cols)
        for src, dst, _name, cols in conn.execute((QUERIES / "erd_foreign_keys.sql").read_text(), {"schema": schema})
    ]
    return list(tables.values()), keys


def _short_type(data_type: str) -> str:
    return (
        data_type.replace("timestamp with time zone", "timestamptz")
        .replace("character varying", "varchar")
        .replace("numeric(12,2)", "numeric")
    )


def draw(tables: list[Table], keys: list[ForeignKey], title: str = "The shop database") -> Any:
    """Boxes for tables (primary-key columns marked 🔑-style with *), arrows for foreign keys."""
    import matplotlib.pyplot as plt

    linked = sorted({k.from_table for k in keys} | {k.to_table for k in keys})
    ordered = [t for t in sorted(tables, key=lambda t: (t.name not in linked, t.name))]
    cols = max(1, math.ceil(math.sqrt(len(ordered) * 1.6)))
    rows = math.ceil(len(ordered) / cols)
    fig, ax = plt.subplots(figsize=(3.3 * cols, 2.9 * rows))
    centers: dict[str, tuple[float, float]] = {}
    for index, table in enumerate(ordered):
        x, y = (index % cols) * 3.3, -(index // cols) * 2.9
        centers[table.name] = (x, y)
        shown = table.columns[:MAX_COLUMNS_SHOWN]
        lines = [f"{'*' if pk else ' '} {name}: {_short_type(t)}" for name, t, pk in shown]
        if len(table.columns) > MAX_COLUMNS_SHOWN:
            lines.append(f"  … {len(table.columns) - MAX_COLUMNS_SHOWN} more")
        ax.text(x, y, table.name, ha="center", va="bottom", fontsize=9, fontweight="bold", zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "#cfe2f3", "edgecolor": "0.3"})  # fmt: skip
        ax.text(x, y - 0.08, "\n".join(lines), ha="center", va="top", fontsize=6.5, family="monospace", zorder=3,
                bbox={"boxstyle": "square,pad=0.3", "facecolor": "white", "edgecolor": "0.3"})  # fmt: skip
    for key in keys:
        if key.from_table in centers and key.to_table in centers and key.from_table != key.to_table:
            (x1, y1), (x2, y2) = centers[key.from_table], centers[key.to_table]
            ax.annotate("", xy=(x2, y2 - 0.6), xytext=(x1, y1 - 0.6), zorder=1,
                        arrowprops={"arrowstyle": "-|>", "color": "tab:red", "alpha": 0.6, "connectionstyle": "arc3,rad=0.15"})  # fmt: skip
    ax.set_xlim(-1.8, (cols - 1) * 3.3 + 1.8)
    ax.set_ylim(-(rows - 1) * 2.9 - 2.6, 0.6)
    ax.axis("off")
    ax.set_title(f"{title}: tables (* = primary key column) and foreign keys (red arrows → referenced table)")
    fig.tight_layout()
    return fig
