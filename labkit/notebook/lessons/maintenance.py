"""Helpers for the monitoring and maintenance lesson (10): what VACUUM VERBOSE reports, and the lab
server's own log read from a mark on."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from labkit.errors import LabkitError
from labkit.servers.cluster import ClusterPaths

_COSTS = re.compile(r"\s+\(cost=[^)]*\)")
_DURATION = re.compile(r"duration: [0-9.]+ ms")


class ServerLogUnavailable(LabkitError):
    """The lab server's log file cannot be read through the server."""


def vacuum_report(
    conn: psycopg.Connection, table: str, *, freeze: bool = False, lines: tuple[str, ...] = ("pages:", "tuples:")
) -> list[str]:
    """Run ``VACUUM (VERBOSE) table`` (``FREEZE`` too if asked) and return the lines of its report about the table
    itself (not its TOAST table) that start with one of ``lines``; the others (timings, I/O, xid cutoffs) vary by run."""
    messages: list[str] = []

    def keep(diagnostic: psycopg.errors.Diagnostic) -> None:
        messages.append(diagnostic.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        conn.execute(f"VACUUM ({'FREEZE, ' if freeze else ''}VERBOSE) {table}")
    finally:
        conn.remove_notice_handler(keep)
    report = next((m for m in messages if m.startswith("finished vacuuming") and "pg_toast" not in m.splitlines()[0]), "")
    return [line for line in report.splitlines() if line.startswith(lines)]


class ServerLog:
    """The lab server's log file (``server.log`` beside the data directory, see ``ClusterPaths``), read through
    the server with ``pg_read_file`` (the lab's owner is a superuser): ``mark()`` remembers where it ends,
    ``lines_since_mark()`` returns what this session logged after that, without timestamps, process ids or durations."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        data_directory = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
        self.path = str(ClusterPaths(Path(data_directory).parent).log)
        self.pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.offset = 0

    def _size(self) -> int:
        size = self.conn.execute("SELECT (pg_stat_file(%s, true)).size", [self.path]).fetchone()[0]
        if size is None:
            raise ServerLogUnavailable(
                f"The lab server writes no log file at {self.path} (the docker provider logs to the container's output).",
                "Use the portable or local provider for this lesson: labkit down, then labkit up --server portable.",
            )
        return int(size)

    def mark(self) -> None:
        self.offset = self._size()

    def lines_since_mark(self) -> list[str]:
        """This session's log lines written since ``mark()``: each entry's message (``LOG:  …``) and its
        continuation lines, with durations and plan costs replaced, so that they print the same on every run."""
        length = self._size() - self.offset
        text = self.conn.execute("SELECT pg_read_file(%s, %s, %s)", [self.path, self.offset, length]).fetchone()[0] if length > 0 else ""
        ours, kept = False, []
        for line in text.splitlines():
            if not line.startswith(("\t", " ")):  # a new entry: "<time> UTC [<pid>] LEVEL:  message"
                ours = f"[{self.pid}] " in line
                line = line.partition("] ")[2] if ours else line
            if ours:
                kept.append(_COSTS.sub("", _DURATION.sub("duration: … ms", line)))
        return kept
