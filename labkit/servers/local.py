"""The ``local`` provider: PostgreSQL 16 binaries already installed on this machine."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from labkit.config import Settings
from labkit.errors import ConfigError, ProviderUnavailable
from labkit.servers.base import Availability, ConnectionInfo, Provider
from labkit.servers.binaries import REQUIRED_MAJOR, PgInstall, find_installs
from labkit.servers.cluster import Cluster, ClusterPaths, choose_port, stop_postmaster, stray_postmasters
from labkit.servers.state import read_state
from labkit.servers.unprivileged import RunAs, server_user

SYSTEM_DATA_ROOT = Path("/var/lib/labkit")


def cluster_root(settings: Settings, run_as: RunAs, major: int) -> Path:
    """The cluster folder: in the state dir, unless the server user cannot reach it (root + private home)."""
    preferred = settings.state_dir / f"pg{major}"
    if run_as.is_current:
        return preferred
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if run_as.can_traverse(settings.state_dir):
        return preferred
    return system_root(settings) / f"pg{major}"


def system_root(settings: Settings) -> Path:
    """Where root keeps this project's clusters when the server user cannot reach the state folder."""
    digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:10]
    return SYSTEM_DATA_ROOT / f"{settings.project_dir.name}-{digest}"


def own_cluster_roots(settings: Settings) -> list[Path]:
    """Every cluster folder of this project on disk (pg16, and pgNN of another major), whatever state.json says."""
    roots: list[Path] = []
    for base in (settings.state_dir, system_root(settings)):
        try:
            found = sorted(base.glob("pg[0-9]*"))
        except OSError:
            continue
        roots += [p for p in found if p.is_dir() and p.name[2:].isdigit()]
    return roots


def own_clusters(settings: Settings, provider_hint: str | None = None) -> list[Cluster]:
    """The clusters found on disk, for status, stop and delete (their binaries need not be known)."""
    run_as = server_user(settings.run_as)
    clusters = []
    for root in own_cluster_roots(settings):
        paths = ClusterPaths(root)
        try:
            name = paths.provider_file.read_text().strip() or None
        except OSError:
            name = None
        clusters.append(Cluster(None, paths, run_as, name or provider_hint or "portable"))
    return clusters


def stop_strays(settings: Settings) -> list[int]:
    """Stop postmasters of this project whose folder was deleted while they ran. Their pids."""
    stopped = []
    for base in (settings.state_dir, system_root(settings)):
        for pid in stray_postmasters(base):
            print(f"labkit: stopping the lab server (pid {pid}) whose folder {base} was deleted while it ran.", file=sys.stderr, flush=True)
            stop_postmaster(pid)
            stopped.append(pid)
    return stopped


class ClusterProvider(Provider):
    """Shared lifecycle of providers that run a private cluster from binaries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def install(self) -> PgInstall:
        raise NotImplementedError

    def cluster(self, install: PgInstall | None = None) -> Cluster:
        install = install or self.install()
        run_as = server_user(self.settings.run_as)
        if not run_as.is_current and not run_as.can_traverse(install.bindir):
            raise ConfigError(
                f"The PostgreSQL programs in {install.bindir} are out of reach of {run_as.name!r}, the unprivileged "
                "user labkit runs the server as (PostgreSQL refuses to run as root): a folder above them is private.",
                "Keep them in a folder others may read, e.g. unset LABKIT_CACHE_DIR (as root the cache is /var/cache/labkit) "
                "or chmod o+x the private folder; for LABKIT_PG_BIN, point it at a system-wide install.",
            )
        root = cluster_root(self.settings, run_as, install.major)
        return Cluster(install, ClusterPaths(root), run_as, self.name)

    def start(self) -> ConnectionInfo:
        cluster = self.cluster()
        if (port := cluster.running_port()) is not None:
            cluster.ensure_access(port)
            return cluster.info(port)
        stop_strays(self.settings)
        if cluster.paths.data.is_dir() and any(cluster.paths.data.iterdir()):
            cluster.check_compatible()  # never initdb over (or delete) an existing folder
        else:
            if cluster.paths.data.is_dir():
                cluster.paths.data.rmdir()  # empty: nothing to keep
            cluster.initdb()
        port = choose_port(self.settings.port, self._previous_port(cluster))
        return cluster.start(port)

    def _previous_port(self, cluster: Cluster) -> int | None:
        """Keep the port of the last run, so connection strings stay the same across restarts."""
        if entry := cluster.pid_file():
            return entry[1]
        state = read_state(self.settings)
        return state.get("connection", {}).get("port") if state.get("provider") == self.name else None

    def stop(self) -> bool:
        try:
            cluster = self.cluster()
        except ProviderUnavailable:
            return False
        return cluster.stop()

    def status(self) -> ConnectionInfo | None:
        try:
            cluster = self.cluster()
        except ProviderUnavailable:
            return None
        port = cluster.running_port()
        return cluster.info(port) if port is not None else None


class LocalProvider(ClusterProvider):
    """Binaries found on PATH, LABKIT_PG_BIN, pg_config, distro folders, Homebrew or conda."""

    name = "local"

    def _choose(self) -> tuple[PgInstall | None, list[PgInstall]]:
        installs = find_installs(self.settings.pg_bin)
        if self.settings.pg_bin:  # named explicitly: that install or nothing
            named = [i for i in installs if i.source == "LABKIT_PG_BIN"]
            installs = named or installs
            if named and (named[0].major == REQUIRED_MAJOR or self.settings.allow_other_major):
                return named[0], installs
        for install in installs:
            if install.major == REQUIRED_MAJOR:
                return install, installs
        if self.settings.allow_other_major and installs:
            return max(installs, key=lambda i: i.major), installs
        return None, installs

    def availability(self) -> Availability:
        install, installs = self._choose()
        if install:
            note = "" if install.major == REQUIRED_MAJOR else " (another major version, allowed by LABKIT_ALLOW_OTHER_MAJOR)"
            return Availability(True, f"PostgreSQL {install.version} in {install.bindir} ({install.source}){note}")
        if installs:
            others = ", ".join(f"{i.version} in {i.bindir}" for i in installs)
            return Availability(
                False,
                f"found PostgreSQL {others}, but the course needs {REQUIRED_MAJOR} "
                "(set LABKIT_ALLOW_OTHER_MAJOR=1 to use it anyway; some lessons will differ)",
            )
        return Availability(
            False, f"no PostgreSQL {REQUIRED_MAJOR} server binaries found (PATH, LABKIT_PG_BIN, pg_config, /usr/lib/postgresql)"
        )

    def install(self) -> PgInstall:
        install, _ = self._choose()
        if install is None:
            raise ProviderUnavailable(
                "Local PostgreSQL: " + self.availability().detail + ".",
                "Install PostgreSQL 16, point LABKIT_PG_BIN at its bin folder, or use --server portable.",
            )
        return install
