"""What one sandbox may use of the shared server, watched while it runs.

PostgreSQL bounds a statement's time (statement_timeout) and, per role, its sort and hash memory
(work_mem, hash_mem_multiplier) and temporary files (temp_file_limit, when the grader is a
superuser). It has no bound on what one backend's aggregates hold (``array_agg`` over millions of
rows) or on how much a role writes into its database. The monitor samples every active sandbox
twice a second: a backend whose private memory passes ``MEMORY_LIMIT`` (read from /proc where the
server runs on this machine), or a sandbox database that grew by more than ``DISK_LIMIT``, has its
sessions ended, and the answer gets that as its feedback.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from labkit.servers.base import ConnectionInfo

MEMORY_LIMIT = 512 * 1024**2  # bytes of private memory per backend
DISK_LIMIT = 1024**3  # bytes a sandbox database may grow by
INTERVAL = 0.5  # seconds between samples


def private_memory(pid: int) -> int | None:
    """A process's resident private memory (RssAnon), where /proc shows it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Monitor:
    """Samples the sandboxes registered with it; ends the sessions of one that passes a limit."""

    def __init__(self, admin: ConnectionInfo, *, memory_limit: int = MEMORY_LIMIT, disk_limit: int = DISK_LIMIT) -> None:
        self.admin, self.memory_limit, self.disk_limit = admin, memory_limit, disk_limit
        self._boxes: dict[str, int] = {}  # role → database size when registered
        self._breaches: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="labkit-sandbox-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def register(self, role: str, size: int) -> None:
        with self._lock:
            self._boxes[role] = size
            self._breaches.pop(role, None)

    def unregister(self, role: str) -> None:
        with self._lock:
            self._boxes.pop(role, None)

    def breach(self, role: str) -> str | None:
        """Why the monitor ended ``role``'s sessions since the last call, if it did."""
        with self._lock:
            return self._breaches.pop(role, None)

    def _loop(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.wait(INTERVAL):
            try:
                conn = conn if conn is not None and not conn.closed else self.admin.connect(connect_timeout=10)
                self._sample(conn)
            except psycopg.Error:
                conn = None  # the server is busy or restarting: try again at the next sample
        if conn is not None:
            conn.close()

    def _sample(self, conn: psycopg.Connection) -> None:
        with self._lock:
            boxes = dict(self._boxes)
        if not boxes:
            return
        rows = conn.execute("SELECT usename, pid FROM pg_stat_activity WHERE usename = ANY(%s)", [list(boxes)]).fetchall()
        for role, pid in rows:
            used = private_memory(pid)
            if used is not None and used > self.memory_limit:
                self._end(conn, role, f"used more than {self.memory_limit // 1024**2} MB of server memory in one session")
        sizes = conn.execute("SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY(%s)", [list(boxes)]).fetchall()
        for role, size in sizes:
            if size - boxes[role] > self.disk_limit:
                self._end(conn, role, f"wrote more than {self.disk_limit // 1024**2} MB into its database")

    def _end(self, conn: psycopg.Connection, role: str, why: str) -> None:
        with self._lock:
            self._breaches.setdefault(role, why)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
