"""A login role and a shop database per student on a shared server, as a role with CREATEDB and CREATEROLE.

Every student database is cloned from a class template whose objects belong to the instructor, and
then handed to the student (they own the shop's tables, so lessons may index and alter them); only
the student and the instructor may connect. Roles and databases carry a comment naming their
student, so labkit never touches a role or database it did not make.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from labkit.classroom.credentials import Credential, Store
from labkit.classroom.roster import DEFAULT_PREFIX, Student, role_name
from labkit.config import SQL_DIR
from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo
from labkit.shop.database import TEMPLATE_DB

CLASS_TEMPLATE = "labkit_class_template"
MARK = "labkit class student: "
BUILDING = "labkit class: being provisioned"
LOCK_KEY = "labkit class"
HAND_OVER_SQL = SQL_DIR / "classroom" / "hand_over.sql"


class ClassroomError(LabkitError):
    """A class cannot be provisioned, reset, listed or dropped as asked."""

    exit_code = 9


@dataclass(frozen=True)
class Limits:
    """What each student's role may use. ``temp_file_limit`` needs a superuser, or SET on it granted."""

    connection_limit: int = 8
    statement_timeout: str = "60s"
    idle_in_transaction_session_timeout: str = "10min"
    temp_file_limit: str = "1GB"

    def settings(self) -> dict[str, str]:
        return {
            "statement_timeout": self.statement_timeout,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_session_timeout,
            "temp_file_limit": self.temp_file_limit,
        }


@dataclass
class Outcome:
    """What provisioning did for one student."""

    credential: Credential
    created_role: bool = False
    created_database: bool = False
    new_password: bool = False
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.created_role or self.created_database or self.new_password


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    not_set: list[str] = field(default_factory=list)
    """Per-role settings the instructor may not set here (e.g. temp_file_limit without a superuser's grant)."""


def _one(conn: psycopg.Connection, query: str, params: list[object] | None = None) -> object:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def _role_comment(conn: psycopg.Connection, role: str) -> str | None:
    """The comment on ``role``: None if the role does not exist, '' if it has none."""
    row = conn.execute("SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    return None if row is None else str(row[0])


def _database_comment(conn: psycopg.Connection, dbname: str) -> str | None:
    row = conn.execute(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s", [dbname]
    ).fetchone()
    return None if row is None else str(row[0])


def check_instructor(conn: psycopg.Connection) -> None:
    """The connected role may create roles and databases (no superuser needed)."""
    row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not (row[0] or (row[1] and row[2])):
        raise ClassroomError(
            f"The role {conn.info.user!r} may not create roles and databases, so it cannot provision a class.",
            f"Connect as an instructor role made by an administrator: CREATE ROLE instructor LOGIN CREATEDB CREATEROLE PASSWORD '…' "
            f"(or ALTER ROLE {conn.info.user} CREATEDB CREATEROLE).",
        )


def hand_over(conn: psycopg.Connection, old: list[str], new: str) -> int:
    """Give ``new`` every object of the connected database owned by one of ``old``. Returns how many."""
    statements = [r[0] for r in conn.execute(HAND_OVER_SQL.read_text(), {"old": old, "new": new}).fetchall()]  # type: ignore[call-overload]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return len(statements)


def make_template(info: ConnectionInfo, owner: str | None = None, *, source: str = TEMPLATE_DB, force: bool = False) -> bool:
    """Clone ``source`` (the pristine shop) into the class template, every object owned by ``owner``.

    Run it as a superuser (or as the owner of ``source`` and its objects) once per server; an
    instructor who loaded the shop themselves gets it made by the first ``provision``.
    Returns False when the template already exists (and not ``force``).
    """
    with info.connect() as conn:
        owner = owner or conn.info.user
        if _one(conn, "SELECT 1 FROM pg_database WHERE datname = %s", [source]) is None:
            raise ClassroomError(
                f"The server has no {source!r} database to clone the class from.",
                "Load the shop on this server first: LABKIT_DATABASE_URL=postgresql://ADMIN@HOST/postgres labkit load "
                "(as a role that may create the extensions pg_stat_statements and postgres_fdw).",
            )
        if _role_comment(conn, owner) is None:
            raise ClassroomError(f"There is no role {owner!r} to own the class template.", "Create the instructor role first.")
        exists = _one(conn, "SELECT 1 FROM pg_database WHERE datname = %s", [CLASS_TEMPLATE]) is not None
        if exists and not force:
            return False
        building = CLASS_TEMPLATE + "_new"
        source_owner = str(_one(conn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [source]))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
        try:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(building), sql.Identifier(source))
            )
        except psycopg.errors.InsufficientPrivilege:
            raise ClassroomError(
                f"The role {conn.info.user!r} may not copy {source!r} (it belongs to {source_owner!r} and is not marked as a template).",
                f"Have a superuser run once: labkit class template --owner {owner}",
            ) from None
        except psycopg.errors.ObjectInUse:
            raise ClassroomError(f"Someone is connected to {source!r}, so it cannot be copied now.", "Try again in a moment.") from None
        try:
            with info.connect(building) as db:
                hand_over(db, sorted({source_owner, conn.info.user}), owner)
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(building), sql.Identifier(owner)))
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
            raise ClassroomError(
                f"The role {conn.info.user!r} may not hand the shop's objects to {owner!r}: {exc.diag.message_primary}.",
                f"Have a superuser (or the owner of {source!r}) run once: labkit class template --owner {owner}",
            ) from None
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(building)))
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(sql.Identifier(building)))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(CLASS_TEMPLATE)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(CLASS_TEMPLATE)))
    return True


def _ensure_template(info: ConnectionInfo, conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT pg_get_userbyid(datdba), pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = %s", [CLASS_TEMPLATE]
    ).fetchone()
    if row is None:
        make_template(info)
    elif not row[1] and not _one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        raise ClassroomError(
            f"The class template belongs to {row[0]!r}, not to {conn.info.user!r}.",
            f"Have a superuser run: labkit class template --owner {conn.info.user} --force",
        )


def _password() -> str:
    return secrets.token_urlsafe(18)


def _scram(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM verifier of ``password``, computed by libpq: the server and its logs never see the password."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def _credential(info: ConnectionInfo, student: Student, role: str, password: str, host: str | None) -> Credential:
    student_info = ConnectionInfo(host=host or info.host, port=info.port, user=role, password=password)
    return Credential(
        key=student.key, role=role, database=role, password=password, database_url=student_info.url(role),
        name=student.name, login=student.login, email=student.email,
    )  # fmt: skip


def _create_role(conn: psycopg.Connection, student: Student, role: str, password: str, limits: Limits, report: Report) -> None:
    ident = sql.Identifier(role)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS "
                "CONNECTION LIMIT {} PASSWORD {}"
            ).format(ident, sql.Literal(limits.connection_limit), sql.Literal(_scram(conn, role, password)))
        )
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(MARK + student.key)))
        if not _one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            # a CREATEROLE role holds ADMIN on what it creates; SET lets it hand objects over, INHERIT lets it read them
            conn.execute(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(ident, sql.Identifier(conn.info.user)))
        for name, value in limits.settings().items():
            if not _one(conn, "SELECT has_parameter_privilege(%s, 'SET')", [name]) and not _one(
                conn, "SELECT context = 'user' FROM pg_settings WHERE name = %s", [name]
            ):
                if name not in report.not_set:
                    report.not_set.append(name)
                continue
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident, sql.Identifier(name), sql.Literal(value)))


def _build_database(info: ConnectionInfo, conn: psycopg.Connection, dbname: str, role: str) -> None:
    """Clone the template into ``dbname`` and give its objects to ``role`` (no one may connect yet)."""
    ident = sql.Identifier(dbname)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    try:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(ident, sql.Identifier(CLASS_TEMPLATE)))
    except psycopg.errors.ObjectInUse:
        raise ClassroomError(
            f"Someone is connected to {CLASS_TEMPLATE!r}, so it cannot be copied now.", "Close that session and try again."
        ) from None
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(BUILDING)))
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
    conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(ident))
    template_owner = str(_one(conn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [CLASS_TEMPLATE]))
    with info.connect(dbname) as db:
        hand_over(db, sorted({template_owner, conn.info.user, "pg_database_owner"}), role)


def _open_database(conn: psycopg.Connection, dbname: str, student: Student, role: str) -> None:
    ident = sql.Identifier(dbname)
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(MARK + student.key)))
    conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(ident, sql.Identifier(role)))


def _check_ours(conn: psycopg.Connection, student: Student, role: str) -> tuple[bool, bool]:
    """Whether the role and the database already exist (and are this student's); refuses strangers."""
    role_comment = _role_comment(conn, role)
    db_comment = _database_comment(conn, role)
    for kind, comment in (("role", role_comment), ("database", db_comment)):
        if comment is None or comment == BUILDING:
            continue
        if not comment.startswith(MARK):
            raise ClassroomError(
                f"A {kind} named {role!r} already exists on the server and was not made by labkit class (student {student.key!r}).",
                "Use another --prefix for this class, or rename that " + kind + ".",
            )
        if comment[len(MARK) :] != student.key:
            raise ClassroomError(
                f"The {kind} {role!r} belongs to the student {comment[len(MARK) :]!r}, whose id gives the same name as {student.key!r}.",
                "Give the students distinct ids, or use another --prefix for one of them.",
            )
    return role_comment is not None, db_comment not in (None, BUILDING)


def provision_one(
    info: ConnectionInfo, conn: psycopg.Connection, student: Student, known: dict[str, Credential], *,
    limits: Limits, prefix: str, report: Report, host: str | None = None,
) -> Outcome:  # fmt: skip
    """Make (or complete) one student's role and database; an existing, complete student is left as it is."""
    started = time.perf_counter()
    role = role_name(student.key, prefix)
    has_role, has_database = _check_ours(conn, student, role)
    outcome = Outcome(credential=known[role] if role in known else _credential(info, student, role, _password(), host))
    if (
        role in known
        and host
        and known[role].database_url != (fresh := _credential(info, student, role, known[role].password, host)).database_url
    ):
        outcome.credential = fresh
    if not has_role:
        _create_role(conn, student, role, outcome.credential.password, limits, report)
        outcome.created_role = True
    elif role not in known:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(_scram(conn, role, outcome.credential.password)))
        )
        outcome.new_password = True
    if not has_database:
        _build_database(info, conn, role, role)
        _open_database(conn, role, student, role)
        outcome.created_database = True
    outcome.seconds = time.perf_counter() - started
    return outcome


def _lock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [LOCK_KEY])


def provision(
    info: ConnectionInfo, students: list[Student], store: Store, *,
    limits: Limits | None = None, prefix: str = DEFAULT_PREFIX, host: str | None = None,
) -> Report:  # fmt: skip
    """Provision every student of ``students`` (idempotent) and record their credentials in ``store``."""
    limits = limits or Limits()
    report = Report()
    store.check()
    with store.locked(), info.connect() as conn:
        check_instructor(conn)
        _lock(conn)
        _ensure_template(info, conn)
        known = store.read()
        before = dict(known)
        try:
            for student in students:
                outcome = provision_one(info, conn, student, known, limits=limits, prefix=prefix, report=report, host=host)
                known[outcome.credential.role] = outcome.credential
                report.outcomes.append(outcome)
        finally:
            if known != before or not store.path.exists():
                store.write(known)  # what was made so far keeps its password even if a later student fails
    return report


@dataclass(frozen=True)
class StudentDatabase:
    """One provisioned student as ``list`` shows them."""

    key: str
    role: str
    database: str | None
    size_bytes: int | None
    connections: int
    last_activity: str | None


def students(conn: psycopg.Connection, prefix: str | None = None) -> dict[str, str]:
    """Provisioned students on the server: role name → student key (only roles labkit made)."""
    rows = conn.execute(
        "SELECT rolname, description FROM pg_roles, shobj_description(oid, 'pg_authid') AS description "
        "WHERE description LIKE %s ORDER BY rolname",
        [MARK + "%"],
    ).fetchall()
    return {r[0]: r[1][len(MARK) :] for r in rows if prefix is None or r[0].startswith(prefix)}


def listing(info: ConnectionInfo, prefix: str | None = None) -> list[StudentDatabase]:
    """Every student with their database's size, open connections and last table access."""
    result = []
    with info.connect() as conn:
        found = students(conn, prefix)
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT d.datname, pg_database_size(d.oid), "
                "(SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname AND a.pid <> pg_backend_pid()), "
                "(SELECT max(a.state_change) FROM pg_stat_activity a WHERE a.datname = d.datname AND a.pid <> pg_backend_pid()) "
                "FROM pg_database d WHERE d.datname = ANY(%s)",
                [list(found)],
            ).fetchall()
        }
    for role, key in found.items():
        if role not in rows:
            result.append(StudentDatabase(key, role, None, None, 0, None))
            continue
        size, connections, active = rows[role]
        last = active
        try:
            with info.connect(role) as db:
                scanned = _one(db, "SELECT max(greatest(last_seq_scan, last_idx_scan)) FROM pg_stat_user_tables")
        except psycopg.Error:
            scanned = None
        if scanned is not None and (last is None or scanned > last):
            last = scanned
        result.append(StudentDatabase(key, role, role, int(size), int(connections), last.isoformat(timespec="seconds") if last else None))
    return result


def find(conn: psycopg.Connection, who: str, prefix: str) -> tuple[str, str]:
    """The (role, key) of the student named by id, role name or login/email, from the server's marks."""
    found = students(conn, prefix)
    if who in found:
        return who, found[who]
    for role, key in found.items():
        if key == who:
            return role, key
    try:
        role = role_name(who, prefix)
    except LabkitError:
        role = ""
    if role in found:
        return role, found[role]
    raise ClassroomError(f"No student {who!r} is provisioned on this server.", "See 'labkit class list' for the ids.")


def reset(info: ConnectionInfo, who: str, *, prefix: str = DEFAULT_PREFIX) -> float:
    """Put one student's database back to the template; the old one is dropped only once the new one is ready."""
    started = time.perf_counter()
    with info.connect() as conn:
        check_instructor(conn)
        _lock(conn)
        role, key = find(conn, who, prefix)
        _ensure_template(info, conn)
        fresh = "labkit_reset_" + hashlib.sha256(role.encode()).hexdigest()[:16]
        _build_database(info, conn, fresh, role)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(fresh), sql.Identifier(role)))
        _open_database(conn, role, Student(key=key), role)
    return time.perf_counter() - started


def drop(info: ConnectionInfo, roles: list[str], store: Store | None = None) -> list[str]:
    """Drop the students' databases and roles (only those labkit made). Returns the roles dropped."""
    dropped = []
    with info.connect() as conn:
        check_instructor(conn)
        _lock(conn)
        marked = students(conn)
        for role in roles:
            if role not in marked:
                raise ClassroomError(f"{role!r} is not a student role made by labkit class.", "See 'labkit class list'.")
            comment = _database_comment(conn, role)
            if comment is not None and (comment.startswith(MARK) or comment == BUILDING):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(role)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
            try:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            except psycopg.errors.DependentObjectsStillReferenced as exc:
                raise ClassroomError(
                    f"The role {role!r} still owns or may use objects elsewhere: {exc.diag.message_detail or exc}",
                    f"In each database named there: DROP OWNED BY {role}; then run drop again.",
                ) from None
            dropped.append(role)
    if store is not None and dropped:
        with store.locked():
            known = store.read()
            for role in dropped:
                known.pop(role, None)
            store.write(known)
    return dropped
