"""The lab server's life cycle: start or attach, find the running one, stop it.

The data directories on disk (and their postmaster.pid) are the truth, not state.json: a server
labkit started is found and stopped even after the state file was deleted, after another provider
or LABKIT_DATABASE_URL was used meanwhile, or after its folder was deleted while it ran.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field

from labkit import servers
from labkit.config import Settings
from labkit.errors import ConfigError, ProviderUnavailable
from labkit.servers.base import ConnectionInfo
from labkit.servers.cluster import Cluster
from labkit.servers.local import own_clusters, stop_strays
from labkit.servers.state import STATE_FILE, locked, read_state, write_state

__all__ = ["Started", "current_server", "ensure_server", "locked", "read_state", "start_server", "stop_server"]

CLUSTER_PROVIDERS = ("local", "portable")


@dataclass(frozen=True)
class Started:
    """What ``labkit up`` did: the server, whether it was already running, and anything worth saying."""

    info: ConnectionInfo
    attached: bool
    notes: list[str] = field(default_factory=list)


def _announce_fallback(settings: Settings) -> None:
    if settings.state_dir_is_fallback:
        print(f"labkit: the project folder is read-only; keeping the server in {settings.state_dir}", file=sys.stderr)


def start_server(settings: Settings) -> Started:
    """Start the lab server, or attach to the running one; say which."""
    _announce_fallback(settings)
    with locked(settings):
        chosen = servers.choose(settings, previous=read_state(settings).get("provider"))
        try:
            running = chosen.status()
        except (ConfigError, ProviderUnavailable):
            running = None
        info = chosen.start()
        write_state(settings, info)
    notes = []
    if settings.port is not None and running is not None and info.port != settings.port and info.provider != "url":
        notes.append(
            f"LABKIT_PORT={settings.port} is not used: the lab server was already running on port {info.port}. "
            "Run 'labkit down' and 'labkit up' to move it."
        )
    return Started(info, attached=running is not None and info.provider != "url", notes=notes)


def ensure_server(settings: Settings) -> ConnectionInfo:
    """Start the lab server, or attach to the running one. Safe to call repeatedly."""
    return start_server(settings).info


def _running_clusters(settings: Settings, hint: str | None) -> list[tuple[Cluster, int]]:
    found = []
    for cluster in own_clusters(settings, hint):
        if (port := cluster.running_port()) is not None:
            found.append((cluster, port))
    found.sort(key=lambda item: item[0].paths.root.name != "pg16")  # the course's own major first
    return found


def current_server(settings: Settings) -> ConnectionInfo | None:
    """The running lab server, without starting anything."""
    state = read_state(settings)
    name = "url" if settings.database_url else (settings.server if settings.server != "auto" else state.get("provider"))
    if name in ("url", "docker"):
        return servers.provider(name, settings).status()
    if name in CLUSTER_PROVIDERS:
        try:
            if (info := servers.provider(name, settings).status()) is not None:
                return info
        except (ConfigError, ProviderUnavailable):
            pass
    # No state, or the named provider cannot run now: the project's own clusters on disk.
    running = _running_clusters(settings, name if name in CLUSTER_PROVIDERS else None)
    if running:
        cluster, port = running[0]
        return cluster.info(port)
    return None


def stop_server(settings: Settings, *, delete_data: bool = False) -> str:
    """Stop whatever labkit started for this project; return what happened, for the user."""
    with locked(settings):
        state = read_state(settings)
        name = settings.server if settings.server != "auto" else state.get("provider")
        lines: list[str] = []
        if name == "url" or (settings.database_url and settings.server == "auto"):
            lines.append("The server belongs to LABKIT_DATABASE_URL; labkit does not stop it.")
        if name == "docker":
            stopped = servers.provider("docker", settings).stop(delete_data=delete_data)  # type: ignore[call-arg]
            lines.append("Stopped the docker server." if stopped else "The docker server was not running.")
            if delete_data:
                lines.append("Deleted its data volume.")
        clusters = own_clusters(settings, name if name in CLUSTER_PROVIDERS else None)
        strays = stop_strays(settings)
        if strays:
            lines.append(f"Stopped the lab server (pid {', '.join(map(str, strays))}) whose folder had been deleted.")
        for cluster in clusters:
            lines.append(_stop_cluster(cluster, delete_data=delete_data))
        if name in CLUSTER_PROVIDERS and not clusters and not strays:
            lines.append(f"The {name} server was not running.")
        if delete_data:
            (settings.state_dir / STATE_FILE).unlink(missing_ok=True)
        return "\n".join(lines) if lines else "No lab server was started from this project."


def _stop_cluster(cluster: Cluster, *, delete_data: bool) -> str:
    kind = cluster.provider
    other = cluster.paths.root.name != "pg16"
    label = f"{kind} server" + (f" ({cluster.paths.root.name})" if other else "")
    stopped = cluster.stop()
    said = f"Stopped the {label}." if stopped else f"The {label} was not running."
    if delete_data:
        shutil.rmtree(cluster.paths.root, ignore_errors=True)
        if cluster.paths.socket_dir != cluster.paths.root:
            shutil.rmtree(cluster.paths.socket_dir, ignore_errors=True)
        if cluster.paths.root.exists():
            return said + f" Could not delete all of {cluster.paths.root}."
        said += f" Deleted its data ({cluster.paths.root})."
    return said
