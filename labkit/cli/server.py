"""Commands for the lab server: up, down, status, dsn, psql, doctor."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
from importlib import metadata

from labkit import servers
from labkit.cli.common import SHOP_DB, AddCommand, ensure_shop, running, settings_from
from labkit.errors import LabkitError, NotRunning
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    info = lifecycle.ensure_server(settings)
    if not args.no_data:
        with lifecycle.locked(settings):
            ensure_shop(info, settings)
    url = info.url(SHOP_DB, hide_password=True)
    print(f"PostgreSQL is up ({info.provider} provider).")
    print(f"  connection:  {url}")
    print(f'  psql:        psql "{url}"   (or: labkit psql)')
    print("  notebooks:   labkit lab   (JupyterLab on your student workspace; --instructor: on notebooks/)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print(lifecycle.stop_server(settings, delete_data=args.delete_data))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    info = lifecycle.current_server(settings)
    if info is None:
        print("The lab server is not running. Start it with 'labkit up'.")
        return NotRunning.exit_code
    with info.connect() as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        has_shop = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [SHOP_DB]).fetchone() is not None
    print(f"running: PostgreSQL {version} via {info.provider} at {info.host}:{info.port}")
    print(f"shop database: {'loaded' if has_shop else 'not loaded (labkit up loads it)'}")
    return 0


def cmd_dsn(args: argparse.Namespace) -> int:
    info = running(settings_from(args))
    print(info.sqlalchemy_url(args.db) if args.sqlalchemy else info.url(args.db))
    return 0


def cmd_psql(args: argparse.Namespace) -> int:
    info = running(settings_from(args))
    psql = shutil.which("psql")
    if psql is None:
        raise LabkitError(
            "psql (PostgreSQL's terminal client) is not installed.",
            "Install it (Debian/Ubuntu: apt install postgresql-client; macOS: brew install libpq), "
            f"or use %sql in a notebook; the connection string is {info.url(SHOP_DB, hide_password=True)}",
        )
    env = {**os.environ}
    if info.password:
        env["PGPASSWORD"] = info.password
    os.execvpe(psql, [psql, ConnectionInfo(**{**info.to_dict(), "password": None}).url(args.db), *args.psql_args], env)
    return 0  # pragma: no cover


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print(f"labkit {metadata.version('pg-labkit')} · Python {platform.python_version()} · {platform.system()} {platform.machine()}")
    print(f"project:  {settings.project_dir}")
    print(f"state:    {settings.state_dir}{'  (project folder is read-only: fallback)' if settings.state_dir_is_fallback else ''}")
    print(f"server:   {settings.server}   (choose with --server, LABKIT_SERVER or labkit.toml)")
    print(f"running as: {'root (the server runs as an unprivileged user)' if os.geteuid() == 0 else 'a normal user'}")
    print("\nproviders, in the order auto tries them:")
    first_ok = None
    for name, available in servers.survey(settings):
        mark = "ok " if available.ok else "no "
        if available.ok and first_ok is None:
            first_ok = name
        print(f"  [{mark}] {name:9s} {available.detail}")
    print(f"\nauto would use: {first_ok or 'nothing — see the reasons above'}")
    info = lifecycle.current_server(settings)
    if info:
        with info.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"running:  PostgreSQL {version} via {info.provider} at {info.host}:{info.port}")
    else:
        print("running:  no lab server (start one with 'labkit up')")
    print("\ntools:")
    print(f"  psql:     {shutil.which('psql') or 'not found (optional; labkit psql needs it)'}")
    for package in ("jupysql", "pgspecial", "psycopg", "jupyterlab"):
        try:
            print(f"  {package + ':':9s} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            print(f"  {package + ':':9s} not installed")
    return 0 if first_ok or info else 3


def register(add: AddCommand) -> None:
    up = add("up", cmd_up, "start (or attach to) PostgreSQL 16 and load the shop database")
    up.add_argument("--scale", type=float, help="data scale factor for a first load (default 1)")
    up.add_argument("--no-data", action="store_true", help="only start the server")
    down = add("down", cmd_down, "stop the lab server (data is kept)")
    down.add_argument("--delete-data", action="store_true", help="also delete the server's data directory/volume")
    add("status", cmd_status, "is the lab server running, and is the shop loaded?")
    dsn = add("dsn", cmd_dsn, "print the connection URL of the shop database")
    dsn.add_argument("--db", default=SHOP_DB, help="database name (default: shop)")
    dsn.add_argument("--sqlalchemy", action="store_true", help="print the SQLAlchemy (postgresql+psycopg) form")
    psql = add("psql", cmd_psql, "open psql on the shop database")
    psql.add_argument("--db", default=SHOP_DB, help="database name (default: shop)")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER, help="extra arguments for psql")
    add("doctor", cmd_doctor, "explain which ways of running PostgreSQL 16 work here, and why not")
