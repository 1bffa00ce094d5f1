"""Hints in levels: the concept, then the approach, then nearly the answer.

An exercise's hints come from its spec (``hints``, written in the solution cell's
``metadata.labkit.hints``). Each call shows the next level not yet shown, whether the learner
asked (``shop.hint``) or the check offered one after repeated failures; the count is shared.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from typing import Any

LEVELS = ("the concept", "the approach", "nearly the answer")
WIDTH = 100  # a notebook shows plain text as it is: lines of a readable length
shown: Counter[str] = Counter()


class Hint(str):
    """A hint as a notebook shows it: plain text, no quotes."""

    def __repr__(self) -> str:
        return str(self)


def level_name(index: int, count: int) -> str:
    """What hint ``index`` (from 0) of ``count`` is about: the first names the concept, the last of three or more nearly answers."""
    if index == 0:
        return LEVELS[0]
    if index == count - 1 and count >= 3:
        return LEVELS[2]
    return LEVELS[1]


def next_hint(exercise: str, spec: dict[str, Any]) -> Hint:
    """The next level of hint for ``exercise`` (the last one again once all were shown), counted as shown."""
    hints = spec.get("hints", [])
    if not hints:
        return Hint(f"No hints for {exercise}: re-read the task, and look at the tables it names with %sql \\d table.")
    index = min(shown[exercise], len(hints) - 1)
    shown[exercise] = index + 1
    left = len(hints) - index - 1
    head = f"Hint {index + 1} of {len(hints)} for {exercise} ({level_name(index, len(hints))}): {hints[index]}"
    if left:
        more = f"{left} more: shop.hint(\"{exercise}\") again."
    else:
        more = f"That was the last hint; after a checked attempt, shop.solution(\"{exercise}\") shows a reference solution."
    return Hint(f"{textwrap.fill(head, WIDTH)}\n{more}")


def automatic(exercise: str, spec: dict[str, Any]) -> str | None:
    """The feedback line after repeated failures: the next level not yet shown, or a pointer to the solution once all were."""
    hints = spec.get("hints", [])
    if not hints:
        return None
    if shown[exercise] >= len(hints):
        return f"All {len(hints)} hints were shown; shop.solution(\"{exercise}\") shows a reference solution."
    return next_hint(exercise, spec).replace("\n", " ")
