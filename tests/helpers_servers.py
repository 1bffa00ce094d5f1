"""Helpers for the server tests: private state folders, the CLI as a subprocess, postmasters in /proc.

Every test that starts a server gives it a temporary state folder of its own (never the
project's ``.labkit``), and its fixture stops it again, whatever the test did to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.config import Settings
from labkit.servers import lifecycle

IS_ROOT = os.geteuid() == 0
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CONSOLE_SCRIPT = Path(sys.executable).with_name("labkit")
LABKIT = [str(_CONSOLE_SCRIPT)] if _CONSOLE_SCRIPT.is_file() else [sys.executable, "-m", "labkit.cli"]
# Settings a developer's shell may carry that would steer the server under test elsewhere.
_STEERING = ("DATABASE_URL", "DOCKER_HOST", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (nothing will answer there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(path: Path, owner: str | None = None) -> Path:
    """Create ``path`` (mode 0755) and let other users traverse its parents, as the server user must."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    if IS_ROOT:
        for parent in path.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o011)
        if owner:
            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any labkit/libpq/Docker steering, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_") and k not in _STEERING}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def state_env(state: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI run whose server lives in ``state``."""
    return clean_env(LABKIT_DATA_DIR=str(state), **extra)


def labkit(*args: str, env: dict[str, str], timeout: float = 180, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the installed ``labkit`` command."""
    return subprocess.run([*LABKIT, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd="/", **kwargs)  # type: ignore[call-overload]


def settings_for(state: Path, server: str = "portable", **changes: object) -> Settings:
    """In-process settings for a server kept in ``state`` (ignores the caller's LABKIT_* variables)."""
    base = Settings.load(server=server, data_dir=str(state)).with_(
        database_url=None, port=None, pg_bin=None, allow_other_major=False, run_as=None
    )
    return base.with_(**changes)


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def postmasters(under: Path) -> list[int]:
    """PIDs of live postmasters whose data directory lies under ``under`` (backends are not counted)."""
    prefix = str(under.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = cmdline(int(entry.name))
        if not argv or not argv[0].endswith("postgres") or "-D" not in argv:
            continue
        data = argv[argv.index("-D") + 1] if argv.index("-D") + 1 < len(argv) else ""
        if (data == prefix or data.startswith(prefix + os.sep)) and not _is_zombie(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}
    except (OSError, IndexError):
        return True


def process_uid(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Wait until ``pid`` has exited (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _is_zombie(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive after {timeout} s")


def kill_postmasters(under: Path) -> list[int]:
    """Last resort for finalizers: SIGKILL every postmaster left running under ``under``."""
    pids = postmasters(under)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(AssertionError):
            wait_gone(pid)
    return pids


def shutdown(settings: Settings) -> None:
    """Stop the server kept in ``settings.state_dir`` and delete its data, whatever state it is in."""
    with contextlib.suppress(Exception):
        lifecycle.stop_server(settings, delete_data=True)
    kill_postmasters(settings.state_dir)


@contextlib.contextmanager
def stopped_afterwards(state: Path, env: dict[str, str] | None = None, **run: object) -> Iterator[Path]:
    """Around a CLI test: whatever happens, ``labkit down --delete-data`` and no postmaster left in ``state``."""
    try:
        yield state
    finally:
        with contextlib.suppress(Exception):
            labkit("down", "--delete-data", env=env or state_env(state), timeout=60, **run)
        kill_postmasters(state)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its content, to show that a refused start touched nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def python_for(user: str) -> tuple[list[str], dict[str, str]] | None:
    """A Python command ``user`` can run with labkit importable, and the env it needs; None if there is none.

    The venv's interpreter often links into root's private home: then use the system's Python of
    the same minor version with the venv's packages (same ABI).
    """
    entry = pwd.getpwnam(user)
    as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}
    check = "import labkit.cli, psycopg, sqlalchemy"
    site = next((p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)), None)
    options: list[tuple[list[str], dict[str, str]]] = [([sys.executable], {"PYTHONPATH": str(PROJECT_ROOT)})]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if system.is_file() and site:
        options.append(([str(system)], {"PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{site}"}))
    for python, env in options:
        try:
            result = subprocess.run([*python, "-c", check], env=clean_env(**env), capture_output=True, timeout=60, **as_user)  # type: ignore[call-overload]
        except (OSError, subprocess.SubprocessError):
            continue
        if result.returncode == 0:
            return python, env
    return None


def run_as_user(
    user: str, python: list[str], args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m labkit.cli ARGS`` as ``user``."""
    entry = pwd.getpwnam(user)
    return subprocess.run(
        [*python, "-m", "labkit.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd="/",
        user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
    )  # fmt: skip


def unprivileged_user() -> str | None:
    """A non-root account to run labkit as (postgres, else labkit), if this machine has one and we are root."""
    if not IS_ROOT:
        return None
    for name in ("postgres", "labkit"):
        try:
            if pwd.getpwnam(name).pw_uid != 0:
                return name
        except KeyError:
            continue
    return None


def user_with_python() -> tuple[str, list[str], dict[str, str]]:
    """An unprivileged account with a Python that imports labkit (command and env); skips the test if there is none."""
    user = unprivileged_user()
    if user is None:
        pytest.skip("needs root and an unprivileged account to switch to")
    found = python_for(user)
    if found is None:
        pytest.skip(f"no Python that {user} can run with labkit importable")
    return user, *found
