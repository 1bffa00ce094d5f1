"""Commands for the shop database: reset, load, check, drop-kept."""

from __future__ import annotations

import argparse
import sys

from labkit.cli.common import AddCommand, running, settings_from
from labkit.servers import lifecycle


def cmd_reset(args: argparse.Namespace) -> int:
    from labkit.shop import database

    info = running(settings_from(args))
    seconds = database.reset(info)
    print(f"The shop database is back to its pristine state ({seconds:.2f} s). Your notebooks were not touched.")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from labkit.shop import capacity, database

    if args.scale is not None:
        capacity.check_scale(args.scale)
    settings = settings_from(args)
    capacity.check_scale(settings.scale)  # LABKIT_SCALE or labkit.toml, before a server is started
    info = lifecycle.ensure_server(settings)
    with lifecycle.locked(settings):
        outcome = database.load(
            info, scale=settings.scale, force=args.force, progress=True, keep_shop=not args.drop_old_shop, confirmed=args.yes
        )
    if not outcome.loaded:
        print(f"The shop is already loaded at scale {settings.scale:g} (add --force to reload it).")
        return 0
    print(f"Loaded the shop at scale {settings.scale:g}.")
    if outcome.kept:
        print(f"labkit: {database.kept_note(outcome.kept, 'was replaced by this load')}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from labkit.shop import database

    info = running(settings_from(args))
    damaged = []
    for dbname, fix in ((database.SHOP_DB, "labkit reset"), (database.TEMPLATE_DB, "labkit load --force")):
        check = database.verify(info, dbname)
        if not check.exists:
            print(f"{dbname}: not loaded (labkit up loads it)")
            damaged.append(dbname)
        elif check.ok:
            print(f"{dbname}: ok ({check.tables} tables read)")
        else:
            print(f"{dbname}: DAMAGED, {len(check.problems)} problem(s):")
            for problem in check.problems:
                print(f"  {problem}")
            print(f"  → run '{fix}' to rebuild it" + (" (changes made in the shop are lost)" if dbname == database.SHOP_DB else ""))
            damaged.append(dbname)
    return database.ShopError.exit_code if damaged else 0


def cmd_drop_kept(args: argparse.Namespace) -> int:
    from labkit.shop import capacity, database

    info = running(settings_from(args))
    if not args.names:
        copies = database.kept_copies(info)
        if not copies:
            print("No kept copies of the shop.")
        for name, size in copies:
            print(f"{name}  ({capacity.human(size)})")
        if copies:
            print("Drop one with: labkit drop-kept NAME")
        return 0
    for name in args.names:
        database.drop_kept(info, name)
        print(f"Dropped {name}.")
    return 0


def register(add: AddCommand) -> None:
    add("reset", cmd_reset, "restore the shop database from its pristine template (about a second)")
    load = add("load", cmd_load, "(re)load the shop database, e.g. at a larger scale")
    load.add_argument("--scale", type=float, help="scale factor: 1 = classroom size, 10+ = millions of rows")
    load.add_argument("--force", action="store_true", help="reload even if the same data is loaded")
    load.add_argument("--yes", action="store_true", help="load even if the estimate says this machine cannot hold it")
    load.add_argument(
        "--drop-old-shop", action="store_true", help="drop the current shop database instead of keeping it as shop_before_<time>"
    )
    add("check", cmd_check, "verify the shop and its pristine template: every table's files are there and readable")
    drop = add("drop-kept", cmd_drop_kept, "list (or drop) the old shop databases kept by a reload (shop_before_<time>)")
    drop.add_argument("names", nargs="*", help="kept copies to drop (default: list them)")
