"""Commands for the lab server: up, down, status, dsn, psql, doctor."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata

import psycopg

from labkit import servers
from labkit.cli.common import SHOP_DB, AddCommand, ensure_shop, running, settings_from
from labkit.config import Settings
from labkit.errors import LabkitError, NotRunning
from labkit.servers import clients, extra, lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    started = lifecycle.start_server(settings)
    info = started.info
    for note in started.notes:
        print(f"labkit: {note}", file=sys.stderr)
    for name in extra.cleanup_leftovers(settings):
        print(f"labkit: removed the extra cluster {name!r} left behind by a process that is gone", file=sys.stderr)
    if not args.no_data:
        with lifecycle.locked(settings):
            ensure_shop(info, settings)
    url = info.url(SHOP_DB, hide_password=True)
    print(f"PostgreSQL is up ({info.provider} provider{'; it was already running, labkit attached to it' if started.attached else ''}).")
    print(f"  connection:  {url}")
    if info.password:
        print('  psql:        labkit psql   (or: psql "$(labkit dsn)"; the password is kept in the state folder)')
    else:
        print(f'  psql:        psql "{url}"   (or: labkit psql)')
    print("  notebooks:   labkit lab   (JupyterLab on your student workspace; --instructor: on notebooks/)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if stopped := extra.stop_all_extra_clusters(settings):
        print(f"Stopped and removed {len(stopped)} extra cluster(s): {', '.join(stopped)}.")
    print(lifecycle.stop_server(settings, delete_data=args.delete_data))
    return 0


def _probe(info: ConnectionInfo) -> tuple[str, int, bool] | str:
    """(version, major, has shop) from the running server, or why it does not answer now."""
    try:
        with info.connect(connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            has_shop = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [SHOP_DB]).fetchone() is not None
            return str(version), conn.info.server_version // 10000, has_shop
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return text.removeprefix("FATAL:").strip()


def _not_answering(reason: str) -> str:
    if "recovery" in reason or "starting up" in reason:
        return f"it is recovering after a crash or starting up ({reason}); try again in a few seconds"
    if "shutting down" in reason:
        return f"it is shutting down ({reason}); run 'labkit up' once it has stopped"
    return reason


def _wrong_major(major: int, settings: Settings) -> bool:
    return major != REQUIRED_MAJOR and not settings.allow_other_major


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    info = lifecycle.current_server(settings)
    if info is None:
        print("The lab server is not running. Start it with 'labkit up'.")
        return NotRunning.exit_code
    probed = _probe(info)
    if isinstance(probed, str):
        print(f"running: a PostgreSQL server via {info.provider} at {info.display()}, not accepting connections: {_not_answering(probed)}")
        return NotRunning.exit_code
    version, major, has_shop = probed
    print(f"running: PostgreSQL {version} via {info.provider} at {info.display()}")
    if _wrong_major(major, settings):
        print(
            f"this is PostgreSQL {major}, the course needs {REQUIRED_MAJOR}: 'labkit up' refuses it "
            "(point LABKIT_DATABASE_URL at a PostgreSQL 16 server, or set LABKIT_ALLOW_OTHER_MAJOR=1 to use it anyway)"
        )
        return NotRunning.exit_code
    print(f"shop database: {'loaded' if has_shop else 'not loaded (labkit up loads it)'}")
    return 0


def cmd_dsn(args: argparse.Namespace) -> int:
    """The full URL, password included: the owner asks for it to hand the lab to another program."""
    info = running(settings_from(args))
    print(info.sqlalchemy_url(args.db) if args.sqlalchemy else info.url(args.db))
    return 0


def cmd_psql(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    info = running(settings)
    try:  # a psql of major 16 found here, else the cached (or fetched) PostgreSQL 16 client programs
        psql = str(clients.client_program("psql", settings))
        env = clients.client_env("psql", settings)
    except clients.ClientProgramsUnavailable as exc:
        raise LabkitError(
            f"No PostgreSQL 16 psql here, and labkit could not fetch one: {exc.message}",
            "Install it (Debian/Ubuntu: apt install postgresql-client-16; macOS: brew install libpq), "
            f"or use %sql in a notebook; the connection string is {info.url(SHOP_DB, hide_password=True)}",
        ) from None
    if info.password:
        env["PGPASSWORD"] = info.password
    psql_args = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    os.execvpe(psql, [psql, info.without_password().url(args.db), *psql_args], env)
    return 0  # pragma: no cover


def cmd_doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print(f"labkit {metadata.version('pg-labkit')} · Python {platform.python_version()} · {platform.system()} {platform.machine()}")
    print(f"project:  {settings.project_dir}")
    print(f"state:    {settings.state_dir}{'  (project folder is read-only: fallback)' if settings.state_dir_is_fallback else ''}")
    print(f"server:   {settings.server}   (choose with --server, LABKIT_SERVER or labkit.toml)")
    print(f"running as: {'root (the server runs as an unprivileged user)' if os.geteuid() == 0 else 'a normal user'}")
    print("\nproviders, in the order auto tries them:")
    for name, available in servers.survey(settings):
        mark = "ok " if available.ok else "no "
        print(f"  [{mark}] {name:9s} {available.detail}")
    auto, _ = servers.auto_choice(settings)
    first_ok = auto.name if auto is not None else None
    print(f"\nauto would use: {first_ok or 'nothing — see the reasons above'}")
    info = lifecycle.current_server(settings)
    if info:
        probed = _probe(info)
        if isinstance(probed, str):
            print(f"running:  a server via {info.provider} at {info.display()}, not accepting connections: {_not_answering(probed)}")
        else:
            version, major, _ = probed
            wrong = f"  [no: the course needs PostgreSQL {REQUIRED_MAJOR}]" if _wrong_major(major, settings) else ""
            print(f"running:  PostgreSQL {version} via {info.provider} at {info.display()}{wrong}")
    else:
        print("running:  no lab server (start one with 'labkit up')")
    print("\ntools:")
    print(f"  client programs: {clients.describe(settings)}")
    print(f"  extra clusters:  {extra.describe_support(settings)}")
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
