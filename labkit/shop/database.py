"""The shop database's life cycle: load once, keep a pristine template, reset in about a second.

A load builds into a separate database (``shop_loading``) and only then replaces the template
and ``shop``: an interrupted load leaves the previous shop intact.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo
from labkit.shop import bulkload, schema
from labkit.shop.generator import generate, words

SHOP_DB = "shop"
TEMPLATE_DB = "shop_template"
LOADING_DB = "shop_loading"


class ShopError(LabkitError):
    """The shop database cannot be created or loaded here."""

    exit_code = 7


def _exists(conn: psycopg.Connection, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is not None


def _meta(info: ConnectionInfo, dbname: str) -> dict[str, str]:
    try:
        with info.connect(dbname) as conn:
            return dict(conn.execute("SELECT key, value FROM labkit_meta").fetchall())  # type: ignore[arg-type]
    except psycopg.Error:
        return {}


def _check_privileges(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise ShopError(
            f"The role {conn.info.user!r} may not create databases, so labkit cannot build the shop here.",
            "Connect as a role with CREATEDB (and the right to create the contrib extensions), "
            "or ask the server's administrator: ALTER ROLE <you> CREATEDB.",
        )


def _drop(conn: psycopg.Connection, dbname: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def load(
    info: ConnectionInfo,
    *,
    scale: float = 1.0,
    seed: int | None = None,
    progress: bool = True,
    force: bool = False,
    target: str = TEMPLATE_DB,
    boundaries: bool = False,
) -> bool:
    """Generate and load the shop into ``target`` (then recreate ``shop`` from it).

    Returns False (and does nothing) when the same seed, scale and schema are already loaded,
    unless ``force``. ``boundaries`` adds rows on month boundaries (see ``generate.Shop``).
    """
    seed = int(seed if seed is not None else words.params()["seed"])
    wanted = {"seed": str(seed), "scale": f"{scale:g}", "schema_version": schema.schema_version()}
    if boundaries:
        wanted["boundaries"] = "true"
    with info.connect() as admin:
        if not force and _exists(admin, target):
            meta = _meta(info, target)
            if all(meta.get(k) == v for k, v in wanted.items()) and meta.get("schema_stage") == "finish":
                if target == TEMPLATE_DB and not _exists(admin, SHOP_DB):
                    reset(info)
                return False
        _check_privileges(admin)
        _drop(admin, LOADING_DB)
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Identifier(LOADING_DB)
            )
        )
    started = time.perf_counter()
    try:
        rows = _build(info, LOADING_DB, seed=seed, scale=scale, progress=progress, boundaries=boundaries)
    except BaseException:
        with info.connect() as admin:
            _drop(admin, LOADING_DB)
        raise
    with info.connect() as admin:
        _drop(admin, target)
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(LOADING_DB), sql.Identifier(target)))
    if target == TEMPLATE_DB:
        reset(info)
    if progress:
        elapsed = time.perf_counter() - started
        print(f"labkit: loaded {rows:,} rows at scale {scale:g} in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return True


def _build(info: ConnectionInfo, dbname: str, *, seed: int, scale: float, progress: bool, boundaries: bool = False) -> int:
    """Schema → COPY every table → keys, indexes, triggers → ANALYZE. Returns rows loaded."""
    from tqdm import tqdm

    shop = generate.Shop(seed, scale, boundaries=boundaries)
    p = words.params()
    with info.connect(dbname) as conn:
        schema.apply_schema(conn)
    bar = tqdm(desc="loading the shop", unit=" rows", disable=not progress, file=sys.stderr, leave=False)
    # products comes twice from the generator: first empty, then once stock is known
    tables = (t for t in shop.tables() if t.lines or t.table != "products")
    loaded = bulkload.load_tables(info, dbname, tables, on_rows=bar.update)
    with info.connect(dbname) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        bar.set_description("indexes and keys")
        schema.finish_schema(conn)
        conn.execute(
            "INSERT INTO labkit_meta (key, value) VALUES ('as_of', %s), ('seed', %s), ('scale', %s), ('data_checksum', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [p["as_of"], str(seed), f"{scale:g}", loaded.checksum],
        )
        if boundaries:
            conn.execute("INSERT INTO labkit_meta VALUES ('boundaries', 'true') ON CONFLICT (key) DO UPDATE SET value = 'true'")
        for name in ("user_events", "events", "logs", "audit_log"):
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {}), false)").format(
                    sql.Literal(name), sql.Identifier(name)
                )
            )
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(sql.Identifier(dbname)))
    bar.set_description("vacuum analyze")
    bulkload.vacuum_analyze(info, dbname)
    bar.close()
    return loaded.total


def reset(info: ConnectionInfo) -> float:
    """Recreate ``shop`` from the pristine template (FILE_COPY). Returns seconds taken."""
    started = time.perf_counter()
    with info.connect() as admin:
        if not _exists(admin, TEMPLATE_DB):
            raise ShopError("There is no pristine copy of the shop to reset from.", "Run 'labkit up' (or 'labkit load') first.")
        _drop(admin, SHOP_DB)
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(SHOP_DB), sql.Identifier(TEMPLATE_DB))
        )
        admin.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(sql.Identifier(SHOP_DB)))
    return time.perf_counter() - started


def ensure_shop(info: ConnectionInfo, *, scale: float | None = None, progress: bool = True) -> None:
    """Make sure ``shop`` exists and is current: a quick check when it is; load or reset when not."""
    version = schema.schema_version()
    shop_meta = _meta(info, SHOP_DB)
    if shop_meta.get("schema_version") == version and shop_meta.get("schema_stage") == "finish":
        return
    template_meta = _meta(info, TEMPLATE_DB)
    if template_meta.get("schema_version") == version and template_meta.get("schema_stage") == "finish":
        reset(info)
        return
    previous = template_meta.get("scale")
    chosen = scale if scale is not None else float(previous) if previous else 1.0
    if template_meta and progress:
        print("labkit: the shop's schema changed since it was loaded; reloading it.", file=sys.stderr)
    load(info, scale=chosen, progress=progress, force=True)


def checksum(info: ConnectionInfo, dbname: str = SHOP_DB) -> str:
    """A checksum of every table's contents, whatever their physical order (for tests)."""
    tables = sorted(bulkload.shop_tables(info, dbname))
    with info.connect(dbname) as conn:
        parts = []
        for name in tables:
            row = conn.execute(
                sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t").format(sql.Identifier(name))
            ).fetchone()
            parts.append(f"{name}:{row[0] if row else ''}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def status(info: ConnectionInfo) -> dict[str, Any]:
    """What is loaded: seed, scale, schema version, row counts."""
    meta = _meta(info, SHOP_DB)
    if not meta:
        return {"loaded": False}
    with info.connect(SHOP_DB) as conn:
        counts = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname NOT LIKE '%\\_20%' ORDER BY relname"
            ).fetchall()
        )
    return {"loaded": True, **meta, "rows": counts}
