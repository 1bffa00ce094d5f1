"""PgBouncer in front of real PostgreSQL 16: started on a private port and config, session vs transaction
pooling, trust and scram-sha-256 authentication, stopped on close, at exit and after its owner was killed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from labkit.config import Settings
from labkit.servers import extra, pooler, processes
from labkit.servers.base import ConnectionInfo
from labkit.servers.unprivileged import server_user

pytestmark = pytest.mark.skipif(
    pooler.find_pgbouncer() is None, reason="PgBouncer is not installed (scripts/system-packages installs it as root)"
)

HOLDER = """
import sys, time
from labkit.config import Settings
from labkit.servers import lifecycle, pooler
p = pooler.start_pooler(Settings.load(), lifecycle.current_server(Settings.load()), name="held")
print(p.root, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
time.sleep(600)
"""


def pgbouncers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "pgbouncer" and processes.alive(int(entry.name)):
                    found.append(int(entry.name))  # a zombie has ended: whether init has reaped it yet is not ours to wait for
            except OSError:
                continue
    return found


@pytest.fixture(scope="module", autouse=True)
def nothing_left(settings: Settings) -> Iterator[None]:
    """No pooler folder and no PgBouncer of this project after the tests."""
    pooler.cleanup_leftovers(settings)
    before = set(pgbouncers())
    yield
    assert not pooler.poolers_dir(settings).exists()
    assert set(pgbouncers()) <= before


@pytest.fixture
def lab(shop: ConnectionInfo) -> ConnectionInfo:
    if os.environ.get("LABKIT_TEST_URL"):
        pytest.skip("the pooler runs next to the lab server labkit runs itself")
    return shop


def backend(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]


def test_private_files_and_localhost(lab: ConnectionInfo, settings: Settings) -> None:
    with pooler.start_pooler(settings, lab) as p:
        assert p.info.host == "127.0.0.1" and p.port != lab.port
        for name in ("pgbouncer.ini", "userlist.txt"):
            mode = stat.S_IMODE((p.root / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
            assert (p.root / name).stat().st_uid == server_user(settings.run_as).uid
        assert stat.S_IMODE(p.root.stat().st_mode) == 0o700
        pid = int((p.root / "pgbouncer.pid").read_text())
        assert Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0] == str(server_user(settings.run_as).uid)
        with p.connect("shop") as conn:
            assert conn.execute("SELECT count(*) > 0 FROM products").fetchone() == (True,)
        assert "listen_addr = 127.0.0.1" in (p.root / "pgbouncer.ini").read_text()
        root = p.root
    assert not root.exists() and not processes.alive(pid, comm="pgbouncer")


def test_transaction_mode_shares_one_backend_and_leaks_session_set(lab: ConnectionInfo, settings: Settings) -> None:
    with pooler.start_pooler(settings, lab, pool_mode="transaction", pool_size=1) as p:
        with p.connect("shop", prepare_threshold=None) as a, p.connect("shop", prepare_threshold=None) as b:
            assert backend(a) == backend(b)
            a.execute("SET application_name = 'set_by_a'")
            assert b.execute("SHOW application_name").fetchone() == ("set_by_a",)
            pools = [row for row in p.show("pools") if row["database"] == "shop"]
            assert pools and pools[0]["pool_mode"] == "transaction"
            assert len([c for c in p.show("clients") if c["database"] == "shop"]) == 2
            assert len([s for s in p.show("servers") if s["database"] == "shop"]) == 1


def test_session_mode_keeps_a_backend_per_client(lab: ConnectionInfo, settings: Settings) -> None:
    with pooler.start_pooler(settings, lab, pool_mode="session", pool_size=2) as p:
        with p.connect("shop") as a, p.connect("shop") as b:
            assert backend(a) != backend(b)
            a.execute("SET application_name = 'set_by_a'")
            assert b.execute("SHOW application_name").fetchone() != ("set_by_a",)


def test_scram_server_and_clients(lab: ConnectionInfo, settings: Settings) -> None:
    """A server that asks for scram-sha-256: PgBouncer logs in with the owner's password and asks clients for it too."""
    with extra.extra_cluster("pool-scram", settings) as server:
        with server.connect() as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute("CREATE ROLE pool_owner LOGIN SUPERUSER PASSWORD 'pa''ss \"word'")
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text("local all postgres trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        with server.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")
        owner = ConnectionInfo(host=server.info.host, port=server.port, user="pool_owner", password="pa'ss \"word")
        with pytest.raises(psycopg.OperationalError):
            replace(owner, password="wrong").connect().close()  # the server really checks
        with pooler.start_pooler(settings, owner) as p:
            assert "auth_type = scram-sha-256" in (p.root / "pgbouncer.ini").read_text()
            with p.connect("postgres") as conn:
                assert conn.execute("SELECT current_user").fetchone() == ("pool_owner",)
            with pytest.raises(psycopg.OperationalError):
                replace(p.info, password="wrong").connect("postgres").close()


def test_missing_pgbouncer_says_how_to_install(monkeypatch: pytest.MonkeyPatch, lab: ConnectionInfo, settings: Settings) -> None:
    monkeypatch.setenv("LABKIT_PGBOUNCER", "/nonexistent/pgbouncer")
    with pytest.raises(pooler.PoolerError) as info:
        pooler.start_pooler(settings, lab)
    text = str(info.value)
    assert "not installed" in text and "apt-get install pgbouncer" in text and "brew install pgbouncer" in text and "conda-forge" in text


def test_bad_pool_mode_is_one_message(lab: ConnectionInfo, settings: Settings) -> None:
    with pytest.raises(pooler.PoolerError, match="not a pool mode"):
        pooler.start_pooler(settings, lab, pool_mode="transactions")


def test_stopped_at_exit(lab: ConnectionInfo, settings: Settings) -> None:
    out = subprocess.run([sys.executable, "-c", HOLDER, "exit"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not Path(out.stdout.strip()).exists()


def test_leftover_of_a_killed_owner_is_stopped_via_its_pid_file(lab: ConnectionInfo, settings: Settings) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, "hold"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    root = Path(proc.stdout.readline().strip())
    pid = int((root / "pgbouncer.pid").read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert processes.alive(pid, comm="pgbouncer"), "PgBouncer outlives its killed owner until labkit finds it"
    assert pooler.cleanup_leftovers(settings) == ["held"]
    deadline = time.monotonic() + 5
    while processes.alive(pid, comm="pgbouncer") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes.alive(pid, comm="pgbouncer") and not root.exists()


def test_starting_one_of_the_same_name_again_replaces_it(lab: ConnectionInfo, settings: Settings) -> None:
    """A re-run notebook cell: the older PgBouncer stops, and closing the older object leaves the new one alone."""
    first = pooler.start_pooler(settings, lab, name="rerun")
    old_pid = int((first.root / "pgbouncer.pid").read_text())
    second = pooler.start_pooler(settings, lab, name="rerun")
    try:
        assert not first.running and not processes.alive(old_pid, comm="pgbouncer")
        first.close()
        assert second.running and (second.root / "pgbouncer.ini").exists()
        with second.connect("shop") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        second.close()


def test_a_pooler_of_another_live_process_is_not_taken_over(lab: ConnectionInfo, settings: Settings) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, "hold"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        root = Path(proc.stdout.readline().strip())
        with pytest.raises(pooler.PoolerError, match="another running process"):
            pooler.start_pooler(settings, lab, name="held")
        assert (root / "pgbouncer.pid").exists()
    finally:
        proc.terminate()
        proc.wait()
    assert pooler.cleanup_leftovers(settings) == ["held"]
    assert not root.exists()


def test_stop_all_stops_every_pooler_of_the_project(lab: ConnectionInfo, settings: Settings) -> None:
    first = pooler.start_pooler(settings, lab, name="one")
    second = pooler.start_pooler(settings, lab, name="two")
    pids = [int((p.root / "pgbouncer.pid").read_text()) for p in (first, second)]
    assert pooler.stop_all_poolers(settings) == ["one", "two"]
    assert not any(processes.alive(pid, comm="pgbouncer") for pid in pids)
    assert not pooler.poolers_dir(settings).exists()
    first.close()
    second.close()
