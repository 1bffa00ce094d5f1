"""The lab server's state across processes: the state file and the lock that serialises changes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

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
