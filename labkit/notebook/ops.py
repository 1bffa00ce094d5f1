"""Conveniences for the operations notebooks (13–16): extra clusters, PostgreSQL 16 programs, a pooler, and a
one-sentence skip where the lab's provider cannot run a lesson — behind one call each."""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from labkit.config import SQL_DIR, Settings
from labkit.errors import LabkitError
from labkit.servers import extra
from labkit.servers import pooler as pooler_mod
from labkit.servers.base import ConnectionInfo
from labkit.servers.clients import client_env, client_program
from labkit.servers.pooler import Pooler
from labkit.servers.unprivileged import server_user

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


RESUME_CALL = "ops.resume_cells()"


def _skip_every_later_cell(shell: Any = None) -> None:
    """Make each cell run after this one do nothing (the lesson cannot run here), up to a cell that
    calls ``ops.resume_cells()`` (e.g. where the exercises begin: they need only the shop). Outside IPython, nothing."""
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            return
        if shell is None:
            return

    def skip(lines: list[str]) -> list[str]:
        return lines if any(RESUME_CALL in line for line in lines) else SKIPPED_CELL

    if not any(getattr(t, "__name__", "") == "skip" for t in shell.input_transformers_post):
        shell.input_transformers_post.append(skip)


def skip_rest(sentence: str, shell: Any = None) -> None:
    """The one way a lesson ends where it cannot run: print ``sentence`` and make each later cell do nothing,
    whether the learner runs all cells or one at a time, up to a cell that calls ``ops.resume_cells()``."""
    print(sentence)
    _skip_every_later_cell(shell)


def require_extra_clusters(lesson: str, settings: Settings | None = None, shell: Any = None) -> bool:
    """True if ``lesson`` can start extra clusters here; else print one sentence saying why not and skip the
    notebook's remaining cells (in IPython), so the lesson ends quietly instead of failing."""
    reason = extra_clusters_unavailable(settings)
    if reason is None:
        return True
    skip_rest(f"{lesson} is skipped here: it starts extra PostgreSQL clusters, and {reason[0].lower()}{reason[1:]}", shell)
    return False


def resume_cells(shell: Any = None) -> None:
    """Run the cells after this one again, if ``require_extra_clusters`` (or another check) skipped the lesson's cells."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None:
        shell.input_transformers_post[:] = [t for t in shell.input_transformers_post if getattr(t, "__name__", "") != "skip"]


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
    skip_rest(f"{lesson} is skipped here: {reason}", shell)
    return False


def require_pgvector(conn: Any, settings: Settings | None = None, shell: Any = None) -> bool:
    """True if ``CREATE EXTENSION vector`` works on the lab server: the server has pgvector, or labkit adds it to
    its portable build (once); else one sentence and the cells up to the next ``ops.resume_cells()`` are skipped."""
    from labkit.servers import pgvector

    if conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone()[0]:
        return True
    settings = settings or Settings.load()
    try:
        install = extra.lab_install(settings)
    except LabkitError:
        skip_rest("The pgvector part is skipped here: the lab server does not have pgvector, and labkit adds it only to the "
                  "PostgreSQL it runs itself (labkit up --server portable); on this server, install pgvector "
                  "(Debian/Ubuntu: postgresql-16-pgvector; Docker: the pgvector/pgvector:pg16 image).", shell)  # fmt: skip
        return False
    try:
        pgvector.ensure(install, settings)
        if not pgvector.library_loads(install):
            raise pgvector.PgvectorUnavailable(f"pgvector's library in {install.bindir.parent} does not load on this machine.")
    except LabkitError as exc:
        skip_rest(f"The pgvector part is skipped here: {exc.message[0].lower()}{exc.message[1:]} {exc.hint or ''}".strip(), shell)
        return False
    return True


# -- 15 · connection pooling ---------------------------------------------------------------
POOL_COLUMNS = ["database", "pool_mode", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used"]


def require_pgbouncer(shell: Any = None) -> bool:
    """Print the PgBouncer version the pooling lesson uses; where none is installed, one sentence and the rest is skipped."""
    program = pooler_mod.find_pgbouncer()
    if program is None:
        skip_rest(
            "This lesson needs PgBouncer, which is not installed here: sudo apt-get install pgbouncer (Debian/Ubuntu), "
            "brew install pgbouncer (macOS) or conda install -c conda-forge pgbouncer, then restart the kernel.",
            shell,
        )
        return False
    print(f"PgBouncer {pooler_mod.pgbouncer_version(program) or '(unknown version)'}")
    return True


def start_pooler(shop: Any, *, pool_mode: str = "session", pool_size: int = 2, name: str = "lesson15") -> Pooler:
    """A PgBouncer in front of the lab server (``shop.info``), stopped by ``close()``/``with`` or at exit."""
    return pooler_mod.start_pooler(Settings.load(), shop.info, name=name, pool_mode=pool_mode, pool_size=pool_size)


def clean_up_poolers() -> list[str]:
    """Stop the poolers this kernel still runs (an earlier run of the notebook) and those an interrupted
    run left behind (their kernel is gone); their names."""
    return sorted(pooler_mod.close_own_poolers() + pooler_mod.cleanup_leftovers(Settings.load()))


def pools(p: Pooler, dbname: str = "shop") -> Any:
    """SHOW POOLS for ``dbname`` as a DataFrame, the columns that do not change from run to run."""
    import pandas as pd

    rows = [row for row in p.show("pools") if row["database"] == dbname]
    return pd.DataFrame(rows, columns=POOL_COLUMNS)


@dataclass
class ClientRun:
    """What many clients saw through one pooler."""

    clients: int
    transactions: int
    server_backends: int
    max_sv_active: int
    max_cl_waiting: int
    seconds: float


def run_clients(p: Pooler, *, clients: int, transactions: int, work_s: float, think_s: float, dbname: str = "shop") -> ClientRun:
    """``clients`` threads, each on its own connection: ``transactions`` × (a transaction of ``work_s``, then
    ``think_s`` idle in the application); SHOW POOLS is sampled meanwhile."""
    backends: set[int] = set()
    lock = threading.Lock()
    done = threading.Event()
    samples: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with p.connect(dbname, prepare_threshold=None) as conn:
                for _ in range(transactions):
                    with conn.transaction():
                        pid = conn.execute("SELECT pg_backend_pid() FROM pg_sleep(%s)", [work_s]).fetchone()[0]  # type: ignore[index]
                    with lock:
                        backends.add(pid)
                    time.sleep(think_s)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    def sampler() -> None:
        with p.admin() as admin:
            while not done.is_set():
                cur = admin.execute("SHOW POOLS")
                columns = [d.name for d in cur.description or []]
                for values in (dict(zip(columns, row, strict=True)) for row in cur.fetchall()):
                    if values["database"] == dbname:
                        samples.append((int(values["sv_active"]), int(values["cl_waiting"])))
                time.sleep(0.01)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    done.set()
    watcher.join()
    if errors:
        raise errors[0]
    return ClientRun(
        clients=clients,
        transactions=clients * transactions,
        server_backends=len(backends),
        max_sv_active=max((s[0] for s in samples), default=0),
        max_cl_waiting=max((s[1] for s in samples), default=0),
        seconds=seconds,
    )


def pgbench(p: Pooler, *, clients: int, transactions: int, sql: str, dbname: str = "shop") -> dict[str, str]:
    """Run PostgreSQL 16's pgbench through the pooler with a one-statement script; the lines that do not
    depend on the machine's speed (clients, transactions processed, failures)."""
    settings = Settings.load()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "lesson.sql"
        script.write_text(sql + "\n")
        env = client_env("pgbench", settings, p.info)
        out = subprocess.run(
            [
                str(client_program("pgbench", settings)),
                "-n",
                "-c",
                str(clients),
                "-j",
                "2",
                "-t",
                str(transactions),
                "-f",
                str(script),
                dbname,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip() or out.stdout.strip()}")
    keep = ("query mode", "number of clients", "number of transactions actually processed", "number of failed transactions")
    found = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            found[key.strip()] = re.sub(r"\s*\(.*\)$", "", value.strip())
    return found


class ProgramFailed(LabkitError):
    """A client program exited with an error."""


def support(settings: Settings | None = None) -> str | None:
    """None when extra clusters and client programs can run here, else one sentence saying why not."""
    settings = settings or Settings.load()
    try:
        extra.lab_install(settings)
        client_program("pg_dump", settings)
    except LabkitError as exc:
        return f"{exc.message.splitlines()[0]} {exc.hint or ''}".strip()
    return None


def require_backup_tools(settings: Settings | None = None, shell: Any = None) -> bool:
    """Remove leftovers of an interrupted run and return True; where the lesson cannot run, one sentence and the rest is skipped."""
    settings = settings or Settings.load()
    reason = support(settings)
    if reason is not None:
        skip_rest(f"This lesson needs PostgreSQL programs on this machine and skips here: {reason}", shell)
        return False
    extra.cleanup_leftovers(settings)
    return True


@dataclass
class Result:
    """What a client program printed, and how it ended."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def lines(self, pattern: str = "") -> list[str]:
        """Lines of stdout and stderr matching the regular expression ``pattern`` (all lines if empty)."""
        found = re.compile(pattern)
        return [line for line in (self.stdout + self.stderr).splitlines() if found.search(line)]


def run(
    name: str,
    *args: str | Path,
    server: ConnectionInfo | Any | None = None,
    dbname: str | None = None,
    as_server_user: bool = False,
    check: bool = True,
    settings: Settings | None = None,
    timeout: float = 600,
) -> Result:
    """Run the PostgreSQL 16 program ``name`` with ``args``, connected to ``server`` (a ConnectionInfo, an
    extra cluster or the lab) and ``dbname``. ``as_server_user`` runs it as the user the servers run as (to
    read a backup's or archive's files). ``check`` raises ProgramFailed with its messages on a non-zero exit."""
    settings = settings or Settings.load()
    info = getattr(server, "info", server)
    argv = [str(a) for a in args]
    if dbname and as_server_user:
        raise LabkitError("dbname= is for programs run as yourself.", "Pass -d on the command line instead.")
    if as_server_user:
        done = extra._run_tool(name, argv, settings, server_user(settings.run_as), info, timeout=timeout)
    else:
        env = client_env(name, settings, info)
        if dbname:
            env["PGDATABASE"] = dbname
        done = subprocess.run([str(client_program(name, settings)), *argv], capture_output=True, text=True, env=env, timeout=timeout)
    result = Result([name, *argv], done.returncode, done.stdout, done.stderr)
    if check and not result.ok:
        raise ProgramFailed(f"{name} exited with {done.returncode}:\n{done.stderr.strip()[-1500:]}", "See its messages above.")
    return result


_TOC_LINE = re.compile(r"^(?P<dump_id>\d+);\s+(?P<catalog_oid>\d+)\s+(?P<oid>\d+)\s+(?P<rest>.*)$")
_TOC_TYPES = sorted(
    ["TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "DEFAULT ACL", "INDEX ATTACH", "TABLE ATTACH",
     "MATERIALIZED VIEW DATA", "SCHEMA", "EXTENSION", "COMMENT", "TYPE", "DOMAIN", "FUNCTION", "PROCEDURE", "AGGREGATE",
     "TABLE", "VIEW", "SEQUENCE", "DEFAULT", "CONSTRAINT", "INDEX", "TRIGGER", "POLICY", "ACL", "ROW SECURITY",
     "MATERIALIZED VIEW", "TEXT SEARCH CONFIGURATION", "COLLATION", "CAST", "DATABASE", "DATABASE PROPERTIES"],
    key=len, reverse=True,
)  # fmt: skip


def toc(listing: str) -> Any:
    """``pg_restore --list`` output as a DataFrame: dump_id, type, schema, name, owner, line (comment lines skipped)."""
    import pandas as pd

    rows = []
    for line in listing.splitlines():
        match = _TOC_LINE.match(line.lstrip())  # keep the trailing space: an empty owner
        if not match:
            continue
        rest = match["rest"]
        kind = next((t for t in _TOC_TYPES if rest.startswith(t + " ")), rest.split(" ", 1)[0])
        fields = rest[len(kind) + 1 :].split(" ")  # namespace ("-": none), tag (may hold spaces), owner (may be empty)
        schema, name, owner = fields[0], " ".join(fields[1:-1]), fields[-1]
        rows.append({"dump_id": int(match["dump_id"]), "type": kind, "schema": None if schema == "-" else schema,
                     "name": name, "owner": owner or None, "line": line})  # fmt: skip
    return pd.DataFrame(rows, columns=["dump_id", "type", "schema", "name", "owner", "line"])


_WALDUMP_LINE = re.compile(
    r"rmgr:\s*(?P<rmgr>\S+)\s+len \(rec/tot\):\s*(?P<rec_len>\d+)/\s*(?P<tot_len>\d+), tx:\s*(?P<xid>\d+), "
    r"lsn: (?P<lsn>[0-9A-F]+/[0-9A-F]+), prev (?P<prev>[0-9A-F]+/[0-9A-F]+), desc: (?P<desc>.*)$"
)


def waldump_records(output: str) -> Any:
    """``pg_waldump`` output as a DataFrame: lsn, xid, rmgr, record (the first word of desc), relfilenode, desc."""
    import pandas as pd

    rows = []
    for line in output.splitlines():
        match = _WALDUMP_LINE.search(line)
        if not match:
            continue
        desc = match["desc"].strip()
        rel = re.search(r"rel \d+/\d+/(\d+)", desc)
        rows.append({"lsn": match["lsn"], "xid": int(match["xid"]), "rmgr": match["rmgr"], "record": desc.split(" ", 1)[0],
                     "relfilenode": int(rel.group(1)) if rel else None, "desc": desc})  # fmt: skip
    return pd.DataFrame(rows, columns=["lsn", "xid", "rmgr", "record", "relfilenode", "desc"])


_workdirs: list[Path] = []


def workdir(name: str = "labkit-ops-") -> Path:
    """A private temporary folder for dump files, removed when Python exits (or by ``remove_workdirs``)."""
    path = Path(tempfile.mkdtemp(prefix=name))
    _workdirs.append(path)
    return path


def remove_workdirs() -> int:
    """Delete the folders ``workdir`` made; how many there were."""
    count = 0
    while _workdirs:
        shutil.rmtree(_workdirs.pop(), ignore_errors=True)
        count += 1
    return count


atexit.register(remove_workdirs)


def flip_byte(path: Path, offset: int = 0) -> None:
    """Invert one byte of ``path`` in place (calling it again restores it): a corrupted file to show pg_verifybackup."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
