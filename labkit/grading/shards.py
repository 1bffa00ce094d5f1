"""Grading in parts: ``--shard I/N`` grades a stable, disjoint I-th of N parts of a submissions folder, and
``merge`` joins the parts into exactly the gradebook one unsharded run writes.

A student's part is a hash of their name, so it never depends on the machine, the order of files or
the other students. A part file is the gradebook's rows with one more column in front, each row's
place in the whole class (and the class size in its header), so a missing or doubled part is an
error rather than a silently short gradebook.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from labkit.errors import ConfigError
from labkit.grading import gradebook
from labkit.grading.grader import SubmissionGrade

T = TypeVar("T")
ORDER = "labkit part: place in a class of "


def parse(text: str) -> tuple[int, int]:
    """``"2/4"`` → (2, 4), with a clear error for anything else."""
    index, _, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not I/N.", "For example --shard 1/4 … --shard 4/4 for four parts.") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: the part must be between 1 and {n}.", "For example --shard 1/4 … --shard 4/4.")
    return i, n


def part_of(student: str, count: int) -> int:
    """The 1-based part ``student`` belongs to among ``count``."""
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:8], "big") % count + 1


def select(items: Sequence[T], names: Sequence[str], index: int, count: int) -> list[tuple[int, T]]:
    """The items of part ``index`` of ``count``, each with its place in the whole list."""
    return [(place, item) for place, (item, name) in enumerate(zip(items, names, strict=True)) if part_of(name, count) == index]


def write_part(path: Path, results: Sequence[SubmissionGrade], places: Sequence[int], total: int, exercises: list[str]) -> None:
    """The gradebook rows of one part, each prefixed with its place in the class."""
    scratch = path.with_name(f".{path.name}.rows")
    gradebook.write_csv(scratch, list(results), exercises)
    try:
        rows = list(csv.reader(io.StringIO(scratch.read_text(), newline="")))
    finally:
        scratch.unlink(missing_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"{ORDER}{total}", *rows[0]])
        for place, row in zip(places, rows[1:], strict=True):
            writer.writerow([str(place), *row])


def merge(parts: Sequence[Path], out: Path) -> int:
    """Join part files into the gradebook; returns how many students it holds."""
    header: list[str] | None = None
    total = None
    rows: dict[int, list[str]] = {}
    for path in parts:
        try:
            with path.open(newline="") as handle:
                found = list(csv.reader(handle))
        except OSError as exc:
            raise ConfigError(f"Cannot read the part {path}: {exc.strerror}.", "Give the files the --shard runs wrote.") from None
        if not found or not found[0] or not found[0][0].startswith(ORDER):
            raise ConfigError(f"{path} is not a part of a sharded grading run.", "Give the files written by 'labkit grade --shard I/N'.")
        size = int(found[0][0].removeprefix(ORDER))
        if header is None:
            header, total = found[0][1:], size
        elif found[0][1:] != header or size != total:
            raise ConfigError(f"{path} comes from another grading run (other exercises or class).", "Merge the parts of one run only.")
        for row in found[1:]:
            place = int(row[0])
            if place in rows:
                raise ConfigError(f"{path} repeats a student of another part ({row[1]!r}).", "Give each part once.")
            rows[place] = row[1:]
    if header is None or total is None:
        raise ConfigError("No parts to merge.", "labkit grade merge PART1.csv PART2.csv … --out gradebook.csv")
    if missing := sorted(set(range(total)) - set(rows)):
        raise ConfigError(
            f"The parts hold {len(rows)} of the class's {total} submissions ({len(missing)} missing).",
            "Merge every part of the run (--shard 1/N … N/N).",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for place in range(total):
            writer.writerow(rows[place])
    return total
