"""A PgBouncer in front of the lab server, for the connection-pooling lesson.

labkit starts it on a free port of 127.0.0.1 with a private configuration and auth file (mode 0600)
in a folder next to the lab server's data, as the unprivileged server user when run as root. It
authenticates clients the way the lab server does (``trust`` without a password, ``scram-sha-256``
with one) and logs in to the lab server with the owner's credentials. It is stopped when its
``with`` block ends, when its object is collected or Python exits, and a leftover of a crashed
process is found through its pid file and stopped by the next ``start_pooler``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers import processes
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR
from labkit.servers.cluster import LISTEN
from labkit.servers.local import cluster_root
from labkit.servers.unprivileged import RunAs, server_user

POOLERS_DIR = "poolers"
META_FILE = "labkit-pooler.json"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POOL_MODES = ("session", "transaction", "statement")
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin", "/opt/homebrew/sbin")
INSTALL_HINT = (
    "Install PgBouncer: sudo apt-get install pgbouncer (Debian/Ubuntu), brew install pgbouncer (macOS), "
    "or conda install -c conda-forge pgbouncer; or point LABKIT_PGBOUNCER at the program."
)


class PoolerError(LabkitError):
    """PgBouncer is missing, or did not start."""

    exit_code = 4


def find_pgbouncer() -> Path | None:
    """The pgbouncer program: LABKIT_PGBOUNCER, PATH, then the usual sbin folders."""
    explicit = os.environ.get("LABKIT_PGBOUNCER")
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path=os.pathsep.join(SEARCH_DIRS))
    return Path(found) if found else None


def pgbouncer_version(program: Path | None = None) -> str | None:
    """'1.18.0' for the installed PgBouncer, or None."""
    program = program or find_pgbouncer()
    if program is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=10).stdout
        first = out.splitlines()[0] if out else ""
        if first.startswith("PgBouncer "):
            return first.split()[1]
    return None


def require_pgbouncer() -> Path:
    program = find_pgbouncer()
    if program is None:
        raise PoolerError("PgBouncer is not installed on this machine, so the pooling lesson cannot start one.", INSTALL_HINT)
    return program


def poolers_dir(settings: Settings, run_as: RunAs | None = None) -> Path:
    """The folder holding this project's poolers (next to the lab server's data, reachable by the server user)."""
    run_as = run_as or server_user(settings.run_as)
    return cluster_root(settings, run_as, REQUIRED_MAJOR).parent / POOLERS_DIR


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN, 0))
        return int(sock.getsockname()[1])


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _owner_alive(meta: dict[str, Any]) -> bool:
    pid = meta.get("owner_pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_from_file(root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / "pgbouncer.pid").read_text().split()[0])
    return None


def discard(root: Path) -> bool:
    """Stop the PgBouncer of ``root`` (found via its pid file) and delete the folder. True if one ran."""
    pid = _pid_from_file(root)
    ran = pid is not None and processes.alive(pid, comm="pgbouncer")
    if ran and pid is not None:
        for sig in (signal.SIGINT, signal.SIGKILL):  # SIGINT: PgBouncer's immediate shutdown
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while processes.alive(pid, comm="pgbouncer") and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            if not processes.alive(pid, comm="pgbouncer"):
                break
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # ours and exited (a zombie counts as gone): reap it
    shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.parent.rmdir()  # the last one leaves no empty folder behind
    return ran


def cleanup_leftovers(settings: Settings) -> list[str]:
    """Stop and remove poolers whose owning process is gone; their names."""
    base = poolers_dir(settings)
    if not base.is_dir():
        return []
    removed = []
    for root in sorted(p for p in base.iterdir() if p.is_dir()):
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads((root / META_FILE).read_text())
            if _owner_alive(meta):
                continue
        discard(root)
        removed.append(root.name)
    return removed


def close_own_poolers() -> list[str]:
    """Stop every pooler this process started and has not closed yet; their names."""
    items = [item for ref in list(_live.values()) if (item := ref()) is not None and item.running]
    _live.clear()
    for item in items:
        item.close()
    return sorted(item.name for item in items)


def stop_all_poolers(settings: Settings) -> list[str]:
    """Stop every pooler of this project (whoever owns it); their names."""
    base = poolers_dir(settings)
    if not base.is_dir():
        return []
    names = []
    for root in sorted(p for p in base.iterdir() if p.is_dir()):
        discard(root)
        names.append(root.name)
    with contextlib.suppress(OSError):
        base.rmdir()
    return names


_live: dict[Path, weakref.ReferenceType[Pooler]] = {}


class Pooler:
    """A running PgBouncer: ``info`` reaches the lab's databases through it, ``admin()`` its console."""

    def __init__(self, name: str, root: Path, process: subprocess.Popen[bytes], info: ConnectionInfo, pool_mode: str) -> None:
        self.name = name
        self.root = root
        self.info = info
        self.pool_mode = pool_mode
        self._process = process
        self._finalizer = weakref.finalize(self, _stop, process, root)

    @property
    def port(self) -> int:
        return self.info.port

    def connect(self, dbname: str, **kwargs: Any) -> psycopg.Connection:
        """A client connection to ``dbname`` through the pooler (psycopg options pass through)."""
        return self.info.connect(dbname, **kwargs)

    def admin(self) -> psycopg.Connection:
        """The admin console (database ``pgbouncer``): SHOW POOLS, SHOW CLIENTS, SHOW SERVERS…"""
        return self.info.connect("pgbouncer", cursor_factory=psycopg.ClientCursor)

    def show(self, what: str) -> list[dict[str, Any]]:
        """Rows of ``SHOW <what>`` on the admin console, as dicts."""
        if not what.replace("_", "").isalpha():
            raise PoolerError(f"{what!r} is not a SHOW command of PgBouncer.", "Use e.g. 'pools', 'clients', 'servers', 'stats'.")
        with self.admin() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"SHOW {what.upper()}")
            return list(cur.fetchall())

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "pgbouncer.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        """Stop PgBouncer and delete its folder (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Pooler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Pooler({self.name!r}, pool_mode={self.pool_mode!r}, {'running' if self.running else 'stopped'})"


def _stop(process: subprocess.Popen[bytes], root: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(root, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.parent.rmdir()


def render_config(
    root: Path, server: ConnectionInfo, port: int, *, pool_mode: str, pool_size: int, max_client_conn: int, extra: dict[str, str | int]
) -> str:
    """pgbouncer.ini: every lab database through ``server``, the auth of the lab, the admin console for its owner."""
    settings: dict[str, str | int] = {
        "listen_addr": LISTEN,
        "listen_port": port,
        "unix_socket_dir": "",
        "auth_type": "scram-sha-256" if server.password else "trust",
        "auth_file": str(root / "userlist.txt"),
        "admin_users": server.user,
        "stats_users": server.user,
        "pool_mode": pool_mode,
        "default_pool_size": pool_size,
        "min_pool_size": 0,
        "reserve_pool_size": 0,
        "max_client_conn": max_client_conn,
        "logfile": str(root / "pgbouncer.log"),
        "pidfile": str(root / "pgbouncer.pid"),
        "ignore_startup_parameters": "extra_float_digits",
        "server_lifetime": 3600,
        "server_idle_timeout": 600,
        **extra,
    }
    lines = ["[databases]", f"* = host={server.host} port={server.port}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def start_pooler(
    settings: Settings,
    server: ConnectionInfo,
    *,
    name: str = "pooler",
    pool_mode: str = "session",
    pool_size: int = 2,
    max_client_conn: int = 100,
    extra: dict[str, str | int] | None = None,
) -> Pooler:
    """Start PgBouncer in front of ``server`` (the lab server's ConnectionInfo) and wait until it answers."""
    if pool_mode not in POOL_MODES:
        raise PoolerError(f"{pool_mode!r} is not a pool mode of PgBouncer.", f"Use one of {', '.join(POOL_MODES)}.")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise PoolerError(f"{name!r} is not a usable pooler name.", "Use letters, digits, '-' or '_', e.g. 'pooler'.")
    program = require_pgbouncer()
    run_as = server_user(settings.run_as)
    cleanup_leftovers(settings)
    base = poolers_dir(settings, run_as)
    root = base / name
    older = _live.pop(root, None)
    if older is not None and (item := older()) is not None:
        item.close()  # this process's older one of that name (a re-run notebook cell)
    if root.exists():
        with contextlib.suppress(OSError, ValueError):
            owner = json.loads((root / META_FILE).read_text()).get("owner_pid")
            if owner != os.getpid() and _owner_alive({"owner_pid": owner}):
                raise PoolerError(
                    f"The pooler {name!r} belongs to another running process ({owner}).",
                    "Pick another name, or stop that notebook's kernel.",
                )
        discard(root)
    root.mkdir(parents=True)
    base.chmod(0o755)
    port = _free_port()
    (root / "pgbouncer.ini").write_text(
        render_config(root, server, port, pool_mode=pool_mode, pool_size=pool_size, max_client_conn=max_client_conn, extra=extra or {})
    )
    (root / "userlist.txt").write_text(f"{_quote(server.user)} {_quote(server.password or '')}\n")
    (root / META_FILE).write_text(json.dumps({"name": name, "owner_pid": os.getpid(), "port": port}) + "\n")
    for file in root.iterdir():
        file.chmod(0o600)
    run_as.own(root)
    root.chmod(0o700)
    process = subprocess.Popen(
        [str(program), str(root / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(root),
        **run_as.popen_kwargs(),  # type: ignore[arg-type]
    )
    info = replace(server, host=LISTEN, port=port, provider="pgbouncer")
    pooler = Pooler(name, root, process, info, pool_mode)
    _live[root] = weakref.ref(pooler)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with pooler.admin() as conn:
                conn.execute("SHOW VERSION")
            return pooler
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = pooler.log_tail()
                pooler.close()
                raise PoolerError(f"PgBouncer did not start on port {port}:\n{tail}", "Read the log above; run labkit doctor.") from None
            time.sleep(0.1)
