"""A throwaway copy of the shop and an unprivileged role that owns what is in it, per submission.

The role is no superuser and may not create databases or roles, read server files or run
programs (no ``pg_read_server_files`` / ``pg_execute_server_program``); it may connect only to
its own copy, where it owns the tables (so DDL exercises work). Dropping the copy and the role
afterwards leaves the server as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import time

import psycopg
from psycopg import sql

from labkit.config import SQL_DIR
from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo

PREFIX = "labkit_grade_"
ABANDONED_ELSEWHERE_S = 24 * 3600
SANDBOX_SQL = SQL_DIR / "grading" / "sandbox.sql"
ROLE_SETTINGS = {
    "idle_in_transaction_session_timeout": "60s",
    "lock_timeout": "5s",
    "work_mem": "16MB",  # per sort or hash …
    "hash_mem_multiplier": "1",  # … hashes no more than sorts
    "maintenance_work_mem": "64MB",  # CREATE INDEX
    "temp_buffers": "16MB",  # temporary tables
    "max_parallel_workers_per_gather": "1",  # one answer keeps to two cores at most
    "temp_file_limit": "512MB",  # only a superuser may set this one; skipped otherwise
}


class GradingError(LabkitError):
    """Grading cannot run on this server."""

    exit_code = 8


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """Where one submission runs: ``info`` connects as its role to ``dbname``."""

    dbname: str
    role: str
    info: ConnectionInfo
    size: int = 0  # bytes of the database when made (the monitor bounds its growth)
    template: str = ""  # the database it is a copy of


def _check_rights(admin: psycopg.Connection) -> None:
    row = admin.execute("SELECT rolsuper OR (rolcreaterole AND rolcreatedb) FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise GradingError(
            f"Grading needs a role that may create databases and roles; {admin.info.user!r} may not.",
            "Grade on your own lab server ('labkit up'), or connect as a role with CREATEDB and CREATEROLE.",
        )


def create(admin_info: ConnectionInfo, template: str, *, statement_timeout: str) -> Sandbox:
    """A copy of ``template`` owned, inside, by a new unprivileged role."""
    name = PREFIX + secrets.token_hex(6)
    password = secrets.token_urlsafe(18)
    with admin_info.connect() as admin:
        _check_rights(admin)
        admin.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
                " CONNECTION LIMIT 4 PASSWORD {}"
            ).format(sql.Identifier(name), sql.Literal(password))
        )
        try:
            admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(json.dumps(_owner()))))
            for setting, value in {**ROLE_SETTINGS, "statement_timeout": statement_timeout}.items():
                try:
                    admin.execute(
                        sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(name), sql.Identifier(setting), sql.Literal(value))
                    )
                except psycopg.errors.InsufficientPrivilege:
                    continue
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(name), sql.Identifier(template))
            )
            with admin_info.connect(name) as conn:
                conn.execute("SELECT set_config('labkit.grader', %s, false)", [name])
                conn.execute(SANDBOX_SQL.read_text())  # type: ignore[arg-type]
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        except BaseException:
            drop(admin_info, name)
            raise
    return Sandbox(name, name, dataclasses.replace(admin_info, user=name, password=password), size, template)


# Functions a sandbox lacks (sql/grading/sandbox.sql) that an exercise may ask back through its ``functions``
# policy: transaction-level advisory locks only (they end with the checker's transaction; the session-level
# ones, which outlive it, stay revoked). A class graded on such an exercise accepts that one answer can take many
# in one statement; a submission that meets a full lock table because of another is graded again alone.
GRANTABLE_FUNCTIONS = frozenset({
    "pg_try_advisory_xact_lock(bigint)", "pg_try_advisory_xact_lock(integer,integer)",
    "pg_advisory_xact_lock(bigint)", "pg_advisory_xact_lock(integer,integer)",
    "pg_try_advisory_xact_lock_shared(bigint)", "pg_advisory_xact_lock_shared(bigint)",
    "pg_advisory_unlock(bigint)", "pg_advisory_unlock_all()",  # releasing only
})  # fmt: skip


def grant_functions(admin_info: ConnectionInfo, box: Sandbox, signatures: set[str]) -> None:
    """Give the sandbox's role back the functions the graded exercises need (only those in GRANTABLE_FUNCTIONS)."""
    if unknown := sorted(signatures - GRANTABLE_FUNCTIONS):
        raise GradingError(
            f"An exercise asks for function(s) a grading sandbox never grants: {', '.join(unknown)}.",
            f"Exercises may ask only for {', '.join(sorted(GRANTABLE_FUNCTIONS))}.",
        )
    with admin_info.connect(box.dbname) as conn:
        for signature in sorted(signatures):
            conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(sql.SQL(signature), sql.Identifier(box.role)))


INERT_FDW_SQL = SQL_DIR / "grading" / "inert_fdw.sql"


def allow_foreign_servers(admin_info: ConnectionInfo, box: Sandbox) -> None:
    """For exercises that create foreign servers (``creates_foreign_servers``): in the sandbox's database,
    ``postgres_fdw`` becomes an inert wrapper of that name — PostgreSQL's libpq option validator and no
    handler, so servers and user mappings are made and checked as usual, and no foreign table can be
    read: nothing connects anywhere from the grading server. The role gets USAGE on it."""
    with admin_info.connect(box.dbname) as conn:
        conn.execute(INERT_FDW_SQL.read_text())  # type: ignore[arg-type]
        conn.execute(sql.SQL("GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO {}").format(sql.Identifier(box.role)))


def drop(admin_info: ConnectionInfo, name: str, *, attempts: int = 5) -> None:
    """Remove a sandbox's database (ending its sessions) and its role; tried again while the server is short of locks."""
    for attempt in range(attempts):
        try:
            with admin_info.connect() as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
            return
        except (psycopg.errors.OutOfMemory, psycopg.errors.ObjectInUse, psycopg.errors.TooManyConnections):
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


def terminate(admin_info: ConnectionInfo, box: Sandbox) -> None:
    """End every session of the sandbox's role (a statement that ignored its timeout)."""
    with admin_info.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [box.role])


def _owner() -> dict[str, object]:
    """Which grading run made a sandbox: kept in its role's comment, so that a run only ever removes
    sandboxes whose run is gone (two instructors, or two shards, may grade on one server at once)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "created": int(time.time())}


def _run_is_gone(comment: str | None) -> bool:
    try:
        owner = json.loads(comment or "")
        host, pid, created = str(owner["host"]), int(owner["pid"]), float(owner["created"])
    except (ValueError, KeyError, TypeError):
        return True  # no owner recorded: an older labkit's, or a half-made sandbox
    if host != socket.gethostname():
        return time.time() - created > ABANDONED_ELSEWHERE_S  # another machine's run: only when long abandoned
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def leftovers(admin_info: ConnectionInfo, *, all_runs: bool = False) -> list[str]:
    """Sandboxes an interrupted grading run left behind (``all_runs``: every sandbox, running or not)."""
    pattern = PREFIX.replace("_", "\\_") + "%"
    with admin_info.connect() as admin:
        roles = dict(
            admin.execute(
                "SELECT rolname, pg_catalog.shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles WHERE rolname LIKE %s", [pattern]
            ).fetchall()
        )
        databases = {r[0] for r in admin.execute("SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s", [pattern])}
    names = set(roles) | databases
    return sorted(n for n in names if all_runs or n not in roles or _run_is_gone(roles[n]))


def clean_leftovers(admin_info: ConnectionInfo) -> int:
    names = leftovers(admin_info)
    for name in names:
        drop(admin_info, name)
    return len(names)
