"""The lab server's life cycle: start or attach, find the running one, stop it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from labkit import servers
from labkit.config import Settings
from labkit.servers.base import ConnectionInfo
from labkit.servers.local import ClusterProvider
from labkit.servers.state import STATE_FILE, locked, read_state, write_state

__all__ = ["current_server", "ensure_server", "locked", "read_state", "stop_server"]


def _announce_fallback(settings: Settings) -> None:
    if settings.state_dir_is_fallback:
        print(f"labkit: the project folder is read-only; keeping the server in {settings.state_dir}", file=sys.stderr)


def ensure_server(settings: Settings) -> ConnectionInfo:
    """Start the lab server, or attach to the running one. Safe to call repeatedly."""
    _announce_fallback(settings)
    with locked(settings):
        chosen = servers.choose(settings, previous=read_state(settings).get("provider"))
        info = chosen.start()
        write_state(settings, info)
        return info


def current_server(settings: Settings) -> ConnectionInfo | None:
    """The running lab server, without starting anything."""
    state = read_state(settings)
    name = "url" if settings.database_url else (settings.server if settings.server != "auto" else state.get("provider"))
    if not name:
        return None
    return servers.provider(name, settings).status()


def stop_server(settings: Settings, *, delete_data: bool = False) -> str:
    """Stop whatever labkit started for this project; return what happened, for the user."""
    with locked(settings):
        state = read_state(settings)
        name = settings.server if settings.server != "auto" else state.get("provider")
        if not name:
            return "No lab server was started from this project."
        if name == "url":
            return "The server belongs to LABKIT_DATABASE_URL; labkit does not stop it."
        chosen = servers.provider(name, settings)
        if name == "docker":
            stopped = chosen.stop(delete_data=delete_data)  # type: ignore[call-arg]
        else:
            stopped = chosen.stop()
            if delete_data:
                _delete_cluster(chosen)
        if delete_data:
            (settings.state_dir / STATE_FILE).unlink(missing_ok=True)
        return f"Stopped the {name} server." if stopped else f"The {name} server was not running."


def _delete_cluster(chosen: servers.Provider) -> None:
    if isinstance(chosen, ClusterProvider):
        root: Path = chosen.cluster().paths.root
        if root.exists():
            shutil.rmtree(root)
