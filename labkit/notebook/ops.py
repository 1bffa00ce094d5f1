"""Conveniences for the operations lessons (backup and recovery, replication, pooling, extensions).

The lessons run PostgreSQL 16 client programs against the lab server or an extra cluster and start
extra clusters (``labkit.servers.extra``); this module checks once that the provider allows it, runs
the programs with the right environment, and turns their listings into DataFrames.
"""

from __future__ import annotations

import atexit
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers import extra
from labkit.servers.base import ConnectionInfo
from labkit.servers.clients import client_env, client_program
from labkit.servers.unprivileged import server_user


class ProgramFailed(LabkitError):
    """A client program exited with an error."""


class LessonSkipped(Exception):
    """Stops a notebook quietly where its lesson cannot run (no traceback in Jupyter)."""

    def _render_traceback_(self) -> list[str]:
        return []


def support(settings: Settings | None = None) -> str | None:
    """None when extra clusters and client programs can run here, else one sentence saying why not."""
    settings = settings or Settings.load()
    try:
        extra.lab_install(settings)
        client_program("pg_dump", settings)
    except LabkitError as exc:
        return f"{exc.message.splitlines()[0]} {exc.hint or ''}".strip()
    return None


def require_extra_clusters(settings: Settings | None = None) -> None:
    """Say in one sentence that this lesson cannot run here, and stop the notebook quietly; else remove leftovers."""
    settings = settings or Settings.load()
    reason = support(settings)
    if reason is not None:
        print(f"This lesson needs PostgreSQL programs on this machine and skips here: {reason}")
        raise LessonSkipped(reason)
    extra.cleanup_leftovers(settings)


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
