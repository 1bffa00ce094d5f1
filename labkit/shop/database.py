"""The shop database's life cycle: load once, keep a pristine template, reset in about a second.

A load builds into a separate database (``shop_loading``) and only then replaces the template
and ``shop``: an interrupted load leaves the previous shop intact, and its leftover copy is
removed by the next load or ``labkit up``. Nothing of the learner's is dropped on the way: when
``shop`` must be rebuilt (its schema changed, or a reload), the old one is renamed
``shop_before_<time>`` and kept until the learner drops it. Only ``reset`` replaces ``shop``: that
is what it is for.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from labkit.config import SQL_DIR
from labkit.errors import LabkitError
from labkit.servers.base import ConnectionInfo
from labkit.servers.identity import check_own_server
from labkit.shop import bulkload, capacity, schema
from labkit.shop.generator import generate, words

SHOP_DB = "shop"
TEMPLATE_DB = "shop_template"
LOADING_DB = "shop_loading"
KEPT_PREFIX = "shop_before_"
SEARCH_PATH = "public"  # pg_catalog comes first implicitly; a learner's search_path must not matter
MISSING_FILES_SQL = SQL_DIR / "queries" / "missing_files.sql"
LEAF_TABLES_SQL = SQL_DIR / "queries" / "leaf_tables.sql"

F = TypeVar("F", bound=Callable[..., Any])


class ShopError(LabkitError):
    """The shop database cannot be created or loaded here."""

    exit_code = 7


def _first_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc) or type(exc).__name__
    return message.strip().splitlines()[0]


def _clear_errors(func: F) -> F:
    """PostgreSQL's errors during a shop operation become one ShopError with a next step."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except psycopg.errors.DiskFull as exc:
            raise ShopError(
                f"The lab server's disk is full: {_first_line(exc)}.",
                "Free some space (kept copies of the shop: 'labkit drop-kept' lists them), then try again.",
            ) from exc
        except psycopg.errors.ObjectInUse as exc:
            raise ShopError(
                f"Another session is using a database labkit must replace: {_first_line(exc)}.",
                "Close it (a notebook or psql connected to shop_template?) and try again.",
            ) from exc
        except psycopg.OperationalError as exc:
            raise ShopError(
                f"The lab server does not answer: {_first_line(exc)}.",
                "Run 'labkit status' to see whether it is running, and 'labkit up' to start it.",
            ) from exc
        except psycopg.Error as exc:
            raise ShopError(f"PostgreSQL refused: {_first_line(exc)}.", "Run 'labkit check' to see whether the shop is damaged.") from exc

    return wrapper  # type: ignore[return-value]


def _connect(info: ConnectionInfo, dbname: str | None = None) -> psycopg.Connection:
    """A connection for labkit's own work on the shop, only to this project's own server: a server of
    another clone that took the port after a restart is refused before anything is read or replaced."""
    conn = info.connect(dbname, options=f"-c search_path={SEARCH_PATH}")
    try:
        check_own_server(info, conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _exists(conn: psycopg.Connection, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", [dbname]).fetchone() is not None


def _read_meta(info: ConnectionInfo, dbname: str) -> dict[str, str] | None:
    """``dbname``'s ``public.labkit_meta``: None if the database does not exist, {} if it has no
    such table. Any other failure (a damaged file, a server that refuses) is a ShopError: it
    says nothing about the shop being stale, so nothing is rebuilt on it."""
    with _connect(info) as admin:
        if not _exists(admin, dbname):
            return None
    try:
        with _connect(info, dbname) as conn:
            conn.execute("SET lock_timeout = '5s'")  # a session holding a lock on it must not hang labkit
            try:
                rows = conn.execute("SELECT key, value FROM public.labkit_meta").fetchall()
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                return {}
            return {str(k): str(v) for k, v in rows}
    except psycopg.Error as exc:
        raise ShopError(
            f"labkit cannot read the {dbname!r} database's labkit_meta: {_first_line(exc)}.",
            "Run 'labkit check' to see what is damaged; 'labkit reset' restores the shop from its pristine copy.",
        ) from exc


def _template_meta(info: ConnectionInfo, dbname: str) -> dict[str, str]:
    """The meta of a copy labkit owns (the template): unreadable counts as stale, it is rebuilt."""
    try:
        return _read_meta(info, dbname) or {}
    except ShopError:
        return {}


def _stale(meta: dict[str, str], version: str) -> str | None:
    """Why a database with this meta is not the current shop (None: it is)."""
    if not meta:
        return "has no labkit_meta table"
    if "schema_version" not in meta:
        return "has no schema_version in its labkit_meta"
    if meta["schema_version"] != version:
        return f"was built with another version of the schema ({meta['schema_version']}; now {version})"
    if meta.get("schema_stage") != "finish":
        return "was never finished loading"
    return None


def _check_privileges(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise ShopError(
            f"The role {conn.info.user!r} may not create databases, so labkit cannot build the shop here.",
            "Connect as a role with CREATEDB (and the right to create the contrib extensions), "
            "or ask the server's administrator: ALTER ROLE <you> CREATEDB.",
        )


def _drop(conn: psycopg.Connection, dbname: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _drop_leftover(info: ConnectionInfo) -> bool:
    """Drop ``shop_loading`` if a load was interrupted; True if there was one. Never raises."""
    try:
        with _connect(info) as admin:
            if _exists(admin, LOADING_DB):
                _drop(admin, LOADING_DB)
                return True
    except psycopg.Error:
        pass
    return False


def _keep(admin: psycopg.Connection, dbname: str = SHOP_DB) -> str:
    """Rename ``dbname`` to ``shop_before_<UTC time>`` (disconnecting its sessions); returns the new name."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
    kept, n = f"{KEPT_PREFIX}{stamp}", 1
    while _exists(admin, kept):
        n += 1
        kept = f"{KEPT_PREFIX}{stamp}_{n}"
    for _ in range(40):
        admin.execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()",
            [dbname],
        )
        try:
            admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(dbname), sql.Identifier(kept)))
            return kept
        except psycopg.errors.ObjectInUse:
            time.sleep(0.25)
    raise ShopError(
        f"labkit could not set the {dbname!r} database aside: sessions keep connecting to it.",
        "Close the notebooks and psql sessions using it, then try again.",
    )


def kept_copies(info: ConnectionInfo) -> list[tuple[str, int]]:
    """The shops set aside by a rebuild (``shop_before_…``) and their sizes in bytes, oldest first."""
    with _connect(info) as admin:
        rows = admin.execute(
            "SELECT datname, pg_catalog.pg_database_size(datname) FROM pg_catalog.pg_database "
            "WHERE datname LIKE %s ORDER BY datname",
            [KEPT_PREFIX.replace("_", "\\_") + "%"],
        ).fetchall()
    return [(str(name), int(size)) for name, size in rows]


@_clear_errors
def drop_kept(info: ConnectionInfo, name: str) -> None:
    """Drop one shop set aside by a rebuild (only ``shop_before_…`` databases)."""
    if name not in {n for n, _ in kept_copies(info)}:
        raise ShopError(f"There is no kept copy of the shop named {name!r}.", "Run 'labkit drop-kept' without a name to list them.")
    with _connect(info) as admin:
        _drop(admin, name)


def kept_note(kept: str, why: str) -> str:
    return (
        f"the shop database {why}, so it was rebuilt; the old one is kept as {kept!r} "
        f"(look inside: labkit psql --db {kept}; drop it when done: labkit drop-kept {kept})."
    )


@dataclass(frozen=True)
class Loaded:
    """What ``load`` did: ``loaded`` is False when the same data was already there; ``kept`` names
    the previous ``shop``, set aside instead of dropped."""

    loaded: bool
    kept: str | None = None


def _check_capacity(
    admin: psycopg.Connection, info: ConnectionInfo, scale: float, target: str, *, confirmed: bool, progress: bool
) -> Path | None:
    """Say what a large load takes; refuse one the machine cannot hold unless ``confirmed``.
    Returns the server's data directory when it is on this machine (for the disk guard)."""
    estimate = capacity.Estimate.for_scale(scale)
    row = admin.execute(
        "SELECT coalesce(sum(pg_catalog.pg_database_size(datname)), 0) FROM pg_catalog.pg_database WHERE datname IN (%s, %s)",
        [target, LOADING_DB],
    ).fetchone()
    disk = estimate.disk_needed(with_shop=target == TEMPLATE_DB, freed=int(row[0]) if row else 0)
    problems = []
    data_dir = capacity.data_directory(info)
    if data_dir is not None and disk > (free := capacity.free_disk(data_dir)):
        problems.append(f"{capacity.human(disk)} of free disk, and {data_dir} has {capacity.human(free)}")
    memory = capacity.available_memory()
    if memory is not None and estimate.memory_bytes > memory:
        problems.append(f"{capacity.human(estimate.memory_bytes)} of memory, and {capacity.human(memory)} is available")
    if progress and (scale >= capacity.LARGE_SCALE or problems):
        print(f"labkit: loading the shop at scale {scale:g} takes {estimate.summary(disk)}.", file=sys.stderr, flush=True)
    if problems and not confirmed:
        kept = kept_copies(info)
        space = f" ({len(kept)} kept cop{'y' if len(kept) == 1 else 'ies'} of the shop: labkit drop-kept)" if kept else ""
        raise ShopError(
            f"Loading the shop at scale {scale:g} needs {'; and '.join(problems)}.",
            f"Choose a smaller --scale, free some space{space}, or add --yes to 'labkit load' to try anyway.",
        )
    return data_dir


@_clear_errors
def load(
    info: ConnectionInfo,
    *,
    scale: float = 1.0,
    seed: int | None = None,
    progress: bool = True,
    force: bool = False,
    target: str = TEMPLATE_DB,
    boundaries: bool = False,
    keep_shop: bool = True,
    confirmed: bool = False,
) -> Loaded:
    """Generate and load the shop into ``target`` (then recreate ``shop`` from it).

    Does nothing when the same seed, scale and schema are already loaded, unless ``force``.
    ``boundaries`` adds rows on month boundaries (see ``generate.Shop``). The ``shop`` replaced
    is kept under another name unless ``keep_shop`` is False. A load this machine cannot hold
    (disk, memory) is refused unless ``confirmed``.
    """
    scale = capacity.check_scale(scale)
    seed = int(seed if seed is not None else words.params()["seed"])
    wanted = {"seed": str(seed), "scale": f"{scale:g}", "schema_version": schema.schema_version()}
    if boundaries:
        wanted["boundaries"] = "true"
    with _connect(info) as admin:
        if not force and _exists(admin, target):
            meta = _template_meta(info, target)
            if all(meta.get(k) == v for k, v in wanted.items()) and meta.get("schema_stage") == "finish":
                if target == TEMPLATE_DB and not _exists(admin, SHOP_DB):
                    reset(info)
                return Loaded(False)
        _check_privileges(admin)
        data_dir = _check_capacity(admin, info, scale, target, confirmed=confirmed, progress=progress)
        _drop(admin, LOADING_DB)
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'").format(
                sql.Identifier(LOADING_DB)
            )
        )
    started = time.perf_counter()
    guard = capacity.DiskGuard(info, data_dir, LOADING_DB)
    try:
        with guard:
            rows = _build(info, LOADING_DB, seed=seed, scale=scale, progress=progress, boundaries=boundaries)
    except BaseException as exc:
        dropped = _drop_leftover(info)
        if guard.tripped:
            raise ShopError(
                f"The disk holding the lab server's data ({data_dir}) was nearly full, so the load at scale {scale:g} was "
                f"stopped before the server ran out of space (it keeps {capacity.human(capacity.DISK_RESERVE)} free). "
                "Nothing was replaced" + (" and the unfinished copy was removed." if dropped else "."),
                "Free some space (kept copies of the shop: 'labkit drop-kept'), or load a smaller --scale.",
            ) from exc
        if not dropped and isinstance(exc, psycopg.Error):
            raise ShopError(
                f"The load failed and the lab server stopped answering: {_first_line(exc)}. Nothing was replaced.",
                "Run 'labkit status'; the next 'labkit up' or 'labkit load' removes the unfinished copy (shop_loading). "
                "If the disk is full, free some space first.",
            ) from exc
        raise
    with _connect(info) as admin:
        _drop(admin, target)
        admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(LOADING_DB), sql.Identifier(target)))
        kept = _keep(admin) if target == TEMPLATE_DB and keep_shop and _exists(admin, SHOP_DB) else None
    if target == TEMPLATE_DB:
        reset(info)
    if progress:
        elapsed = time.perf_counter() - started
        print(f"labkit: loaded {rows:,} rows at scale {scale:g} in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return Loaded(True, kept)


def _build(info: ConnectionInfo, dbname: str, *, seed: int, scale: float, progress: bool, boundaries: bool = False) -> int:
    """Schema → COPY every table → keys, indexes, triggers → ANALYZE. Returns rows loaded."""
    from tqdm import tqdm

    shop = generate.Shop(seed, scale, boundaries=boundaries)
    p = words.params()
    with _connect(info, dbname) as conn:
        schema.apply_schema(conn)
    bar = tqdm(desc="loading the shop", unit=" rows", disable=not progress, file=sys.stderr, leave=False)
    # products comes twice from the generator: first empty, then once stock is known
    tables = (t for t in shop.tables() if t.lines or t.table != "products")
    loaded = bulkload.load_tables(info, dbname, tables, on_rows=bar.update)
    with _connect(info, dbname) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        bar.set_description_str("indexes and keys")
        schema.finish_schema(conn)
        conn.execute(
            "INSERT INTO public.labkit_meta (key, value) VALUES ('as_of', %s), ('seed', %s), ('scale', %s), ('data_checksum', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [p["as_of"], str(seed), f"{scale:g}", loaded.checksum],
        )
        if boundaries:
            conn.execute("INSERT INTO public.labkit_meta VALUES ('boundaries', 'true') ON CONFLICT (key) DO UPDATE SET value = 'true'")
        for name in ("user_events", "events", "logs", "audit_log"):
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {}), false)").format(
                    sql.Literal(f"public.{name}"), sql.Identifier("public", name)
                )
            )
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(sql.Identifier(dbname)))
    bar.set_description_str("vacuum analyze")
    bulkload.vacuum_analyze(info, dbname)
    bar.close()
    return loaded.total


@dataclass
class Check:
    """What a cheap verification of one database found."""

    dbname: str
    exists: bool = True
    tables: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems


@_clear_errors
def verify(info: ConnectionInfo, dbname: str) -> Check:
    """A cheap check that every relation of ``dbname`` has its file and every table can be read
    (its first page): catches files removed or lost under the data directory."""
    check = Check(dbname)
    with _connect(info) as admin:
        if not _exists(admin, dbname):
            return Check(dbname, exists=False)
    with _connect(info, dbname) as conn:
        conn.execute("SET lock_timeout = '2s'")
        conn.execute("SET statement_timeout = '60s'")
        reported: set[str] = set()
        try:
            for relation, path in conn.execute(MISSING_FILES_SQL.read_text()).fetchall():  # type: ignore[arg-type]
                check.problems.append(f"{relation}: its file {path} is missing")
                reported.add(str(relation))
        except psycopg.errors.InsufficientPrivilege:
            pass  # not allowed to look at files: the reads below still find missing tables
        tables = [str(r[0]) for r in conn.execute(LEAF_TABLES_SQL.read_text()).fetchall()]  # type: ignore[arg-type]
        check.tables = len(tables)
        for table in tables:
            if table in reported:
                continue
            try:
                conn.execute(sql.SQL("SELECT FROM ONLY {} LIMIT 1").format(sql.SQL(table)))
            except psycopg.errors.LockNotAvailable:
                continue  # another session holds it: busy, not damaged
            except psycopg.errors.InsufficientPrivilege:
                continue
            except psycopg.DatabaseError as exc:
                if conn.closed:
                    raise
                check.problems.append(f"{table}: {_first_line(exc)}")
    return check


def damaged_message(check: Check) -> str:
    first = "; ".join(check.problems[:3])
    more = f" (and {len(check.problems) - 3} more)" if len(check.problems) > 3 else ""
    return f"{first}{more}"


@_clear_errors
def reset(info: ConnectionInfo, *, target: str = SHOP_DB, template: str = TEMPLATE_DB) -> float:
    """Recreate ``target`` from the pristine ``template`` (FILE_COPY) after a cheap check that the
    template is whole. Returns seconds taken. Replacing ``target`` is the point: it is not kept."""
    started = time.perf_counter()
    check = verify(info, template)
    if not check.exists:
        raise ShopError("There is no pristine copy of the shop to reset from.", "Run 'labkit up' (or 'labkit load') first.")
    if not check.ok:
        raise ShopError(
            f"The pristine copy of the shop ({template}) is damaged, so a reset would copy the damage: {damaged_message(check)}.",
            f"Rebuild it with 'labkit load --force' (the current {target} is kept as a renamed copy).",
        )
    with _connect(info) as admin:
        _drop(admin, target)
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(target), sql.Identifier(template)))
        admin.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'UTC'").format(sql.Identifier(target)))
    return time.perf_counter() - started


def _scale_note(meta: dict[str, str], scale: float | None) -> list[str]:
    loaded = meta.get("scale")
    if scale is None or loaded is None or loaded == f"{scale:g}":
        return []
    return [
        f"the shop is loaded at scale {loaded}, not {scale:g}, and is left as it is; "
        f"run 'labkit load --scale {scale:g}' to reload it at scale {scale:g} (the current shop is kept as a renamed copy)."
    ]


@_clear_errors
def ensure_shop(info: ConnectionInfo, *, scale: float | None = None, progress: bool = True, confirmed: bool = False) -> list[str]:
    """Make sure ``shop`` exists and is current: a quick check when it is; reset or load when not.

    Returns notes for the learner on what was done or found (empty when all was well). ``shop``
    is only rebuilt when it is really stale (its ``public.labkit_meta`` is missing or names another
    schema version), and then the old one is kept under another name, never dropped.
    """
    notes: list[str] = []
    if scale is not None:
        scale = capacity.check_scale(scale)
    if _drop_leftover(info):
        notes.append(f"removed {LOADING_DB}, an unfinished copy left by an interrupted load.")
    version = schema.schema_version()
    shop_meta = _read_meta(info, SHOP_DB)
    why = _stale(shop_meta, version) if shop_meta is not None else None
    if shop_meta is not None and why is None:
        notes += _scale_note(shop_meta, scale)
        check = verify(info, SHOP_DB)
        if not check.ok:
            notes.append(
                f"the shop database is damaged: {damaged_message(check)}. "
                "Run 'labkit reset' to restore it from its pristine copy (changes made in it are lost), or 'labkit check'."
            )
        template = verify(info, TEMPLATE_DB)
        if not template.ok:
            state = f"is damaged: {damaged_message(template)}" if template.exists else "is missing"
            notes.append(
                f"the shop's pristine copy ({TEMPLATE_DB}) {state}, so 'labkit reset' cannot work: 'labkit load --force' rebuilds it."
            )
        return notes
    template_meta = _template_meta(info, TEMPLATE_DB)
    if _stale(template_meta, version) is None and verify(info, TEMPLATE_DB).ok:
        kept = None
        if shop_meta is not None:
            with _connect(info) as admin:
                kept = _keep(admin)
        reset(info)
        if kept and why:
            notes.append(kept_note(kept, why))
        return notes + _scale_note(template_meta, scale)
    previous = template_meta.get("scale")
    try:
        chosen = scale if scale is not None else capacity.check_scale(previous) if previous else 1.0
    except LabkitError:
        chosen = 1.0
    if template_meta and progress:
        print("labkit: the shop's schema changed since it was loaded; reloading it.", file=sys.stderr)
    outcome = load(info, scale=chosen, progress=progress, force=True, confirmed=confirmed)
    if outcome.kept:
        notes.append(kept_note(outcome.kept, why or "was replaced by a new load"))
    return notes


def checksum(info: ConnectionInfo, dbname: str = SHOP_DB) -> str:
    """A checksum of every table's contents, whatever their physical order (for tests)."""
    tables = sorted(bulkload.shop_tables(info, dbname))
    with _connect(info, dbname) as conn:
        parts = []
        for name in tables:
            row = conn.execute(
                sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t").format(
                    sql.Identifier("public", name)
                )
            ).fetchone()
            parts.append(f"{name}:{row[0] if row else ''}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def status(info: ConnectionInfo) -> dict[str, Any]:
    """What is loaded: seed, scale, schema version, row counts."""
    try:
        meta = _read_meta(info, SHOP_DB)
    except ShopError:
        meta = None
    if not meta:
        return {"loaded": False}
    with _connect(info, SHOP_DB) as conn:
        counts = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT relname, n_live_tup FROM pg_catalog.pg_stat_user_tables "
                "WHERE schemaname = 'public' AND relname NOT LIKE '%\\_20%' ORDER BY relname"
            ).fetchall()
        )
    return {"loaded": True, **meta, "rows": counts}
