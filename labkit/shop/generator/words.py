"""The word lists and parameters in datasets/, read once."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from typing import Any

from labkit.config import DATASETS_DIR

DATASETS = DATASETS_DIR


def _lines(name: str) -> list[str]:
    text = (DATASETS / name).read_text(encoding="utf-8")
    return [line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def words(name: str) -> list[str]:
    return [line.strip() for line in _lines(name)]


def table(name: str) -> list[list[str]]:
    """Rows of a ``a | b | c`` file."""
    return [[cell.strip() for cell in line.split("|")] for line in _lines(name)]


@functools.cache
def params() -> dict[str, Any]:
    return tomllib.loads((DATASETS / "params.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Category:
    id: int
    parent_id: int | None
    name: str
    path: tuple[str, ...]
    nouns: tuple[str, ...] = ()
    price_cents: tuple[int, int] = (0, 0)

    @property
    def is_leaf(self) -> bool:
        return bool(self.nouns)


def categories() -> list[Category]:
    """The category tree in file order; ids 1..n."""
    result: list[Category] = []
    stack: list[tuple[int, Category]] = []  # (depth, category)
    for line in _lines("categories.txt"):
        depth = (len(line) - len(line.lstrip(" "))) // 2
        parts = [p.strip() for p in line.strip().split("|")]
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        nouns: tuple[str, ...] = ()
        price = (0, 0)
        if len(parts) == 3:
            nouns = tuple(n.strip() for n in parts[1].split(","))
            low, high = parts[2].split("-")
            price = (int(low) * 100, int(high) * 100)
        category = Category(
            id=len(result) + 1,
            parent_id=parent.id if parent else None,
            name=parts[0],
            path=(*parent.path, parts[0]) if parent else (parts[0],),
            nouns=nouns,
            price_cents=price,
        )
        result.append(category)
        stack.append((depth, category))
    return result
