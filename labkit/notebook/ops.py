"""Conveniences for the operations notebooks (13–16): extra servers and programs behind one call each."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.config import Settings
from labkit.servers import pooler as pooler_mod
from labkit.servers.clients import client_env, client_program
from labkit.servers.pooler import Pooler


class LessonSkipped(Exception):
    """This lesson cannot run here: IPython shows the one sentence, and Run All stops at this cell."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence

    def _render_traceback_(self) -> list[str]:
        return [self.sentence]


# -- 15 · connection pooling ---------------------------------------------------------------
POOL_COLUMNS = ["database", "pool_mode", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used"]


def require_pgbouncer() -> str:
    """The PgBouncer version the pooling lesson uses; where none is installed, one sentence and a stop."""
    program = pooler_mod.find_pgbouncer()
    if program is None:
        raise LessonSkipped(
            "This lesson needs PgBouncer, which is not installed here: sudo apt-get install pgbouncer (Debian/Ubuntu), "
            "brew install pgbouncer (macOS) or conda install -c conda-forge pgbouncer, then restart the kernel."
        )
    return f"PgBouncer {pooler_mod.pgbouncer_version(program) or '(unknown version)'}"


def start_pooler(shop: Any, *, pool_mode: str = "session", pool_size: int = 2, name: str = "lesson15") -> Pooler:
    """A PgBouncer in front of the lab server (``shop.info``), stopped by ``close()``/``with`` or at exit."""
    require_pgbouncer()
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
