"""The lab server's lifecycle across processes: state file, lock, start/stop/status."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labkit import servers
from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo

STATE_FILE = "state.json"
LOCK_FILE = "lock"
LOCK_WAIT_S = 600


def read_state(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads((settings.state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(settings: Settings, info: ConnectionInfo) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    state = {"provider": info.provider, "connection": {**info.to_dict(), "password": None}}
    path = settings.state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """One labkit process at a time changes the server (two `labkit up` never double-start)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / LOCK_FILE).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("labkit: another labkit command is starting or loading the lab; waiting…", file=sys.stderr, flush=True)
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LabkitError(
                            f"Another labkit process has held {fh.name} for {LOCK_WAIT_S} s.",
                            "If none is running, delete that file and try again.",
                        ) from None
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    import shutil

    from labkit.servers.local import ClusterProvider

    if isinstance(chosen, ClusterProvider):
        root: Path = chosen.cluster().paths.root
        if root.exists():
            shutil.rmtree(root)
