"""The shop stored in another physical order, so that a check cannot be passed by luck.

``ROW_NUMBER() OVER ()`` without an ORDER BY, or a LIMIT without one, can give the expected
result only because the rows happen to be stored in time order. A copy of the shop template with
every table's rows rewritten in a fixed pseudo-random order (same data, another order) exposes
such answers: an exercise whose reference result holds on the copy too (``shuffled: true`` in
its spec, found by ``labkit exercises refresh``) checks a passing answer there as well.

The copy is made once per template (about 10 s at scale 1) and kept; it is rebuilt when the
template changes. Every role may read it, no role may change it.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from labkit.config import SQL_DIR
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

SHUFFLED_DB = "shop_shuffled"
# On the copy, rows are read in their stored order: no index returns them sorted by luck (a window's
# sort on PARTITION BY alone, fed by an index on (user_id, created_at), would order each partition too).
SESSION = "SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off"
LOADING_DB = "shop_shuffled_loading"
SHUFFLE_SQL = SQL_DIR / "grading" / "shuffle.sql"
IDENTITY = "SELECT string_agg(key || '=' || value, ';' ORDER BY key) FROM labkit_meta"
LOCK_KEY = 0x6C61626B  # one builder at a time (another notebook, a grading run)


def _identity(info: ConnectionInfo, dbname: str) -> str | None:
    try:
        with info.connect(dbname, connect_timeout=10) as conn:
            row = conn.execute(IDENTITY).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def prepare_session(conn: psycopg.Connection) -> None:
    """Settings for a check on the copy: plans that read rows in their stored order."""
    conn.execute(SESSION)  # type: ignore[arg-type]


def current(info: ConnectionInfo) -> bool:
    """Whether the shuffled copy exists and was made from the current template."""
    wanted = _identity(info, database.TEMPLATE_DB)
    return wanted is not None and _identity(info, SHUFFLED_DB) == wanted


def ensure(info: ConnectionInfo) -> bool:
    """Make (once) the shuffled copy of the template; False where this role may not (then nothing is checked there)."""
    if current(info):
        return True
    try:
        with info.connect() as admin:
            admin.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            try:
                if current(info):
                    return True
                _build(info, admin)
            finally:
                admin.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    except psycopg.errors.InsufficientPrivilege:
        return False
    return current(info)


def _build(info: ConnectionInfo, admin: psycopg.Connection) -> None:
    loading, target = sql.Identifier(LOADING_DB), sql.Identifier(SHUFFLED_DB)
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(loading))
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(loading, sql.Identifier(database.TEMPLATE_DB)))
    try:
        with info.connect(LOADING_DB) as conn:
            conn.execute(SHUFFLE_SQL.read_text())  # type: ignore[arg-type]
            conn.execute("VACUUM (FULL, ANALYZE)")  # compact again: table sizes and statistics as in the template
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
            conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC")
        admin.execute(sql.SQL("REVOKE TEMPORARY, CREATE ON DATABASE {} FROM PUBLIC").format(loading))
        admin.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(loading))
        admin.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(loading))
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(target))
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(loading, target))
    except BaseException:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(loading))
        raise
