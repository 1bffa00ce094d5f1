"""What every command group shares: settings from the flags, the running server, the shop."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.config import SERVER_CHOICES, Settings
from labkit.errors import ConfigError, NotRunning
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo

SHOP_DB = "shop"
Command = Callable[[argparse.Namespace], int]
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]
"""``add(name, func, help)``: registers a sub-command with the server options and returns its parser."""


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.load(
        server=getattr(args, "server", None),
        scale=getattr(args, "scale", None),
        allow_other_major=True if getattr(args, "allow_other_major", False) else None,
    )


def ensure_shop(info: ConnectionInfo, settings: Settings, *, quiet: bool = False) -> None:
    """Load or check the shop; say what was done (a rebuild, a kept copy, a scale left as it was)."""
    import sys

    from labkit.shop import database

    for note in database.ensure_shop(info, scale=settings.scale, progress=not quiet):
        print(f"labkit: {note}", file=sys.stderr)


def running(settings: Settings) -> ConnectionInfo:
    info = lifecycle.current_server(settings)
    if info is None:
        raise NotRunning("The lab server is not running.", "Start it with 'labkit up'.")
    return info


def hidden_specs(
    info: ConnectionInfo, settings: Settings, seed: int, scale: float, solutions: str, exercises: list[str]
) -> dict[str, dict[str, Any]]:
    """Load (once) the hidden dataset of ``seed`` and compute the expected results on it."""
    from labkit.grading import hidden

    with lifecycle.locked(settings):
        hidden.prepare(info, seed, scale=scale)
    try:
        return hidden.expected_specs(info, Path(solutions), exercises)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), "Pass --solutions with the instructor notebooks (reference solutions).") from None


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=SERVER_CHOICES, help="where PostgreSQL comes from (default: auto)")
    parser.add_argument("--allow-other-major", action="store_true", help="accept a PostgreSQL other than 16")
