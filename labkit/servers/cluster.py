"""A private PostgreSQL cluster: initdb, start, stop and inspect one data directory.

Shared by the ``local`` and ``portable`` providers; they differ only in where the
binaries come from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from labkit.errors import ConfigError, ServerStartError
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import PgInstall
from labkit.servers.unprivileged import RunAs

SUPERUSER = "postgres"
LISTEN = "127.0.0.1"
DEFAULT_PORT = 54316
START_TIMEOUT_S = 60
SERVER_SETTINGS = {
    "listen_addresses": f"'{LISTEN}'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "datestyle": "'iso, mdy'",
    "lc_messages": "'C'",
    "max_connections": "100",
    "pg_stat_statements.track": "'all'",
    "track_io_timing": "on",
}
CONF_FILE = "labkit.conf"


@dataclass(frozen=True)
class ClusterPaths:
    """Where one cluster keeps its files."""

    root: Path  # owned by the server user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a short temp path.
        if len(str(self.root / ".s.PGSQL.65535")) < 100:
            return self.root
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"labkit-{digest}"


def port_is_free(port: int, host: str = LISTEN) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(explicit: int | None, previous: int | None) -> int:
    """The explicit port (must be free), else the previous or default one if free, else any free port."""
    if explicit is not None:
        if not port_is_free(explicit):
            raise ConfigError(
                f"Port {explicit} on {LISTEN} is already in use by another program.",
                "Set LABKIT_PORT to another port, or unset it and labkit picks a free one.",
            )
        return explicit
    for candidate in (previous, DEFAULT_PORT):
        if candidate and port_is_free(candidate):
            return candidate
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN, 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One data directory run by one set of PostgreSQL binaries, as ``run_as``."""

    def __init__(self, install: PgInstall, paths: ClusterPaths, run_as: RunAs, provider: str) -> None:
        self.install = install
        self.paths = paths
        self.run_as = run_as
        self.provider = provider

    # -- inspection -------------------------------------------------------------
    def exists(self) -> bool:
        return (self.paths.data / "PG_VERSION").is_file()

    def data_major(self) -> int | None:
        try:
            return int((self.paths.data / "PG_VERSION").read_text().strip().split(".")[0])
        except (OSError, ValueError):
            return None

    def pid_file(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid, if present and well-formed."""
        try:
            lines = (self.paths.data / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def running_port(self) -> int | None:
        """The port of a live postmaster for this data directory, or None."""
        entry = self.pid_file()
        if entry is None:
            return None
        pid, port = entry
        if not _is_postgres_process(pid, self.paths.data):
            return None
        return port

    def info(self, port: int) -> ConnectionInfo:
        return ConnectionInfo(host=LISTEN, port=port, user=SUPERUSER, provider=self.provider)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- lifecycle --------------------------------------------------------------
    def initdb(self) -> None:
        """Create the data directory: UTF8, C locale, trust auth for local connections only."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.run_as.own(self.paths.root)
        os.chmod(self.paths.root, 0o700)
        if not self.run_as.can_use(self.paths.root):
            raise ServerStartError(
                f"The server user {self.run_as.name!r} cannot reach {self.paths.root}.",
                "A parent folder is not traversable by that user: set LABKIT_DATA_DIR to a path like /var/lib/labkit.",
            )
        cmd = [
            str(self.install.bin("initdb")),
            "-D", str(self.paths.data),
            "-U", SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth=trust",
            "--no-instructions",
        ]  # fmt: skip
        result = self._run(cmd)
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{result.stdout}{result.stderr}", "See the message above.")
        conf = self.paths.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(f"\n# labkit settings\ninclude_if_exists = '{CONF_FILE}'\n")
        settings = "".join(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
        (self.paths.data / CONF_FILE).write_text("# Written by labkit; edit freely.\n" + settings)
        self.run_as.own(self.paths.data)

    def check_compatible(self) -> None:
        major = self.data_major()
        if major is None:
            raise ServerStartError(
                f"{self.paths.data} exists but is not a PostgreSQL data directory (PG_VERSION missing or damaged).",
                "Move it aside (nothing is deleted automatically), or remove it with 'labkit down --delete-data'.",
            )
        if major != self.install.major:
            raise ServerStartError(
                f"The data directory {self.paths.data} was made by PostgreSQL {major}, "
                f"but the binaries in {self.install.bindir} are PostgreSQL {self.install.major}.",
                "Use matching binaries (LABKIT_PG_BIN), or move the folder aside / 'labkit down --delete-data' to start fresh.",
            )

    def remove_stale_pid(self) -> bool:
        """Delete postmaster.pid left by a crash (its process is gone). True if one was removed.

        The crashed postmaster's socket lock files go too: while a killed postmaster awaits its
        reaper (a zombie), PostgreSQL would take them for a running server and refuse to start."""
        for lock in self.paths.socket_dir.glob(".s.PGSQL.*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if not _is_postgres_process(int(lock.read_text().split()[0]), self.paths.data):
                    lock.unlink()
        pid_path = self.paths.data / "postmaster.pid"
        if pid_path.exists() and self.running_port() is None:
            pid_path.unlink()
            return True
        return False

    def start(self, port: int) -> ConnectionInfo:
        self.remove_stale_pid()
        socket_dir = self.paths.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        if socket_dir != self.paths.root:
            os.chmod(socket_dir, 0o700)
            self.run_as.own(socket_dir)
        options = f"-p {port} -k {socket_dir}"
        cmd = [
            str(self.install.bin("pg_ctl")),
            "-D", str(self.paths.data),
            "-l", str(self.paths.log),
            "-o", options,
            "-w", "-t", str(START_TIMEOUT_S),
            "start",
        ]  # fmt: skip
        result = self._run(cmd)
        if result.returncode != 0:
            raise ServerStartError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}). Last lines of {self.paths.log}:\n" + self.log_tail(),
                "If the port is taken, set LABKIT_PORT; if the data directory is damaged, move it aside.",
            )
        info = self.info(port)
        wait_until_ready(info, timeout=START_TIMEOUT_S)
        return info

    def stop(self) -> bool:
        """Stop the server if it runs. True if it was running."""
        if self.running_port() is None:
            return False
        cmd = [str(self.install.bin("pg_ctl")), "-D", str(self.paths.data), "-m", "fast", "-w", "stop"]
        result = self._run(cmd)
        if result.returncode != 0 and self.running_port() is not None:
            raise ServerStartError(f"pg_ctl stop failed: {result.stderr.strip()}", "Check the server log.")
        return True

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        env = {**(self.run_as.env() if not self.run_as.is_current else os.environ), **self.install.env()}
        kwargs = {**self.run_as.popen_kwargs(), "env": env}
        return subprocess.run(cmd, capture_output=True, text=True, cwd="/", **kwargs)  # type: ignore[call-overload]


def _is_postgres_process(pid: int, data: Path) -> bool:
    """Whether ``pid`` is a live postmaster serving ``data`` (not a killed one awaiting its reaper,
    an unrelated program, or another cluster's postmaster that reuses an old PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no /proc (macOS): trust the signal check
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return False  # killed (e.g. kill -9), not yet reaped: it serves nothing
        if (proc / "comm").read_text().strip() not in {"postgres", "postmaster"}:
            return False
    except (OSError, IndexError):
        return False  # exited meanwhile
    with contextlib.suppress(OSError):  # unreadable for another user's process: trust the name
        return Path(os.readlink(proc / "cwd")).resolve() == data.resolve()  # a postmaster works in its data dir
    return True


def wait_until_ready(info: ConnectionInfo, timeout: float = 30) -> None:
    """Poll until the server accepts a connection and answers a query."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with info.connect(connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    raise ServerStartError(f"The server at {info.host}:{info.port} did not accept connections: {last}", "Check the server log.")
