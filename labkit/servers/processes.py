"""Is a process still there? One answer for every server labkit starts (clusters, poolers, WAL receivers)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live owner from a reused PID), or None."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    return None


def alive(pid: int, start: str | None = None, comm: str | None = None) -> bool:
    """``pid`` runs (not a zombie), and, when given, started at ``start`` and is the program ``comm``.

    Without /proc (macOS) only the signal check can be made, and a live PID counts as the one meant."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return sys.platform != "linux"
    try:
        if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return False
        if comm and proc.joinpath("comm").read_text().strip() != comm:
            return False
    except (OSError, IndexError):
        return False
    return start is None or start_time(pid) == start
