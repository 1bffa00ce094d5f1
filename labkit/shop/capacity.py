"""What a load of the shop costs (rows, disk, memory, time) and whether this machine can hold it.

The per-scale figures were measured once, with ``/usr/bin/time -v labkit load --scale S`` for
S = 1, 5, 10 on a 2-core machine (PostgreSQL 16, portable provider) and ``pg_database_size``
of the loaded template:

=====  ==========  =========  ===========  =======
scale  rows        database   loader peak  time
=====  ==========  =========  ===========  =======
1        797,578     135 MB      226 MB     3.2 s
5      3,973,246     622 MB      721 MB    14.9 s
10     7,934,289   1,228 MB    1,348 MB    31.4 s
=====  ==========  =========  ===========  =======

The estimates are the straight lines through those points, rounded up a little.
"""

from __future__ import annotations

import math
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg

from labkit.errors import ConfigError
from labkit.servers.base import ConnectionInfo

MB = 1 << 20
ROWS_PER_SCALE = 794_000
DISK_PER_SCALE = 122 * MB
DISK_FIXED = 15 * MB
MEMORY_PER_SCALE = 126 * MB
MEMORY_FIXED = 110 * MB
SECONDS_PER_SCALE = 3.2
WAL_MARGIN_MAX = 1024 * MB  # PostgreSQL's default max_wal_size: WAL the load may keep on disk
LARGE_SCALE = 3.0  # from here on a load says what it will take before it starts
MAX_SCALE = 10_000.0


def check_scale(scale: object) -> float:
    """``scale`` as a positive, finite number, or one clear ConfigError."""
    try:
        value = float(scale)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > MAX_SCALE:
        raise ConfigError(
            f"The scale must be a positive number (at most {MAX_SCALE:g}), not {scale!r}.",
            "Use e.g. --scale 1 (the default, classroom size) or --scale 10 (millions of rows); "
            "the same applies to LABKIT_SCALE and 'scale' in labkit.toml.",
        )
    return value


@dataclass(frozen=True)
class Estimate:
    """What loading the shop at ``scale`` takes, from the measured figures above."""

    scale: float
    rows: int
    database_bytes: int
    memory_bytes: int
    seconds: float

    @classmethod
    def for_scale(cls, scale: float) -> Estimate:
        return cls(
            scale=scale,
            rows=math.ceil(ROWS_PER_SCALE * scale),
            database_bytes=math.ceil(DISK_FIXED + DISK_PER_SCALE * scale),
            memory_bytes=math.ceil(MEMORY_FIXED + MEMORY_PER_SCALE * scale),
            seconds=SECONDS_PER_SCALE * scale,
        )

    def disk_needed(self, *, with_shop: bool, freed: int = 0) -> int:
        """Free disk the load needs at its peak: the new copy and its WAL while loading, then
        (with ``with_shop``) the new ``shop`` cloned from it once ``freed`` bytes were dropped."""
        while_loading = self.database_bytes + min(self.database_bytes, WAL_MARGIN_MAX)
        return while_loading + (max(0, self.database_bytes - freed) if with_shop else 0)

    def summary(self, disk: int) -> str:
        return (
            f"about {self.rows:,} rows, {human(disk)} of disk, {human(self.memory_bytes)} of memory "
            f"and {human_seconds(self.seconds)} on this kind of machine"
        )


def human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("bytes", "KB", "MB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def data_directory(info: ConnectionInfo) -> Path | None:
    """The server's data directory when it is on this machine and readable here (else None:
    a container or a remote server, whose free space labkit cannot see)."""
    try:
        with info.connect() as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('data_directory')").fetchone()
    except psycopg.Error:
        return None
    if not row:
        return None
    path = Path(str(row[0]))
    try:
        lines = (path / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    # line 4 of postmaster.pid is the port: the directory is this server's, not a namesake's
    return path if len(lines) > 3 and lines[3].strip() == str(info.port) else None


def free_disk(path: Path) -> int:
    return shutil.disk_usage(path).free


def available_memory() -> int | None:
    """Memory available to a new process without swapping (Linux's MemAvailable), or None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # present with Jupyter on most machines; optional

        return int(psutil.virtual_memory().available)
    except Exception:  # no way to know: skip the check
        return None


DISK_RESERVE = 128 * MB  # a load is stopped before free space falls below this: the server keeps room for its WAL


class DiskGuard:
    """While a load runs into ``dbname``: if free space under ``data_dir`` falls below the reserve,
    cancel the load's sessions, so that the disk never fills and the server never stops for want
    of room for its WAL. ``tripped`` says whether it did. Does nothing when ``data_dir`` is None."""

    def __init__(self, info: ConnectionInfo, data_dir: Path | None, dbname: str, *, reserve: int = DISK_RESERVE) -> None:
        self.info, self.data_dir, self.dbname, self.reserve = info, data_dir, dbname, reserve
        self.tripped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="labkit-disk-guard", daemon=True)

    def __enter__(self) -> DiskGuard:
        if self.data_dir is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _watch(self) -> None:
        assert self.data_dir is not None
        while not self._done.wait(0.1):
            try:
                if free_disk(self.data_dir) >= self.reserve:
                    continue
                self.tripped = True
                with self.info.connect() as conn:
                    conn.execute(
                        "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()",
                        [self.dbname],
                    )
            except (OSError, psycopg.Error):
                continue
