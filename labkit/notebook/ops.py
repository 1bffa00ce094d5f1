"""Conveniences for the operations lessons (replication, backups, pooling): extra clusters from a notebook,
and a one-sentence skip where the lab's provider cannot run them."""

from __future__ import annotations

from typing import Any

import psycopg

from labkit.config import SQL_DIR, Settings
from labkit.errors import LabkitError
from labkit.servers import extra

SKIPPED_CELL = ["pass\n"]
FDW_LOOPBACK_PROBE = SQL_DIR / "queries" / "fdw_loopback_probe.sql"


def extra_clusters_unavailable(settings: Settings | None = None) -> str | None:
    """Why this machine cannot start extra clusters for the lab (a sentence), or None if it can."""
    settings = settings or Settings.load()
    try:
        extra.lab_install(settings)
        extra.lab_server(settings)
    except LabkitError as exc:
        return f"{exc.message} {exc.hint or ''}".strip()
    return None


def _skip_every_later_cell(shell: Any) -> None:
    """Make each cell run after this one do nothing (the lesson cannot run here)."""

    def skip(_lines: list[str]) -> list[str]:
        return SKIPPED_CELL

    if not any(getattr(t, "__name__", "") == "skip" for t in shell.input_transformers_post):
        shell.input_transformers_post.append(skip)


def require_extra_clusters(lesson: str, settings: Settings | None = None, shell: Any = None) -> bool:
    """True if ``lesson`` can start extra clusters here; else print one sentence saying why not and skip the
    notebook's remaining cells (in IPython), so the lesson ends quietly instead of failing."""
    reason = extra_clusters_unavailable(settings)
    if reason is None:
        return True
    print(f"{lesson} is skipped here: it starts extra PostgreSQL clusters, and {reason[0].lower()}{reason[1:]}")
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
    if shell is not None:
        _skip_every_later_cell(shell)
    return False


def cluster(name: str, **options: Any) -> extra.ExtraCluster:
    """An extra cluster for a lesson (``extra.extra_cluster`` with the notebook's settings)."""
    return extra.extra_cluster(name, Settings.load(), **options)


def remove_leftover_clusters() -> list[str]:
    """Remove extra clusters left by an earlier kernel that is gone (an interrupted run); their names."""
    return extra.cleanup_leftovers(Settings.load())


def extensions_unavailable(conn: Any, names: list[str]) -> str | None:
    """Why the lab server cannot run a lesson that creates databases and these extensions (a sentence), or None."""
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if not superuser:
        return "the lab's connection is not a superuser, so it cannot create the lesson's database, foreign server and roles."
    available = {name for (name,) in conn.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", [names])}
    if missing := [name for name in names if name not in available]:
        return f"the lab server does not ship the extension{'s' if len(missing) > 1 else ''} {', '.join(missing)}."
    if "postgres_fdw" in names:
        return _fdw_loopback_unreachable(conn)
    return None


def _fdw_loopback_unreachable(conn: Any) -> str | None:
    """Why postgres_fdw on the server cannot connect to the server itself through its socket, or None (nothing is kept)."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(FDW_LOOPBACK_PROBE.read_text())
    except psycopg.Error as exc:
        return f"postgres_fdw on the lab server cannot connect to the server itself through its socket ({exc.diag.message_primary})."
    return None


def require_extensions(lesson: str, conn: Any, names: list[str], shell: Any = None) -> bool:
    """True if the lab server can run ``lesson`` (superuser, ``names`` available); else print one sentence
    saying why not and skip the notebook's remaining cells (in IPython)."""
    reason = extensions_unavailable(conn, names)
    if reason is None:
        return True
    print(f"{lesson} is skipped here: {reason}")
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
    if shell is not None:
        _skip_every_later_cell(shell)
    return False
