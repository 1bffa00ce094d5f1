"""Fingerprints of result sets: enough to compare and locate differences, never the values.

Each value is normalised (numbers rounded to the exercise's tolerance, times in UTC ISO form,
JSON with sorted keys, NULL as a marker), then rows, columns and cells are hashed with a
per-exercise salt. A learner can read the fingerprint file; it does not reveal the answer.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NULL = "\x00NULL"


def normalise(value: Any, decimals: int) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        quantum = decimal.Decimal(1).scaleb(-decimals)
        number = decimal.Decimal(str(value)).quantize(quantum, rounding=decimal.ROUND_HALF_EVEN)
        return format(number.normalize() if number != 0 else decimal.Decimal(0), "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, str) and value[:1] in "{[" and value[-1:] in "}]":
        try:
            return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"))
        except ValueError:
            return value
    return str(value)


def _hash(salt: str, text: str) -> str:
    return hashlib.sha256(f"{salt}\x1f{text}".encode()).hexdigest()[:16]


@dataclass
class Fingerprint:
    """Salted hashes of a result: per row, per column (as a multiset), per cell."""

    columns: list[str]
    rows: list[str]  # row hashes in result order
    column_sets: list[str] = field(default_factory=list)  # hash of each column's sorted values
    cells: list[list[str]] = field(default_factory=list)  # cell hashes, row by row

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "column_sets": self.column_sets, "cells": self.cells}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(data["columns"], data["rows"], data.get("column_sets", []), data.get("cells", []))


def fingerprint(columns: list[str], rows: list[tuple[Any, ...]], salt: str, decimals: int = 2) -> Fingerprint:
    norm = [[normalise(v, decimals) for v in row] for row in rows]
    row_hashes = [_hash(salt, "\x1e".join(r)) for r in norm]
    column_sets = [_hash(salt, "\x1e".join(sorted(r[i] for r in norm))) for i in range(len(columns))]
    cells = [[_hash(salt, f"{i}\x1d{v}") for i, v in enumerate(r)] for r in norm]
    return Fingerprint([c.lower() for c in columns], row_hashes, column_sets, cells)


def canonical(fp: Fingerprint, order: str | list[str] = "any") -> Fingerprint:
    """The same fingerprint with every order the check ignores made canonical.

    Unordered results are sorted by row hash; results ordered by some keys keep the key order
    but sort rows that tie on those keys. So an expected result stored once does not go stale
    when another plan returns ties in another order.
    """
    if order == "all":
        return fp
    keys = [] if order == "any" else [fp.columns.index(k.lower()) for k in order]
    run, runs, previous = 0, [], None
    for cells in fp.cells:  # a run: consecutive rows with equal keys
        key = tuple(cells[k] for k in keys)
        run += key != previous and previous is not None
        runs.append(run)
        previous = key
    index = sorted(range(len(fp.rows)), key=lambda i: (runs[i], fp.rows[i]))
    return Fingerprint(fp.columns, [fp.rows[i] for i in index], fp.column_sets, [fp.cells[i] for i in index])


def same_multiset(a: list[str], b: list[str]) -> bool:
    return Counter(a) == Counter(b)
