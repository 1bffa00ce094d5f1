"""EXPLAIN as a picture: a plan tree with estimated vs actual rows and each node's share of time.

``plan(conn, sql)`` returns the parsed ``EXPLAIN (FORMAT JSON)`` plan as :class:`PlanNode`;
``draw(node)`` renders it with matplotlib. Misestimates (actual/estimated off by 10× or more)
are highlighted, because that is where plans go wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

MISESTIMATE = 10.0


@dataclass
class PlanNode:
    """One node of a plan, with the fields a learner reads first."""

    node_type: str
    relation: str | None
    index: str | None
    estimated_rows: float
    actual_rows: float | None  # per loop × loops; None without ANALYZE
    total_ms: float | None  # inclusive time, all loops
    detail: str | None
    children: list[PlanNode] = field(default_factory=list)
    stopped_early: bool = False  # below a Limit: fewer rows than estimated is expected

    @property
    def self_ms(self) -> float | None:
        """Time spent in this node alone (inclusive time minus the children's)."""
        if self.total_ms is None:
            return None
        return max(0.0, self.total_ms - sum(c.total_ms or 0.0 for c in self.children))

    @property
    def label(self) -> str:
        parts = [self.node_type]
        if self.index:
            parts.append(f"using {self.index}")
        if self.relation:
            parts.append(f"on {self.relation}")
        return " ".join(parts)

    @property
    def misestimated(self) -> bool:
        if self.actual_rows is None:
            return False
        if self.stopped_early and self.actual_rows < self.estimated_rows:
            return False
        low, high = sorted((max(self.estimated_rows, 1.0), max(self.actual_rows, 1.0)))
        return high / low >= MISESTIMATE

    def walk(self) -> list[PlanNode]:
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


_DETAIL_KEYS = ("Index Cond", "Recheck Cond", "Filter", "Hash Cond", "Join Filter", "Merge Cond", "Sort Key", "Group Key")


JOIN_NAMES = {"Hash Join": "Hash", "Merge Join": "Merge", "Nested Loop": "Nested Loop"}
AGGREGATE_STRATEGIES = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate", "Plain": "Aggregate"}
SETOP_STRATEGIES = {"Hashed": "HashSetOp", "Sorted": "SetOp"}


def node_name(plan: dict[str, Any]) -> str:
    """The node's name as text EXPLAIN prints it: HashAggregate, Parallel Seq Scan, Hash Left Join, Insert, …"""
    node = plan["Node Type"]
    if node == "Aggregate":
        name = AGGREGATE_STRATEGIES.get(plan.get("Strategy", "Plain"), node)
    elif node == "SetOp":
        name = SETOP_STRATEGIES.get(plan.get("Strategy", "Sorted"), node)
    elif node == "ModifyTable":
        name = plan.get("Operation", node)
    elif node in JOIN_NAMES and plan.get("Join Type", "Inner") != "Inner":
        name = f"{JOIN_NAMES[node]} {plan['Join Type']} Join"
    else:
        name = node
    if plan.get("Scan Direction") == "Backward":
        name += " Backward"
    if plan.get("Partial Mode", "Simple") != "Simple":
        name = f"{plan['Partial Mode']} {name}"
    if plan.get("Parallel Aware"):
        name = f"Parallel {name}"
    if plan.get("Async Capable"):
        name = f"Async {name}"
    return name


def parse(plan: dict[str, Any], *, below_limit: bool = False) -> PlanNode:
    """Build a PlanNode tree from one ``Plan`` object of EXPLAIN's JSON."""
    below_limit = below_limit or plan["Node Type"] == "Limit"
    loops = plan.get("Actual Loops")
    actual = plan["Actual Rows"] * loops if loops is not None and "Actual Rows" in plan else None
    total = plan["Actual Total Time"] * loops if loops is not None and "Actual Total Time" in plan else None
    detail = next((f"{key}: {plan[key]}" for key in _DETAIL_KEYS if key in plan), None)
    if isinstance(detail, str) and len(detail) > 60:
        detail = detail[:57] + "…"
    return PlanNode(
        node_type=node_name(plan),
        relation=plan.get("Relation Name"),
        index=plan.get("Index Name"),
        estimated_rows=float(plan.get("Plan Rows", 0)) * (loops or 1),
        actual_rows=float(actual) if actual is not None else None,
        total_ms=float(total) if total is not None else None,
        detail=detail,
        children=[parse(child, below_limit=below_limit) for child in plan.get("Plans", [])],
        stopped_early=below_limit and plan["Node Type"] != "Limit",
    )


def plan(conn: psycopg.Connection, sql: str, *, analyze: bool = True) -> PlanNode:
    """EXPLAIN ``sql`` (with ANALYZE by default, inside a rolled-back transaction) and parse it."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    with conn.transaction(force_rollback=True):
        row = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return parse(document[0]["Plan"])


def _layout(node: PlanNode, depth: int, next_x: list[float], positions: dict[int, tuple[float, float]]) -> float:
    """Leaves get consecutive x positions; a parent sits above the middle of its children."""
    if not node.children:
        x = next_x[0]
        next_x[0] += 1.0
    else:
        xs = [_layout(child, depth + 1, next_x, positions) for child in node.children]
        x = (xs[0] + xs[-1]) / 2
    positions[id(node)] = (x, -float(depth))
    return x


def draw(root: PlanNode, title: str = "Query plan", ax: Any = None) -> Any:
    """Render the plan tree with matplotlib; returns the Figure.

    Each box: node type, relation/index, rows estimated → actual, and the share of the
    query's time spent in that node alone (darker = more time).
    """
    import matplotlib.pyplot as plt

    positions: dict[int, tuple[float, float]] = {}
    _layout(root, 0, [0.0], positions)
    nodes = root.walk()
    width = max(x for x, _ in positions.values()) + 1
    depth = -min(y for _, y in positions.values()) + 1
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 3.2 * width), max(2.5, 1.5 * depth)))
    else:
        fig = ax.figure
    total = root.total_ms or 0.0
    for node in nodes:
        x, y = positions[id(node)]
        for child in node.children:
            cx, cy = positions[id(child)]
            ax.plot([x, cx], [y - 0.25, cy + 0.25], color="0.5", linewidth=1, zorder=1)
    for node in nodes:
        x, y = positions[id(node)]
        share = (node.self_ms or 0.0) / total if total else 0.0
        lines = [node.node_type]
        if node.index or node.relation:
            lines.append(" ".join(p for p in (node.relation, f"[{node.index}]" if node.index else None) if p))
        rows = f"rows est {node.estimated_rows:,.0f}"
        if node.actual_rows is not None:
            rows += f" → actual {node.actual_rows:,.0f}"
        lines.append(rows)
        if total:
            lines.append(f"{share:.0%} of time")
        edge = "crimson" if node.misestimated else "0.3"
        ax.text(
            x, y, "\n".join(lines), ha="center", va="center", fontsize=8, zorder=2,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": plt.cm.Oranges(0.1 + 0.8 * share), "edgecolor": edge,
                  "linewidth": 2 if node.misestimated else 1},
        )  # fmt: skip
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-depth + 0.4, 0.6)
    ax.axis("off")
    suffix = f" — {total:.1f} ms total" if total else ""
    ax.set_title(title + suffix + ("  (red border: estimate off by ≥10×)" if any(n.misestimated for n in nodes) else ""))
    fig.tight_layout()
    return fig


def explain_text(conn: psycopg.Connection, sql: str) -> str:
    """``EXPLAIN (COSTS OFF)``: the plan's shape only, stable run to run (for stored outputs)."""
    rows = conn.execute(f"EXPLAIN (COSTS OFF) {sql}").fetchall()  # type: ignore[arg-type]
    return "\n".join(r[0] for r in rows)
