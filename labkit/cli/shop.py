"""Commands for the shop database: reset, load."""

from __future__ import annotations

import argparse

from labkit.cli.common import AddCommand, running, settings_from
from labkit.servers import lifecycle


def cmd_reset(args: argparse.Namespace) -> int:
    from labkit.shop import database

    info = running(settings_from(args))
    seconds = database.reset(info)
    print(f"The shop database is back to its pristine state ({seconds:.2f} s). Your notebooks were not touched.")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from labkit.shop import database

    settings = settings_from(args)
    info = lifecycle.ensure_server(settings)
    with lifecycle.locked(settings):
        database.load(info, scale=settings.scale, force=args.force, progress=True)
    print(f"Loaded the shop at scale {settings.scale:g}.")
    return 0


def register(add: AddCommand) -> None:
    add("reset", cmd_reset, "restore the shop database from its pristine template (about a second)")
    load = add("load", cmd_load, "(re)load the shop database, e.g. at a larger scale")
    load.add_argument("--scale", type=float, help="scale factor: 1 = classroom size, 10+ = millions of rows")
    load.add_argument("--force", action="store_true", help="reload even if the same data is loaded")
