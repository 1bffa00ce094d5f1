"""A private PostgreSQL cluster: initdb, start, stop and inspect one data directory.

Shared by the ``local`` and ``portable`` providers; they differ only in where the
binaries come from. Only the lab's owner can connect: the superuser has a random password
(``password`` in the cluster folder, mode 0600) for TCP on 127.0.0.1, and the Unix socket,
in a mode-0700 folder, accepts the owner's own OS account (peer authentication).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from labkit.errors import ConfigError, ServerStartError
from labkit.servers import processes
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import PgInstall
from labkit.servers.identity import check_own_server
from labkit.servers.unprivileged import RunAs, current_user

SUPERUSER = "postgres"
LISTEN = "127.0.0.1"
DEFAULT_PORT = 54316
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
ORPHAN_WAIT_S = 10
MIN_FREE_MB = 100  # an empty cluster takes ~40 MB; the rest is room for the first WAL and the shop to start loading
CONTROL_FILE_SIZE = 8192
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
    "password_encryption": "'scram-sha-256'",
}
CONF_FILE = "labkit.conf"
HBA_MARKER = "# Written by labkit: only the lab's owner can connect."
IDENT_MAP = "labkit"


@dataclass(frozen=True)
class ClusterPaths:
    """Where one cluster keeps its files."""

    root: Path  # owned by the server user

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def partial(self) -> Path:
        """Where initdb works; renamed to ``data`` only when the cluster is complete."""
        return self.root / "data.initdb"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def provider_file(self) -> Path:
        return self.root / "provider"

    @property
    def control_file(self) -> Path:
        return self.data / "global" / "pg_control"

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


def read_system_identifier(data: Path) -> int | None:
    """The cluster's system identifier: the first 8 bytes of ``global/pg_control`` (native byte order)."""
    try:
        with (data / "global" / "pg_control").open("rb") as fh:
            raw = fh.read(8)
    except OSError:
        return None
    return int.from_bytes(raw, sys.byteorder) if len(raw) == 8 else None


class Cluster:
    """One data directory run by one set of PostgreSQL binaries, as ``run_as``.

    ``install`` may be None for a cluster found on disk whose binaries are unknown: it can still be
    inspected, reached and stopped (by signal), not started."""

    def __init__(self, install: PgInstall | None, paths: ClusterPaths, run_as: RunAs, provider: str) -> None:
        self.install = install
        self.paths = paths
        self.run_as = run_as
        self.provider = provider

    def _binaries(self) -> PgInstall:
        if self.install is None:  # pragma: no cover - callers start only clusters with binaries
            raise ServerStartError(f"No PostgreSQL programs are known for {self.paths.data}.", "Run 'labkit up'.")
        return self.install

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

    def running_pid(self) -> int | None:
        entry = self.pid_file()
        if entry is None or not _is_postgres_process(entry[0], self.paths.data):
            return None
        return entry[0]

    def running_port(self) -> int | None:
        """The port of a live postmaster for this data directory, or None."""
        entry = self.pid_file()
        if entry is None or not _is_postgres_process(entry[0], self.paths.data):
            return None
        return entry[1]

    def password(self) -> str | None:
        try:
            return self.paths.password_file.read_text().strip() or None
        except OSError:
            return None

    def keep_password(self, password: str | None) -> None:
        """Record the superuser's password of a cluster copied from another (a standby, a recovered backup)."""
        if password:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            self._write_private(self.paths.password_file, password + "\n")

    def info(self, port: int) -> ConnectionInfo:
        return ConnectionInfo(
            host=LISTEN,
            port=port,
            user=SUPERUSER,
            password=self.password(),
            provider=self.provider,
            system_identifier=read_system_identifier(self.paths.data),
        )

    def socket_info(self, port: int) -> ConnectionInfo:
        """The owner's way in through the private socket (peer authentication; no password needed)."""
        return ConnectionInfo(host=str(self.paths.socket_dir), port=port, user=SUPERUSER, provider=self.provider)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.paths.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- lifecycle --------------------------------------------------------------
    def initdb(self) -> None:
        """Create the data directory (UTF8, C locale, owner-only authentication) in ``data.initdb``, then
        move it into place: an interrupted initdb never leaves a half-made ``data`` behind."""
        check_free_space(self.paths.root)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.run_as.own(self.paths.root)
        os.chmod(self.paths.root, 0o700)
        if not self.run_as.can_use(self.paths.root):
            raise ServerStartError(
                f"The server user {self.run_as.name!r} cannot reach {self.paths.root}.",
                "A parent folder is not traversable by that user: set LABKIT_DATA_DIR to a path like /var/lib/labkit.",
            )
        if self.paths.partial.exists():  # a previous initdb was interrupted: it is labkit's own, unfinished
            shutil.rmtree(self.paths.partial)
        self._write_private(self.paths.password_file, secrets.token_urlsafe(24) + "\n")
        self._write_private(self.paths.provider_file, self.provider + "\n")
        cmd = [
            str(self._binaries().bin("initdb")),
            "-D", str(self.paths.partial),
            "-U", SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
            "--auth=scram-sha-256",
            f"--pwfile={self.paths.password_file}",
            "--no-instructions",
        ]  # fmt: skip
        try:
            result = self._run(cmd)
            if result.returncode != 0:
                output = result.stdout + result.stderr
                if "No space left on device" in output:
                    raise disk_full_error(self.paths.root, "initdb")
                raise ServerStartError(f"initdb failed:\n{output}", "See the message above.")
            conf = self.paths.partial / "postgresql.conf"
            with conf.open("a") as fh:
                fh.write(f"\n# labkit settings\ninclude_if_exists = '{CONF_FILE}'\n")
            settings = "".join(f"{k} = {v}\n" for k, v in SERVER_SETTINGS.items())
            (self.paths.partial / CONF_FILE).write_text("# Written by labkit; edit freely.\n" + settings)
            self._write_auth_files(self.paths.partial)
            self.run_as.own(self.paths.partial)
            self.paths.partial.rename(self.paths.data)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                raise disk_full_error(self.paths.root, "initdb") from None
            raise
        finally:
            if self.paths.partial.exists():
                shutil.rmtree(self.paths.partial, ignore_errors=True)

    def _write_private(self, path: Path, text: str) -> None:
        """A file only the owner (and the server user) may read: created mode 0600, never world-readable."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if not self.run_as.is_current:
            os.chown(tmp, self.run_as.uid, self.run_as.gid)
        tmp.replace(path)

    def _write_auth_files(self, data: Path) -> None:
        """pg_hba.conf: password (SCRAM) for every role over TCP on loopback, the owner's OS account on the socket."""
        owners = sorted({current_user().name, self.run_as.name})
        (data / "pg_ident.conf").write_text(
            "# Written by labkit: the OS accounts that are the lab's owner.\n"
            + "".join(f"{IDENT_MAP} {name} {SUPERUSER}\n" for name in owners)
        )
        (data / "pg_hba.conf").write_text(
            f"{HBA_MARKER}\n# The superuser's password is in {self.paths.password_file} (mode 0600).\n"
            f"local all {SUPERUSER} peer map={IDENT_MAP}\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
            "host replication all 127.0.0.1/32 scram-sha-256\n"  # labkit's standbys, base backups and WAL archives
            "host replication all ::1/128 scram-sha-256\n"
        )
        for name in ("pg_ident.conf", "pg_hba.conf"):
            os.chmod(data / name, 0o600)
            if not self.run_as.is_current:
                os.chown(data / name, self.run_as.uid, self.run_as.gid)

    def is_secured(self) -> bool:
        try:
            ours = (self.paths.data / "pg_hba.conf").read_text().startswith(HBA_MARKER)
        except OSError:
            return False
        return ours and self.password() is not None

    def secure(self, port: int) -> None:
        """Give a cluster made by an older labkit (trust authentication) a password and owner-only rules.

        Connects through the private socket (trust, or peer for the owner), so it also repairs a lost password file."""
        if self.password() is None:
            self._write_private(self.paths.password_file, secrets.token_urlsafe(24) + "\n")
        try:
            with self.socket_info(port).connect() as conn:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(self.password())))
                self._write_auth_files(self.paths.data)
                conn.execute("SELECT pg_reload_conf()")
        except psycopg.OperationalError as exc:
            raise ServerStartError(
                f"labkit could not reach its own server through the socket in {self.paths.socket_dir} to set up "
                f"owner-only authentication: {str(exc).strip()}",
                "Stop it with 'labkit down' and run 'labkit up' again.",
            ) from None
        time.sleep(0.2)  # the reload is asynchronous; the next connection uses the new rules

    def ensure_access(self, port: int) -> None:
        """Make sure labkit's password works: secure an old trust cluster, and repair a password the owner
        changed by hand (``ALTER ROLE postgres PASSWORD …``) or a lost password file, through the socket."""
        if not self.is_secured():
            self.secure(port)
            return
        info = self.info(port)
        try:
            with info.connect(connect_timeout=5) as conn:
                check_own_server(info, conn)  # the port answers with this data directory's cluster, no other
                return
        except psycopg.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                return  # not ready yet, or gone: the caller's own wait reports it
        self.secure(port)

    def check_intact(self) -> None:
        """Refuse, with what it means, a data directory whose control file is missing or truncated."""
        try:
            size = self.paths.control_file.stat().st_size
        except FileNotFoundError:
            raise damaged_error(self.paths, "its control file global/pg_control is missing") from None
        if size != CONTROL_FILE_SIZE:
            raise damaged_error(self.paths, f"its control file global/pg_control is truncated ({size} of {CONTROL_FILE_SIZE} bytes)")

    def check_compatible(self) -> None:
        major = self.data_major()
        if major is None:
            raise ServerStartError(
                f"{self.paths.data} exists but is not a PostgreSQL data directory (PG_VERSION missing or damaged).",
                "Move it aside (nothing is deleted automatically), or remove it with 'labkit down --delete-data'.",
            )
        if major != self._binaries().major:
            raise ServerStartError(
                f"The data directory {self.paths.data} was made by PostgreSQL {major}, "
                f"but the binaries in {self._binaries().bindir} are PostgreSQL {self._binaries().major}.",
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

    def orphans(self) -> list[int]:
        """Server processes still working in this data directory although their postmaster is gone
        (a kill -9 of the server while a backend ran a query): they hold its shared memory."""
        if self.running_pid() is not None:
            return []
        return server_processes(self.paths.data)

    def end_orphans(self) -> None:
        """Wait for the killed server's last processes to finish; end the ones that do not."""
        pids = self.orphans()
        if not pids:
            return
        print(
            f"labkit: {len(pids)} process(es) of the lab server that was killed are still running (pid {', '.join(map(str, pids))}); "
            f"waiting up to {ORPHAN_WAIT_S} s for them to end…",
            file=sys.stderr,
            flush=True,
        )
        if _wait_until(lambda: not self.orphans(), ORPHAN_WAIT_S):
            return
        print("labkit: ending them (their unfinished transactions are rolled back by the restart).", file=sys.stderr, flush=True)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.orphans():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            if _wait_until(lambda: not self.orphans(), 5):
                return
        raise ServerStartError(
            f"Processes of the killed lab server (pid {', '.join(map(str, self.orphans()))}) still use {self.paths.data}.",
            "End them (kill -9 PID, as root if needed) and run 'labkit up' again.",
        )

    def start(self, port: int) -> ConnectionInfo:
        self.check_intact()
        self.end_orphans()
        self.remove_stale_pid()
        socket_dir = self.paths.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        if socket_dir != self.paths.root:
            os.chmod(socket_dir, 0o700)
            self.run_as.own(socket_dir)
        options = f"-p {port} -k {socket_dir}"
        cmd = [
            str(self._binaries().bin("pg_ctl")),
            "-D", str(self.paths.data),
            "-l", str(self.paths.log),
            "-o", options,
            "-w", "-t", str(START_TIMEOUT_S),
            "start",
        ]  # fmt: skip
        result = self._run(cmd)
        if result.returncode != 0:
            raise self._start_failure(result.returncode)
        self.ensure_access(port)
        info = self.info(port)
        wait_until_ready(info, timeout=START_TIMEOUT_S)
        return info

    def _start_failure(self, code: int) -> ServerStartError:
        """What went wrong, from the server log, in words that say what to do."""
        tail = self.log_tail()
        log = f"Last lines of {self.paths.log}:\n{tail}"
        if "pre-existing shared memory block" in tail:
            return ServerStartError(
                "PostgreSQL did not start: processes of the previous (killed) server still hold its shared memory.\n" + log,
                "Wait until they end (a long query finishes on its own) or end them with kill, then run 'labkit up' again.",
            )
        if "control file" in tail or "pg_control" in tail:
            return damaged_error(self.paths, "PostgreSQL cannot read its control file (global/pg_control)", log)
        if "No space left on device" in tail:
            return disk_full_error(self.paths.root, "the server", log)
        if "Address already in use" in tail or "could not bind" in tail:
            return ServerStartError(f"PostgreSQL did not start: its port is taken.\n{log}", "Set LABKIT_PORT to a free port.")
        return ServerStartError(
            f"PostgreSQL did not start (pg_ctl exit {code}). {log}",
            "The log above says why. If the data directory is damaged, 'labkit down --delete-data' starts afresh "
            "(it deletes the lab's databases; copy the folder aside first to keep them).",
        )

    def stop(self) -> bool:
        """Stop the server if it runs (fast shutdown: sessions are ended, committed data kept). True if it was running.

        Works by signal, so it needs no binaries: a server whose programs moved can still be stopped."""
        pid = self.running_pid()
        if pid is None:
            return False
        return stop_postmaster(pid)

    def _run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        install_env = self.install.env() if self.install else {}
        env = {**(self.run_as.env() if not self.run_as.is_current else os.environ), **install_env}
        kwargs = {**self.run_as.popen_kwargs(), "env": env}
        return subprocess.run(cmd, capture_output=True, text=True, cwd="/", **kwargs)  # type: ignore[call-overload]


def stop_postmaster(pid: int) -> bool:
    """SIGINT (fast shutdown), then SIGQUIT if it takes too long. True once the postmaster is gone."""
    for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if _wait_until(lambda: not processes.alive(pid), wait):
            return True
    raise ServerStartError(f"The lab server (pid {pid}) did not stop.", f"End it with 'kill -9 {pid}' (as root if needed).")


def check_free_space(folder: Path, needed_mb: int = MIN_FREE_MB) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free // 2**20
    if free_mb < needed_mb:
        raise ServerStartError(
            f"Only {free_mb} MB are free on the disk of {folder}; a new lab server needs at least {needed_mb} MB "
            "(and the shop database some hundreds more).",
            "Free some space, or set LABKIT_DATA_DIR to a folder on a disk with room. Nothing was created.",
        )


def disk_full_error(folder: Path, what: str, detail: str = "") -> ServerStartError:
    free_mb = shutil.disk_usage(folder if folder.exists() else folder.parent).free // 2**20
    return ServerStartError(
        f"The disk of {folder} is full ({free_mb} MB free): {what} could not write its files." + (f"\n{detail}" if detail else ""),
        "Free some space (or set LABKIT_DATA_DIR to a disk with room) and run 'labkit up' again; committed data is kept.",
    )


def damaged_error(paths: ClusterPaths, what: str, detail: str = "") -> ServerStartError:
    return ServerStartError(
        f"The lab's PostgreSQL cluster in {paths.data} is damaged: {what}. PostgreSQL cannot start it, so the "
        "databases in it (the shop and any tables or databases you made there) cannot be opened." + (f"\n{detail}" if detail else ""),
        f"'labkit down --delete-data' deletes it and 'labkit up' starts afresh with a new shop. To try to rescue your own "
        f"work first, copy {paths.root} aside (PostgreSQL's pg_resetwal may open it, losing recent changes).",
    )


def _wait_until(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _proc_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _is_server_program(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in {"postgres", "postmaster"}
    except OSError:
        return False


def server_processes(data: Path) -> list[int]:
    """Live PostgreSQL processes (postmaster or backends) working in ``data`` (Linux /proc; [] elsewhere)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    target = str(data.resolve())
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and _proc_cwd(int(entry.name)) == target and _is_server_program(int(entry.name)):
            if processes.alive(int(entry.name)):
                found.append(int(entry.name))
    return sorted(found)


def stray_postmasters(root: Path) -> list[int]:
    """Postmasters whose data directory under ``root`` was deleted while they ran (e.g. ``rm -rf .labkit``):
    labkit can no longer reach them through files, so it finds them by their working directory."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    prefix = str(root.resolve() if root.exists() else root.absolute())
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or not _is_server_program(int(entry.name)):
            continue
        cwd = _proc_cwd(int(entry.name)) or ""
        if not cwd.endswith(" (deleted)") or not (cwd.removesuffix(" (deleted)") + os.sep).startswith(prefix + os.sep):
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-D" in argv and processes.alive(int(entry.name)):  # the postmaster (backends rewrite their command line)
            found.append(int(entry.name))
    return sorted(found)


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
            if "password authentication failed" in str(exc):
                break
            time.sleep(0.1)
    raise ServerStartError(f"The server at {info.display()} did not accept connections: {last}", "Check the server log.")
