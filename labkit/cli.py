"""The ``labkit`` command: start, inspect and stop the lab; load and reset the shop."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from labkit import runtime, servers
from labkit.config import SERVER_CHOICES, Settings
from labkit.errors import ConfigError, LabkitError, NotRunning
from labkit.servers.base import ConnectionInfo

SHOP_DB = "shop"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(
        server=getattr(args, "server", None),
        scale=getattr(args, "scale", None),
        allow_other_major=True if getattr(args, "allow_other_major", False) else None,
    )


def _ensure_shop(info: ConnectionInfo, settings: Settings, *, quiet: bool = False) -> None:
    from labkit import shopdb

    shopdb.ensure_shop(info, scale=settings.scale, progress=not quiet)


def _running(settings: Settings) -> ConnectionInfo:
    info = runtime.current_server(settings)
    if info is None:
        raise NotRunning("The lab server is not running.", "Start it with 'labkit up'.")
    return info


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    info = runtime.ensure_server(settings)
    if not args.no_data:
        with runtime.locked(settings):
            _ensure_shop(info, settings)
    url = info.url(SHOP_DB, hide_password=True)
    print(f"PostgreSQL is up ({info.provider} provider).")
    print(f"  connection:  {url}")
    print(f'  psql:        psql "{url}"   (or: labkit psql)')
    print("  notebooks:   labkit lab   (JupyterLab on notebooks/)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(runtime.stop_server(settings, delete_data=args.delete_data))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    info = runtime.current_server(settings)
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
    info = _running(_settings(args))
    print(info.sqlalchemy_url(args.db) if args.sqlalchemy else info.url(args.db))
    return 0


def cmd_psql(args: argparse.Namespace) -> int:
    info = _running(_settings(args))
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
    settings = _settings(args)
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
    info = runtime.current_server(settings)
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


def cmd_lab(args: argparse.Namespace) -> int:
    settings = _settings(args)
    cmd_up(argparse.Namespace(**{**vars(args), "no_data": False}))
    jupyter = shutil.which("jupyter") or os.path.join(os.path.dirname(sys.executable), "jupyter")
    argv = [jupyter, "lab", f"--notebook-dir={settings.project_dir / 'notebooks'}", "--ServerApp.ip=127.0.0.1"]
    if args.no_browser:
        argv.append("--no-browser")
    if args.port:
        argv.append(f"--port={args.port}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    print("Starting JupyterLab; open notebooks/00-welcome.ipynb first. Stop with Ctrl-C.")
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_reset(args: argparse.Namespace) -> int:
    from labkit import shopdb

    info = _running(_settings(args))
    seconds = shopdb.reset(info)
    print(f"The shop database is back to its pristine state ({seconds:.2f} s). Your notebooks were not touched.")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from labkit import shopdb

    settings = _settings(args)
    info = runtime.ensure_server(settings)
    with runtime.locked(settings):
        shopdb.load(info, scale=settings.scale, force=args.force, progress=True)
    print(f"Loaded the shop at scale {settings.scale:g}.")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit.exercises.release import release

    report = release(Path(args.source), Path(args.out))
    for name, removed in report.items():
        print(f"  {name}: {removed} solution(s) replaced by stubs")
    print(f"Student notebooks written to {args.out}")
    return 0


def cmd_exercises(args: argparse.Namespace) -> int:
    from labkit.exercises import refresh

    info = _running(_settings(args))
    if args.action == "mutants":
        return _mutants(info, _settings(args), args)
    with info.connect(SHOP_DB) as conn:
        if args.action == "refresh":
            written = refresh.refresh(conn)
            print(f"Fingerprints written for {len(written)} exercise(s).")
            return 0
        problems = refresh.stale(conn)
    for problem in problems:
        print(f"  {problem}")
    print("All exercise specs are current." if not problems else f"{len(problems)} stale exercise spec(s).")
    return 0 if not problems else 1


def _hidden_specs(
    info: ConnectionInfo, settings: Settings, seed: int, scale: float, solutions: str, exercises: list[str]
) -> dict[str, dict[str, Any]]:
    """Load (once) the hidden dataset of ``seed`` and compute the expected results on it."""
    from pathlib import Path

    from labkit.grading import hidden

    with runtime.locked(settings):
        hidden.prepare(info, seed, scale=scale)
    try:
        return hidden.expected_specs(info, Path(solutions), exercises)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), "Pass --solutions with the instructor notebooks (reference solutions).") from None


def _mutants(info: ConnectionInfo, settings: Settings, args: argparse.Namespace) -> int:
    import contextlib

    from labkit.exercises import checker, mutants, refresh
    from labkit.grading import hidden

    wanted = [o for o in (args.only or "").split(",") if o]
    chosen = [
        s for s in refresh.all_solutions()
        if (not wanted or checker.selected(s.exercise, wanted))
        and checker.spec(s.exercise).get("kind", "result") != "plan"  # a plan check is about how, not what
    ]  # fmt: skip
    hidden_specs = {}
    if args.hidden_seed is not None:
        exercises = [s.exercise for s in chosen]
        hidden_specs = _hidden_specs(info, settings, args.hidden_seed, args.hidden_scale, str(refresh.NOTEBOOKS), exercises)
    reports = []
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(info.connect(SHOP_DB))
        hidden_conn = stack.enter_context(info.connect(hidden.HIDDEN_DB)) if hidden_specs else None
        for solution in chosen:
            spec = hidden_specs.get(solution.exercise)
            there = (hidden_conn, spec) if hidden_conn is not None and spec else None
            reports.append(mutants.try_mutants(conn, solution.exercise, solution.sql, hidden=there))
            print(mutants.report_text(reports[-1:]).splitlines()[0], flush=True)
    print(mutants.report_text(reports))
    return 0


def _points(values: list[str]) -> dict[str, float]:
    points = {}
    for value in values:
        exercise, _, number = value.partition("=")
        try:
            points[exercise.strip()] = float(number)
        except ValueError:
            raise ConfigError(f"--points {value!r} is not EXERCISE=POINTS.", "For example: --points 03.2=3") from None
    return points


def cmd_grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit import shopdb
    from labkit.exercises import checker
    from labkit.grading import gradebook, grader, submission

    folder, out = Path(args.submissions), Path(args.out)
    if not folder.is_dir():
        raise ConfigError(f"There is no submissions folder at {folder}.", "Give the folder holding one sub-folder or notebook per student.")
    submissions = submission.collect(folder)
    if not submissions:
        raise ConfigError(
            f"{folder} holds no submissions.", "Put each student's notebooks in a sub-folder named after them, or STUDENT.ipynb files."
        )
    try:
        exercises = grader.exercises_for(submissions, [e for e in (args.exercises or "").split(",") if e] or None)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), "Name exercises like 03.2 or whole notebooks like 03.") from None
    points = _points(args.points or [])
    if unknown := sorted(set(points) - set(checker.specs())):
        raise ConfigError(f"--points names unknown exercise(s): {', '.join(unknown)}.", "Use ids like 03.2.")
    options = grader.Options(statement_timeout=args.statement_timeout, time_limit=args.time_limit, points=points)
    if args.workers:
        options.workers = args.workers
    settings = _settings(args)
    info = runtime.ensure_server(settings)
    with runtime.locked(settings):
        _ensure_shop(info, settings)
    if args.hidden_seed is not None:
        options.hidden_specs = _hidden_specs(info, settings, args.hidden_seed, args.hidden_scale, args.solutions, exercises)
    print(f"Grading {len(submissions)} submission(s) on {len(exercises)} exercise(s) against the {shopdb.TEMPLATE_DB} copy"
          + (f" and a hidden dataset (scale {args.hidden_scale:g})" if options.hidden_specs is not None else "") + ".")  # fmt: skip
    results = grader.grade_all(info, submissions, exercises, options, progress=not args.quiet)
    gradebook.write_csv(out, results, exercises)
    feedback_dir = Path(args.feedback) if args.feedback else out.with_name(out.stem + "-feedback")
    gradebook.write_feedback(feedback_dir, results, exercises)
    summary = gradebook.summarise(results, exercises)
    summary_path = out.with_name(out.stem + "-summary.csv")
    gradebook.write_summary(summary_path, summary)
    print(gradebook.summary_table(summary))
    print(f"Gradebook: {out}  ·  per-exercise summary: {summary_path}  ·  feedback for each student: {feedback_dir}/")
    return 0


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=SERVER_CHOICES, help="where PostgreSQL comes from (default: auto)")
    parser.add_argument("--allow-other-major", action="store_true", help="accept a PostgreSQL other than 16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="A live PostgreSQL 16 lab for the pg-labkit notebooks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_server_options(p)
        p.set_defaults(func=func)
        return p

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
    lab = add("lab", cmd_lab, "start the lab server and JupyterLab on notebooks/")
    lab.add_argument("--scale", type=float, help="data scale factor for a first load")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--port", type=int, help="JupyterLab port")
    add("reset", cmd_reset, "restore the shop database from its pristine template (about a second)")
    load = add("load", cmd_load, "(re)load the shop database, e.g. at a larger scale")
    load.add_argument("--scale", type=float, help="scale factor: 1 = classroom size, 10+ = millions of rows")
    load.add_argument("--force", action="store_true", help="reload even if the same data is loaded")
    release = add("release", cmd_release, "write student notebooks: solutions replaced by stubs, exercise outputs cleared")
    release.add_argument("source", nargs="?", default="notebooks", help="instructor notebooks folder (default: notebooks)")
    release.add_argument("--out", default="release", help="where the student notebooks go (default: release/)")
    ex = add("exercises", cmd_exercises, "refresh or verify exercise fingerprints; mutation-test the checks")
    ex.add_argument("action", choices=("refresh", "verify", "mutants"), help="mutants: report plausible wrong answers a check would accept")
    ex.add_argument("--only", help="mutants: comma-separated exercises or notebooks, e.g. 03,04.2")
    ex.add_argument("--hidden-seed", type=int, help="mutants: count a mutant as accepted only if a hidden dataset accepts it too")
    ex.add_argument("--hidden-scale", type=float, default=0.5, help="mutants: scale of the hidden dataset (default 0.5)")
    grade = add("grade", cmd_grade, "grade a class's submitted notebooks into a CSV gradebook, with feedback per student")
    grade.add_argument("submissions", help="folder with one sub-folder (or STUDENT.ipynb) per student")
    grade.add_argument("--out", default="gradebook.csv", help="the CSV gradebook to write (default: gradebook.csv)")
    grade.add_argument("--feedback", help="folder for the per-student feedback files (default: next to the gradebook)")
    grade.add_argument("--exercises", help="comma-separated exercises or notebooks, e.g. 03,04.2 (default: those answered)")
    grade.add_argument("--points", action="append", metavar="EXERCISE=POINTS", help="points for an exercise (repeatable)")
    grade.add_argument("--statement-timeout", type=float, default=10.0, metavar="SECONDS", help="per SQL statement (default 10)")
    grade.add_argument("--time-limit", type=float, default=120.0, metavar="SECONDS", help="per submission (default 120)")
    grade.add_argument("--workers", type=int, help="submissions graded at once (default: one per core, at least 2)")
    grade.add_argument("--hidden-seed", type=int, help="also check every answer on a second dataset made with this secret seed")
    grade.add_argument("--hidden-scale", type=float, default=0.5, help="scale of the hidden dataset (default 0.5)")
    grade.add_argument("--solutions", default="notebooks", help="instructor notebooks with the reference solutions (for --hidden-seed)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("labkit: interrupted; nothing was half-changed.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
