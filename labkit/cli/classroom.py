"""``labkit class``: a database per student on a shared server (provision, reset, list, drop, template)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from labkit.cli.common import AddCommand
from labkit.errors import ConfigError
from labkit.servers.base import ConnectionInfo


def _server(args: argparse.Namespace) -> ConnectionInfo:
    from labkit.servers.url import parse_url

    url = args.url or os.environ.get("LABKIT_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError(
            "No server is named for the class.",
            "Pass --url postgresql://INSTRUCTOR:PASSWORD@HOST:5432/postgres (or set LABKIT_DATABASE_URL), "
            "as a role with CREATEDB and CREATEROLE.",
        )
    return parse_url(url)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} — refusing without confirmation.", "Add --yes to confirm.")
    answer = input(f"{question} Type 'yes' to go on: ").strip().lower()
    if answer != "yes":
        raise ConfigError("Nothing was changed.", "Answer 'yes', or pass --yes.")


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from labkit.classroom.credentials import DEFAULT_PATH, Store

    return Store(Path(args.credentials) if args.credentials else DEFAULT_PATH)


def cmd_template(args: argparse.Namespace) -> int:
    from labkit.classroom import provision

    made = provision.make_template(_server(args), args.owner, force=args.force)
    if made:
        print(f"Made the class template {provision.CLASS_TEMPLATE!r}" + (f", owned by {args.owner!r}." if args.owner else "."))
    else:
        print(f"The class template {provision.CLASS_TEMPLATE!r} exists already (--force rebuilds it).")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from labkit.classroom import provision, roster

    students = roster.read_roster(Path(args.roster))
    roster.check_names(students, args.prefix)
    limits = provision.Limits(
        connection_limit=args.connection_limit, statement_timeout=args.statement_timeout,
        idle_in_transaction_session_timeout=args.idle_timeout, temp_file_limit=args.temp_file_limit,
    )  # fmt: skip
    store = _store(args)
    report = provision.provision(_server(args), students, store, limits=limits, prefix=args.prefix, host=args.student_host)
    made = [o for o in report.outcomes if o.created_database or o.created_role]
    reissued = [o for o in report.outcomes if o.new_password and not o.created_role]
    for outcome in made:
        print(f"  + {outcome.credential.key}: role and database {outcome.credential.role} ({outcome.seconds:.1f} s)")
    for outcome in reissued:
        print(f"  ! {outcome.credential.key}: {outcome.credential.role} existed without a recorded password; a new one was set")
    if args.print:
        for outcome in report.outcomes:
            print(f"{outcome.credential.key}\t{outcome.credential.database_url}")
    print(f"{len(made)} student(s) provisioned, {len(report.outcomes) - len(made)} already there; credentials in {store.path} (mode 0600).")
    if report.not_set:
        print(
            f"Not set per role (needs a superuser): {', '.join(report.not_set)}. A superuser may allow it: "
            + "; ".join(f"GRANT SET ON PARAMETER {name} TO <instructor>" for name in report.not_set),
            file=sys.stderr,
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from labkit.classroom import provision

    rows = provision.listing(_server(args), args.prefix)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
        return 0
    if not rows:
        print("No students are provisioned on this server.")
        return 0
    print(f"{'student':<24} {'database':<32} {'size':>9} {'conn':>4}  last activity")
    for r in rows:
        size = f"{r.size_bytes / 1e6:.0f} MB" if r.size_bytes is not None else "missing"
        print(f"{r.key:<24} {r.database or '-':<32} {size:>9} {r.connections:>4}  {r.last_activity or '-'}")
    total = sum(r.size_bytes or 0 for r in rows)
    print(f"{len(rows)} student(s), {total / 1e9:.2f} GB in all.")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from labkit.classroom import provision

    info = _server(args)
    with info.connect() as conn:
        role, key = provision.find(conn, args.student, args.prefix)
    _confirm(f"This replaces {key}'s database {role} with a fresh copy of the shop; their changes in it are lost.", args.yes)
    seconds = provision.reset(info, role, prefix=args.prefix)
    print(f"{key}'s database {role} is back to the pristine shop ({seconds:.1f} s).")
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    from labkit.classroom import provision

    info = _server(args)
    if bool(args.all) == bool(args.students):
        raise ConfigError("Name the students to drop, or pass --all.", "For example: labkit class drop s1234 --yes")
    with info.connect() as conn:
        marked = provision.students(conn, args.prefix)
        roles = list(marked) if args.all else [provision.find(conn, who, args.prefix)[0] for who in args.students]
    if not roles:
        print("No students are provisioned on this server.")
        return 0
    _confirm(
        f"This drops {len(roles)} student role(s) and their databases ({', '.join(roles[:5])}{' …' if len(roles) > 5 else ''}).", args.yes
    )
    dropped = provision.drop(info, roles, _store(args))
    print(f"Dropped {len(dropped)} student(s) and their databases.")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    from labkit.classroom.roster import DEFAULT_PREFIX

    p.add_argument("--url", help="the class server, as the instructor role (default: LABKIT_DATABASE_URL)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"name prefix of the students' roles and databases (default {DEFAULT_PREFIX})")


def cmd_class(args: argparse.Namespace) -> int:
    import psycopg

    from labkit.classroom.provision import ClassroomError
    from labkit.servers.url import explain_connect_error

    try:
        return int(args.class_func(args))
    except psycopg.OperationalError as exc:
        raise explain_connect_error(_server(args), exc) from None
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc).strip()
        raise ClassroomError(
            f"The server refused: {message}", "Check that --url names the instructor role (CREATEDB CREATEROLE)."
        ) from None


def register(add: AddCommand) -> None:
    group = add("class", cmd_class, "a database per student on a shared server: provision, reset, list, drop")
    sub = group.add_subparsers(dest="class_command", required=True, metavar="ACTION")

    def action(name: str, func, help_text: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(class_func=func)
        _common(p)
        return p

    p = action("provision", cmd_provision, "a role and a shop database for every student of an LMS roster (idempotent)")
    p.add_argument("roster", help="CSV exported from the LMS (name, login or email, id)")
    p.add_argument("--credentials", help="where to keep the passwords (CSV or .json; default ~/.config/labkit/class-credentials.csv)")
    p.add_argument("--print", action="store_true", help="also print each student's DATABASE_URL")
    p.add_argument("--student-host", help="the host name students' URLs use (default: the host of --url)")
    p.add_argument("--connection-limit", type=int, default=8, help="connections per student (default 8)")
    p.add_argument("--statement-timeout", default="60s", help="per-student statement_timeout (default 60s)")
    p.add_argument("--idle-timeout", default="10min", help="per-student idle_in_transaction_session_timeout (default 10min)")
    p.add_argument("--temp-file-limit", default="1GB", help="per-student temp_file_limit (default 1GB; needs a superuser's grant)")
    p = action("reset", cmd_reset, "put one student's database back to the pristine shop (asks first)")
    p.add_argument("student", help="the student's id, login or role name")
    p.add_argument("--yes", action="store_true", help="do not ask")
    action("list", cmd_list, "students with their database size, connections and last activity").add_argument(
        "--json", action="store_true", help="as JSON"
    )
    p = action("drop", cmd_drop, "drop students' roles and databases (asks first)")
    p.add_argument("students", nargs="*", help="ids, logins or role names")
    p.add_argument("--all", action="store_true", help="every student labkit provisioned on this server")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.add_argument("--credentials", help="the credentials file to remove them from")
    p = action("template", cmd_template, "make the class template a non-superuser instructor provisions from (run as superuser)")
    p.add_argument("--owner", help="the instructor role that will own it (default: the connected role)")
    p.add_argument("--force", action="store_true", help="rebuild it from the current shop template")


def lms_roster(roster_path: str) -> list:  # type: ignore[type-arg]
    """The roster as the LMS exports need it (read before grading, so a bad roster fails at once)."""
    from labkit.classroom import roster

    return roster.read_roster(Path(roster_path))


def write_lms_files(entries: list, out: Path, results: list, exercises: list[str]) -> None:  # type: ignore[type-arg]
    """Beside the gradebook ``out``: the Canvas and Moodle import files (for ``labkit grade --roster``)."""
    from labkit.grading import exports

    canvas, moodle, nbgrader = (out.with_name(f"{out.stem}-{kind}.csv") for kind in ("canvas", "moodle", "nbgrader"))
    problems = exports.write_canvas(canvas, results, exercises, entries)
    problems += [p for p in exports.write_moodle(moodle, results, exercises, entries) if p not in problems]
    exports.write_nbgrader(nbgrader, results, exercises, entries)
    for problem in problems:
        print(f"labkit: {problem}", file=sys.stderr)
    print(f"For the LMS: {canvas} (Canvas gradebook import)  ·  {moodle} (Moodle grade import, by email)  ·  {nbgrader} (nbgrader export)")
