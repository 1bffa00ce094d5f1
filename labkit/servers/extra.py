"""Extra PostgreSQL clusters on demand: a second server, a streaming standby, a point-in-time recovery.

Each one lives in its own folder ``clusters/<name>`` next to the lab server's data, listens on
127.0.0.1 and a private socket on a port of its own, and runs from the lab server's binaries as
the same unprivileged user, with the same authentication (a ``Cluster`` makes it, or it is a copy
of the lab server's data). labkit stops and removes it: when its ``with`` block ends, when its
object is collected or Python exits, on ``labkit down`` (``stop_all_extra_clusters``), after a crash
(the next extra cluster or ``labkit down`` removes folders whose owning process is gone), and when
it grows past its size cap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from labkit import servers
from labkit.config import Settings
from labkit.errors import LabkitError, NotRunning, ServerStartError
from labkit.servers import lifecycle, processes
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR, PgInstall
from labkit.servers.clients import client_programs, connection_env
from labkit.servers.cluster import LISTEN, START_TIMEOUT_S, Cluster, ClusterPaths
from labkit.servers.local import ClusterProvider, cluster_root
from labkit.servers.portable import _locked
from labkit.servers.unprivileged import RunAs, server_user

CLUSTERS_DIR = "clusters"
META_FILE = "labkit-extra.json"
LOCK_FILE = "clusters.lock"
EXTRA_CONF = "labkit-extra.conf"
DEFAULT_MAX_MB = int(os.environ.get("LABKIT_EXTRA_MAX_MB", "2048"))
FREE_DISK_MARGIN_MB = 512
WATCH_INTERVAL_S = 5.0
STOP_TIMEOUT_S = 15.0
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
# Small and bounded: WAL is recycled early and a forgotten replication slot cannot keep more than this.
EXTRA_SETTINGS = {
    "shared_buffers": "'32MB'",
    "max_wal_size": "'256MB'",
    "min_wal_size": "'32MB'",
    "max_slot_wal_keep_size": "'512MB'",
}


class ExtraClusterError(LabkitError):
    """An extra cluster could not be made, or is gone."""

    exit_code = 4


# -- where, who, and with which binaries ---------------------------------------------------
def clusters_dir(settings: Settings, run_as: RunAs | None = None) -> Path:
    """The folder holding every extra cluster of this project (next to the lab server's data)."""
    run_as = run_as or server_user(settings.run_as)
    return cluster_root(settings, run_as, REQUIRED_MAJOR).parent / CLUSTERS_DIR


def lab_install(settings: Settings) -> PgInstall:
    """The server binaries the lab server runs from (local or portable provider)."""
    chosen = servers.choose(settings, previous=lifecycle.read_state(settings).get("provider"))
    if not isinstance(chosen, ClusterProvider):
        raise ExtraClusterError(
            f"Extra clusters (standby, recovery, second server) run from PostgreSQL programs on this machine, "
            f"and the lab server runs via the {chosen.name} provider.",
            "Use the portable or local provider for the replication and recovery lessons: labkit down, then labkit up --server portable.",
        )
    return chosen.install()


def lab_server(settings: Settings) -> ConnectionInfo:
    """The running lab server, the default source of standbys and backups."""
    info = lifecycle.current_server(settings)
    if info is None:
        raise NotRunning("The lab server is not running, so there is nothing to copy.", "Start it: labkit up (or lab() in a notebook).")
    return info


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ExtraClusterError(
            f"{name!r} is not a usable cluster name.",
            "Use lower-case letters, digits, '-' or '_', starting with a letter (at most 40), e.g. 'standby'.",
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LISTEN, 0))
        return int(sock.getsockname()[1])


def dir_size(path: Path) -> int:
    """Bytes used by the files under ``path``."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _check_disk(where: Path, needed_bytes: int, max_bytes: int, what: str) -> None:
    mb = 1024 * 1024
    if needed_bytes > max_bytes:
        raise ExtraClusterError(
            f"{what} needs about {needed_bytes // mb} MB, more than its cap of {max_bytes // mb} MB.",
            "Pass a larger max_mb=… (or set LABKIT_EXTRA_MAX_MB), or load a smaller dataset (labkit up --scale 0.1).",
        )
    probe = where
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes + FREE_DISK_MARGIN_MB * mb:
        raise ExtraClusterError(
            f"{what} needs about {needed_bytes // mb} MB and only {free // mb} MB are free on the disk of {probe}.",
            "Free some disk space (labkit down removes every extra cluster), or use a smaller dataset.",
        )


# -- the folder of one extra item: claim, describe, discard ---------------------------------
def _read_meta(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(root: Path, meta: Mapping[str, Any]) -> None:
    tmp = root / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(root / META_FILE)


def _owner_alive(meta: Mapping[str, Any]) -> bool:
    pid = meta.get("owner_pid")
    return isinstance(pid, int) and processes.alive(pid, meta.get("owner_start"))


def _postmaster(root: Path) -> tuple[Cluster, int] | None:
    """The cluster in ``root`` and its live postmaster's PID, if one runs."""
    paths = ClusterPaths(root)
    dummy = PgInstall(bindir=root, version=str(REQUIRED_MAJOR), source="extra")
    cluster = Cluster(dummy, paths, server_user(), "extra")
    entry = cluster.pid_file()
    if entry is None or cluster.running_port() is None:
        return None
    return cluster, entry[0]


def _kill_postmaster(root: Path) -> bool:
    """Immediate shutdown (SIGQUIT), then SIGKILL if it lingers. True if a postmaster was running."""
    found = _postmaster(root)
    if found is None:
        return False
    cluster, pid = found
    for sig, wait_s in ((signal.SIGQUIT, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if cluster.running_port() is None:
                return True
            time.sleep(0.05)
    raise ExtraClusterError(f"The postmaster {pid} of {root} does not stop.", f"Stop it yourself (kill -9 {pid}), then run labkit down.")


def discard(root: Path, source: ConnectionInfo | None = None) -> bool:
    """Stop whatever runs in the extra-cluster folder ``root``, drop its replication slot on its source
    (``source`` if it is that server: it knows the password), and delete the folder. True if anything was there."""
    if not root.exists():
        return False
    meta = _read_meta(root)
    _kill_postmaster(root)
    _drop_slot(meta, source)
    receiver = meta.get("receiver_pid")
    if isinstance(receiver, int) and processes.alive(receiver, meta.get("receiver_start"), comm="pg_receivewal"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(receiver, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while processes.alive(receiver, meta.get("receiver_start"), comm="pg_receivewal") and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(receiver, signal.SIGKILL)
    socket_dir = ClusterPaths(root).socket_dir
    if socket_dir != root:
        shutil.rmtree(socket_dir, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        raise ExtraClusterError(f"Could not delete {root}.", "Delete it yourself (rm -rf), then run labkit down.")
    with contextlib.suppress(OSError):
        root.parent.rmdir()  # the last one leaves no empty clusters folder behind
    return True


def _drop_slot(meta: Mapping[str, Any], source: ConnectionInfo | None) -> None:
    """Drop the physical slot a standby used, so the source does not keep WAL for it forever."""
    slot, recorded = meta.get("slot"), meta.get("source")
    if not slot or not isinstance(recorded, dict):
        return
    info = source if source is not None and source.port == recorded.get("port") else ConnectionInfo.from_dict(recorded)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while True:
        try:
            with info.connect() as conn:
                row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()
                if row is None:
                    return
                if not row[0]:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    return
        except psycopg.Error as exc:
            print(
                f"labkit: could not drop the replication slot {slot!r} on {info.host}:{info.port} ({exc}); "
                f"drop it there yourself: SELECT pg_drop_replication_slot('{slot}')",
                file=sys.stderr,
            )
            return
        if time.monotonic() > deadline:
            print(f"labkit: the replication slot {slot!r} on {info.host}:{info.port} is still in use; not dropped", file=sys.stderr)
            return
        time.sleep(0.1)


def _lab_or_none(settings: Settings) -> ConnectionInfo | None:
    with contextlib.suppress(LabkitError, OSError):
        return lifecycle.current_server(settings)
    return None


def _lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """One process at a time creates or removes extra clusters (a separate lock from the lab server's)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return _locked(settings.state_dir / LOCK_FILE)


def cleanup_leftovers(settings: Settings) -> list[str]:
    """Remove extra clusters whose owning process is gone (a crash, a killed kernel); their names."""
    with _lock(settings):
        return _cleanup_leftovers(settings)


def _cleanup_leftovers(settings: Settings) -> list[str]:
    base = clusters_dir(settings)
    if not base.is_dir():
        return []
    removed = []
    lab = None
    for root in sorted(p for p in base.iterdir() if p.is_dir()):
        if not _owner_alive(_read_meta(root)):
            lab = lab or _lab_or_none(settings)
            discard(root, lab)
            removed.append(root.name)
    return removed


def stop_all_extra_clusters(settings: Settings) -> list[str]:
    """Stop and remove every extra cluster, backup and WAL archive of this project (``labkit down``); their names."""
    with _lock(settings):
        base = clusters_dir(settings)
        if not base.is_dir():
            return []
        lab = _lab_or_none(settings)
        removed = [root.name for root in sorted(base.iterdir()) if root.is_dir() and discard(root, lab)]
        with contextlib.suppress(OSError):
            base.rmdir()
        return removed


def _claim(name: str, settings: Settings, kind: str, run_as: RunAs) -> Path:
    """A fresh folder for ``name``, after removing leftovers (and this process's older one of that name)."""
    _check_name(name)
    with _lock(settings):
        return _claim_locked(name, settings, kind, run_as)


def _claim_locked(name: str, settings: Settings, kind: str, run_as: RunAs) -> Path:
    _cleanup_leftovers(settings)
    base = clusters_dir(settings, run_as)
    root = base / name
    if root.exists():
        meta = _read_meta(root)
        if _owner_alive(meta) and meta.get("owner_pid") != os.getpid():
            raise ExtraClusterError(
                f"The extra cluster {name!r} belongs to another running process ({meta.get('owner_pid')}).",
                "Pick another name, or stop that notebook's kernel (labkit down stops them all).",
            )
        discard(root, _forget(root) or _lab_or_none(settings))
    root.mkdir(parents=True)
    base.chmod(0o755)
    meta = {"name": name, "kind": kind, "owner_pid": os.getpid(), "owner_start": processes.start_time(os.getpid()), "created": time.time()}
    _write_meta(root, meta)
    run_as.own(root)
    root.chmod(0o700)
    return root


# -- live objects of this process: finalisers and the size watchdog -------------------------
_live: dict[Path, weakref.ReferenceType[_Item]] = {}
_live_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def _forget(root: Path) -> ConnectionInfo | None:
    """Disown this process's older object for ``root`` (it is about to be replaced); the source it knew."""
    with _live_lock:
        ref = _live.pop(root, None)
    item = ref() if ref else None
    if item is None:
        return None
    item._removed = "replaced by a newer one of the same name"
    detached = item._finalizer.detach()
    return detached[2][1] if detached else None


def _watch() -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        with _live_lock:
            items = [item for ref in list(_live.values()) if (item := ref()) is not None]
        for item in items:
            with contextlib.suppress(Exception):
                item._enforce_cap()


def _register(item: _Item) -> None:
    global _watchdog
    with _live_lock:
        _live[item.root] = weakref.ref(item)
        if _watchdog is None or not _watchdog.is_alive():
            _watchdog = threading.Thread(target=_watch, name="labkit-extra-clusters", daemon=True)
            _watchdog.start()


class _Item:
    """Something labkit made in ``clusters/<name>``: removed on close, collection, exit or past its cap."""

    kind = "item"

    def __init__(self, name: str, root: Path, max_bytes: int, source: ConnectionInfo | None = None) -> None:
        self.name = name
        self.root = root
        self.max_bytes = max_bytes
        self._removed: str | None = None
        self._finalizer = weakref.finalize(self, discard, root, source)
        _register(self)

    def size_bytes(self) -> int:
        return dir_size(self.root)

    def _enforce_cap(self) -> None:
        if self._removed is None and self.root.exists() and (size := self.size_bytes()) > self.max_bytes:
            mb = 1024 * 1024
            self._removed = f"it grew to {size // mb} MB, past its cap of {self.max_bytes // mb} MB, and was stopped and removed"
            print(f"labkit: the extra {self.kind} {self.name!r}: {self._removed}", file=sys.stderr, flush=True)
            self.close()

    def _check(self) -> None:
        if self._removed is not None:
            raise ExtraClusterError(
                f"The extra {self.kind} {self.name!r} is gone: {self._removed}.",
                "Create it again (and pass a larger max_mb=… if it outgrew its cap).",
            )

    def close(self) -> None:
        """Stop it and delete its folder (idempotent)."""
        with _live_lock:
            _live.pop(self.root, None)
        self._removed = self._removed or "closed"
        self._finalizer()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- running client programs as the server user ----------------------------------------------
def _run_tool(
    name: str, args: list[str], settings: Settings, run_as: RunAs, source: ConnectionInfo | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    tools = client_programs(name, settings)
    if not run_as.is_current and not run_as.can_traverse(tools.bindir):
        raise ExtraClusterError(
            f"{tools.bindir} is out of reach of {run_as.name!r}, the user the server runs as.",
            "Keep labkit's cache in a folder others may read (unset LABKIT_CACHE_DIR).",
        )
    env = {**(os.environ if run_as.is_current else run_as.env()), **tools.env(), **(connection_env(source) if source else {})}
    kwargs = {**run_as.popen_kwargs(), "env": env}
    return subprocess.run([str(tools.bin(name)), *args], capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs)  # type: ignore[call-overload]


def _source_size(source: ConnectionInfo) -> int:
    with source.connect() as conn:
        row = conn.execute("SELECT sum(pg_database_size(oid))::bigint FROM pg_database").fetchone()
    return int(row[0]) if row and row[0] else 0


def _check_replication_source(source: ConnectionInfo) -> None:
    with source.connect() as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        senders = int(conn.execute("SHOW max_wal_senders").fetchone()[0])  # type: ignore[index]
    if wal_level == "minimal" or senders < 2:
        raise ExtraClusterError(
            f"The server at {source.host}:{source.port} cannot stream WAL (wal_level={wal_level}, max_wal_senders={senders}).",
            "Set wal_level = replica and max_wal_senders >= 2 in its configuration and restart it.",
        )


def _basebackup(dest: Path, source: ConnectionInfo, settings: Settings, run_as: RunAs, *extra: str) -> None:
    result = _run_tool("pg_basebackup", ["-D", str(dest), "-X", "stream", "-c", "fast", "--no-sync", *extra], settings, run_as, source)
    if result.returncode != 0:
        raise ExtraClusterError(
            f"pg_basebackup from {source.host}:{source.port} failed: {result.stderr.strip()[-800:]}",
            "The source needs a pg_hba.conf line for replication connections from 127.0.0.1 and wal_level = replica.",
        )


# -- base backups and WAL archives -------------------------------------------------------------
class BaseBackup(_Item):
    """A physical base backup (``pg_basebackup``, plain format, with its manifest) in ``path``."""

    kind = "base backup"

    def __init__(self, name: str, root: Path, max_bytes: int, source: ConnectionInfo) -> None:
        super().__init__(name, root, max_bytes)
        self.source = source

    @property
    def path(self) -> Path:
        return self.root / "backup"

    @property
    def start_lsn(self) -> str:
        """Where recovery from this backup starts (``START WAL LOCATION`` of its backup_label)."""
        match = re.search(r"START WAL LOCATION: (\S+)", (self.path / "backup_label").read_text())
        return match.group(1) if match else ""


def _replication_item(
    name: str, settings: Settings | None, source: ConnectionInfo | None, kind: str
) -> tuple[Settings, ConnectionInfo, RunAs, Path]:
    """What a base backup and a WAL archive both start from: a checked name, the source (the lab server by default)
    that allows replication connections, the server's OS user, and the item's claimed folder."""
    _check_name(name)
    settings = settings or Settings.load()
    source = source or lab_server(settings)
    run_as = server_user(settings.run_as)
    _check_replication_source(source)
    return settings, source, run_as, _claim(name, settings, kind, run_as)


def base_backup(
    name: str, settings: Settings | None = None, *, source: ConnectionInfo | None = None, max_mb: int = DEFAULT_MAX_MB
) -> BaseBackup:
    """Take a base backup of ``source`` (the lab server by default) with ``pg_basebackup``."""
    settings, source, run_as, root = _replication_item(name, settings, source, "backup")
    backup = BaseBackup(name, root, max_mb * 1024 * 1024, source)
    try:
        _check_disk(root, _source_size(source), backup.max_bytes, f"The base backup {name!r}")
        _basebackup(backup.path, source, settings, run_as, "-l", f"labkit {name}")
    except BaseException:
        backup.close()
        raise
    return backup


class WalArchive(_Item):
    """A WAL archive fed continuously by ``pg_receivewal`` from a running server (no restart needed)."""

    kind = "WAL archive"

    def __init__(self, name: str, root: Path, max_bytes: int, source: ConnectionInfo) -> None:
        super().__init__(name, root, max_bytes)
        self.source = source
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def path(self) -> Path:
        return self.root / "wal"

    @property
    def application_name(self) -> str:
        return f"labkit_{self.name}".replace("-", "_")

    def close(self) -> None:
        super().close()
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)  # reap it: no zombie left in this process

    def log_tail(self, lines: int = 10) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "receivewal.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_for(self, lsn: str, timeout: float = 30) -> None:
        """Wait until the archive holds the WAL up to ``lsn`` (flushed to disk)."""
        self._check()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ExtraClusterError(f"pg_receivewal of {self.name!r} stopped:\n{self.log_tail()}", "Create the archive again.")
            with self.source.connect() as conn:
                row = conn.execute(
                    "SELECT flush_lsn >= %s::pg_lsn FROM pg_stat_replication WHERE application_name = %s", [lsn, self.application_name]
                ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.1)
        raise ExtraClusterError(f"The WAL archive {self.name!r} did not receive WAL up to {lsn} in {timeout:.0f} s.", self.log_tail())


def wal_archive(
    name: str, settings: Settings | None = None, *, source: ConnectionInfo | None = None, max_mb: int = DEFAULT_MAX_MB
) -> WalArchive:
    """Start archiving the WAL of ``source`` (the lab server by default) into a folder, with ``pg_receivewal``."""
    settings, source, run_as, root = _replication_item(name, settings, source, "archive")
    archive = WalArchive(name, root, max_mb * 1024 * 1024, source)
    try:
        archive.path.mkdir()
        run_as.own(archive.path)
        tools = client_programs("pg_receivewal", settings)
        conninfo = f"host={source.host} port={source.port} user={source.user} application_name={archive.application_name}"
        env = {**(os.environ if run_as.is_current else run_as.env()), **tools.env(), **connection_env(source)}
        with (root / "receivewal.log").open("ab") as log:
            archive.process = subprocess.Popen(
                [str(tools.bin("pg_receivewal")), "-D", str(archive.path), "--synchronous", "--no-loop", "-d", conninfo],
                stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True, **{**run_as.popen_kwargs(), "env": env},
            )  # fmt: skip
        receiver = {"receiver_pid": archive.process.pid, "receiver_start": processes.start_time(archive.process.pid)}
        _write_meta(root, {**_read_meta(root), **receiver})
        with source.connect() as conn:
            lsn = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]  # type: ignore[index]
        archive.wait_for(lsn, timeout=START_TIMEOUT_S)
    except BaseException:
        archive.close()
        raise
    return archive


# -- extra clusters ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecoveryTarget:
    """Where point-in-time recovery stops: a time, an LSN, a transaction id or a restore point."""

    time: datetime | str | None = None
    lsn: str | None = None
    xid: int | None = None
    name: str | None = None
    inclusive: bool = False

    def settings(self) -> dict[str, str]:
        given = {k: v for k, v in {"time": self.time, "lsn": self.lsn, "xid": self.xid, "name": self.name}.items() if v is not None}
        if len(given) != 1:
            raise ExtraClusterError(
                "A recovery target names exactly one of time, lsn, xid or name.", "e.g. RecoveryTarget(lsn='0/3000060')."
            )
        key, value = next(iter(given.items()))
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        return {f"recovery_target_{key}": _quote(text), "recovery_target_inclusive": "on" if self.inclusive else "off"}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class ExtraCluster(_Item):
    """A running extra PostgreSQL cluster: connect to it, promote it, stop it; ``close()`` removes it."""

    kind = "cluster"

    def __init__(
        self, name: str, root: Path, max_bytes: int, cluster: Cluster, port: int, role: str, source: ConnectionInfo | None = None
    ) -> None:
        super().__init__(name, root, max_bytes, source)
        self.source = source  # the primary of a standby
        self.slot: str | None = None  # its physical replication slot there, if it uses one
        self.cluster = cluster
        self.port = port
        self.role = role  # "primary", "standby" or "recovery"

    @property
    def info(self) -> ConnectionInfo:
        """How to reach it: read afresh, since the password file is written only as the cluster is made."""
        return self.cluster.info(self.port)

    @property
    def data_dir(self) -> Path:
        return self.cluster.paths.data

    @property
    def archive_dir(self) -> Path:
        """Where ``archive_wal=True`` copies completed WAL segments."""
        return self.root / "archive"

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection:
        self._check()
        return self.info.connect(dbname, **kwargs)

    def url(self, dbname: str | None = None, *, hide_password: bool = True) -> str:
        """Its URL, the password shown as **** unless asked (a notebook output must never hold it)."""
        return self.info.url(dbname, hide_password=hide_password)

    def is_running(self) -> bool:
        return self._removed is None and self.cluster.running_port() is not None

    def stop(self) -> bool:
        """Shut the server down (fast), keeping its files; ``start()`` brings it back."""
        self._check()
        return self.cluster.stop()

    def start(self) -> ConnectionInfo:
        self._check()
        if not self.is_running():
            self.cluster.start(self.port)
        return self.info

    def log_tail(self, lines: int = 15) -> str:
        return self.cluster.log_tail(lines)

    def in_recovery(self) -> bool:
        with self.connect() as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]

    def promote(self, timeout: float = 60) -> None:
        """Make a standby a primary (``pg_promote``) and wait until it accepts writes."""
        with self.connect() as conn:
            conn.execute("SELECT pg_promote(true, %s)", [int(timeout)])
        self.wait_until_primary(timeout)
        self.role = "primary"

    def wait_until_primary(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cluster.running_port() is None:
                raise _start_failure(self.name, self.cluster, "stopped during recovery")
            with contextlib.suppress(psycopg.OperationalError):
                if not self.in_recovery():
                    return
            time.sleep(0.1)
        raise _start_failure(self.name, self.cluster, f"is still in recovery after {timeout:.0f} s")

    def wait_for_lsn(self, lsn: str, timeout: float = 30) -> None:
        """Wait until this standby has replayed the WAL up to ``lsn`` (e.g. the primary's ``pg_current_wal_lsn()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.connect() as conn:
                if conn.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, true)", [lsn]).fetchone()[0]:  # type: ignore[index]
                    return
            time.sleep(0.05)
        raise ExtraClusterError(
            f"The standby {self.name!r} did not replay up to {lsn} in {timeout:.0f} s.", "Check pg_stat_replication on the primary."
        )

    def wait_streaming(self, timeout: float = 30) -> None:
        """Wait until this standby's WAL receiver streams from its primary."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.connect() as conn:
                if conn.execute("SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'").fetchone():
                    return
            time.sleep(0.1)
        raise ExtraClusterError(
            f"The standby {self.name!r} does not stream after {timeout:.0f} s:\n{self.log_tail()}", "Check the primary's pg_hba.conf."
        )

    def __repr__(self) -> str:
        state = self._removed or ("running" if self.is_running() else "stopped")
        return f"<ExtraCluster {self.name!r} {self.role} on {LISTEN}:{self.port}, {state}>"


def _start_failure(name: str, cluster: Cluster, what: str) -> ExtraClusterError:
    """The error for a cluster that did not come up, once its postmaster is gone and its log complete."""
    deadline = time.monotonic() + 5  # a failed startup shuts down within moments; let it finish its log
    while cluster.running_port() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        if "recovery ended before configured recovery target was reached" in cluster.paths.log.read_text(errors="replace"):
            return ExtraClusterError(
                f"The recovery {name!r} reached the end of the WAL archive before its recovery target.",
                "Wait until the archive has the WAL (archive.wait_for(lsn)), or choose an earlier target (time or LSN).",
            )
    log = f"Last lines of {cluster.paths.log}:\n{cluster.log_tail()}"
    return ExtraClusterError(f"The extra cluster {name!r} {what}. {log}", "See the server log above.")


def extra_cluster(
    name: str,
    settings: Settings | None = None,
    *,
    standby: bool = False,
    source: ConnectionInfo | None = None,
    from_backup: BaseBackup | None = None,
    wal_archive: WalArchive | Path | None = None,
    recovery_target: RecoveryTarget | None = None,
    slot: bool = False,
    archive_wal: bool = False,
    conf: Mapping[str, str | int] | None = None,
    max_mb: int = DEFAULT_MAX_MB,
) -> ExtraCluster:
    """Start an extra cluster ``name`` from the lab server's binaries, and return it.

    - plain (default): a new empty cluster, e.g. for logical replication or postgres_fdw;
      ``archive_wal=True`` archives its WAL into ``archive_dir`` (``archive_command``);
    - ``standby=True``: a streaming standby of ``source`` (the lab server by default), from ``pg_basebackup -R``;
      ``slot=True`` gives it a physical replication slot ``labkit_<name>`` there (dropped with the standby);
    - ``from_backup=``: point-in-time recovery of a ``BaseBackup`` with the WAL of ``wal_archive``, up to
      ``recovery_target`` (else to the end of the archive), then promoted.

    ``conf`` adds server settings (``{"wal_level": "logical"}``). The cluster is removed by ``close()``,
    at the end of a ``with`` block, when Python exits, and by ``labkit down``.
    """
    _check_name(name)
    settings = settings or Settings.load()
    if standby and from_backup is not None:
        raise ExtraClusterError(
            "A cluster is either a standby or a recovery from a backup, not both.", "Pass standby=True or from_backup=…."
        )
    if slot and not standby:
        raise ExtraClusterError("slot=True is for a standby (a physical replication slot on its primary).", "Pass standby=True too.")
    if (wal_archive is not None or recovery_target is not None) and from_backup is None:
        raise ExtraClusterError(
            "wal_archive and recovery_target need from_backup=… (the base backup to recover).", "Take one with base_backup(…)."
        )
    install = lab_install(settings)
    run_as = server_user(settings.run_as)
    max_bytes = max_mb * 1024 * 1024
    if standby:
        source = source or lab_server(settings)
        _check_replication_source(source)
    role = "standby" if standby else "recovery" if from_backup is not None else "primary"
    root = _claim(name, settings, role, run_as)
    cluster = Cluster(install, ClusterPaths(root), run_as, f"extra:{name}")
    item = ExtraCluster(name, root, max_bytes, cluster, _free_port(), role, source if standby else None)
    try:
        extra = {**EXTRA_SETTINGS, "cluster_name": _quote(name)}
        if standby:
            assert source is not None
            _check_disk(root, _source_size(source), max_bytes, f"The standby {name!r}")
            slot_args: list[str] = []
            if slot:
                item.slot = f"labkit_{name}".replace("-", "_")
                slot_args = ["-C", "-S", item.slot]  # -R then writes primary_slot_name too
                recorded = {**source.to_dict(), "password": None}
                _write_meta(root, {**_read_meta(root), "slot": item.slot, "source": recorded})  # dropped even after a crash
            _basebackup(cluster.paths.data, source, settings, run_as, "-R", *slot_args)
            cluster.keep_password(source.password)  # a copy of the source: the same roles, the same password
        elif from_backup is not None:
            extra.update(_prepare_recovery(cluster, from_backup, wal_archive, recovery_target, max_bytes, run_as))
            cluster.keep_password(from_backup.source.password)
        else:
            cluster.initdb()
            if archive_wal:
                item.archive_dir.mkdir()
                run_as.own(item.archive_dir)
                extra.update(
                    archive_mode="on", archive_command=_quote(f'test ! -f "{item.archive_dir}/%f" && cp "%p" "{item.archive_dir}/%f"')
                )
        extra.update({k: v if isinstance(v, int) else str(v) for k, v in (conf or {}).items()})  # type: ignore[misc]
        _write_extra_conf(cluster, extra)
        try:
            cluster.start(item.port)
        except ServerStartError as exc:
            raise _start_failure(name, cluster, "did not start") from exc
        if from_backup is not None:
            item.wait_until_primary(timeout=START_TIMEOUT_S)
        _write_meta(root, {**_read_meta(root), "port": item.port, "bindir": str(install.bindir)})
    except BaseException:
        item.close()
        raise
    return item


def _write_extra_conf(cluster: Cluster, values: Mapping[str, Any]) -> None:
    """Our settings in their own file, included last (after the copied or generated configuration)."""
    data = cluster.paths.data
    (data / EXTRA_CONF).write_text("# Written by labkit for this extra cluster.\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    with (data / "postgresql.conf").open("a") as fh:
        fh.write(f"\ninclude_if_exists = '{EXTRA_CONF}'\n")
    (data / "postmaster.pid").unlink(missing_ok=True)
    cluster.run_as.own(data)
    data.chmod(0o700)


def _prepare_recovery(
    cluster: Cluster,
    backup: BaseBackup,
    archive: WalArchive | Path | None,
    target: RecoveryTarget | None,
    max_bytes: int,
    run_as: RunAs,
) -> dict[str, str]:
    """Copy the backup into the new data folder and return the recovery settings."""
    backup._check()
    _check_disk(cluster.paths.root, backup.size_bytes(), max_bytes, f"Recovering {backup.name!r}")
    shutil.copytree(backup.path, cluster.paths.data, symlinks=True)
    (cluster.paths.data / "recovery.signal").write_text("")
    for stale in ("standby.signal", "backup_manifest"):
        (cluster.paths.data / stale).unlink(missing_ok=True)
    values = {"recovery_target_action": "'promote'", "recovery_target_timeline": "'latest'"}
    if archive is not None:
        folder = archive.path if isinstance(archive, WalArchive) else Path(archive)
        # pg_receivewal keeps the segment it is writing as <name>.partial: recovery may read it too.
        command = f'cp "{folder}/%f" "%p" 2>/dev/null || cp "{folder}/%f.partial" "%p" 2>/dev/null'
        values["restore_command"] = _quote(command)
    elif target is not None:
        raise ExtraClusterError(
            "A recovery target needs the WAL after the backup: pass wal_archive=….", "Start a wal_archive(…) before the base backup."
        )
    if target is not None:
        values.update(target.settings())
    run_as.own(cluster.paths.root)
    return values


@contextlib.contextmanager
def extra_clusters(settings: Settings | None = None) -> Iterator[None]:
    """Remove every extra cluster of this project when the block ends (e.g. around a notebook run)."""
    settings = settings or Settings.load()
    try:
        yield
    finally:
        stop_all_extra_clusters(settings)


def describe_support(settings: Settings) -> str:
    """One line for ``labkit doctor``: can this machine run extra clusters, and how many are there now."""
    try:
        chosen = servers.choose(settings, previous=lifecycle.read_state(settings).get("provider"))
    except LabkitError as exc:
        return f"not available: {exc.message.splitlines()[0]}"
    if not isinstance(chosen, ClusterProvider):
        return f"not available with the {chosen.name} provider (standby, recovery and second-server lessons skip); use portable or local"
    base = clusters_dir(settings)
    names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    running = f"{len(names)} now ({', '.join(names)}) in {base}" if names else f"none now; they go to {base}"
    return f"supported ({chosen.name} provider's binaries): {running}"
