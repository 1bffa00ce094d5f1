"""Finding PostgreSQL server binaries on this machine and telling their version."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REQUIRED_MAJOR = 16
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgInstall:
    """A folder holding initdb, pg_ctl and postgres of one PostgreSQL version."""

    bindir: Path
    version: str  # e.g. "16.14"
    source: str  # where we found it, for `labkit doctor`
    libdir: Path | None = None  # extra shared-library folder (portable builds)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def bin(self, name: str) -> Path:
        exe = name + (".exe" if sys.platform == "win32" else "")
        return self.bindir / exe

    def env(self) -> dict[str, str]:
        """Environment additions needed to run these binaries."""
        if self.libdir is None:
            return {}
        var = "DYLD_LIBRARY_PATH" if sys.platform == "darwin" else "LD_LIBRARY_PATH"
        existing = os.environ.get(var)
        return {var: f"{self.libdir}{os.pathsep}{existing}" if existing else str(self.libdir)}


def probe(bindir: Path, source: str, libdir: Path | None = None) -> PgInstall | None:
    """Return the install in ``bindir`` if it has working server binaries."""
    postgres = bindir / ("postgres.exe" if sys.platform == "win32" else "postgres")
    if not (postgres.is_file() and (bindir / "initdb").exists() and (bindir / "pg_ctl").exists()):
        return None
    env = {**os.environ}
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    try:
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=10, env=env).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out)
    if not match:
        return None
    version = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return PgInstall(bindir=bindir.resolve(), version=version, source=source, libdir=libdir)


def candidate_dirs(pg_bin: str | None) -> list[tuple[Path, str]]:
    """Folders that may hold server binaries, most specific first."""
    found: list[tuple[Path, str]] = []
    if pg_bin:
        found.append((Path(pg_bin).expanduser(), "LABKIT_PG_BIN"))
    if exe := shutil.which("pg_ctl"):
        found.append((Path(exe).resolve().parent, "PATH"))
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                found.append((Path(out), "pg_config --bindir"))
        except (OSError, subprocess.SubprocessError):
            pass
    if prefix := os.environ.get("CONDA_PREFIX"):
        found.append((Path(prefix) / "bin", "conda prefix"))
    patterns = [
        ("/usr/lib/postgresql/*/bin", "Debian/Ubuntu package"),
        ("/usr/pgsql-*/bin", "PGDG RPM"),
        ("/opt/homebrew/opt/postgresql@*/bin", "Homebrew"),
        ("/usr/local/opt/postgresql@*/bin", "Homebrew"),
        ("/Applications/Postgres.app/Contents/Versions/*/bin", "Postgres.app"),
        ("/opt/conda/bin", "conda"),
        ("/srv/conda/envs/notebook/bin", "conda (Binder)"),
    ]
    for pattern, source in patterns:
        for path in sorted(glob.glob(pattern), reverse=True):
            found.append((Path(path), source))
    return found


def find_installs(pg_bin: str | None = None) -> list[PgInstall]:
    """Every distinct PostgreSQL server install we can find, in search order."""
    installs: list[PgInstall] = []
    seen: set[Path] = set()
    for path, source in candidate_dirs(pg_bin):
        try:
            key = path.resolve()
        except OSError:
            continue
        if key in seen:
            continue
        seen.add(key)
        if install := probe(path, source):
            installs.append(install)
    return installs
