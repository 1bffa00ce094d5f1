"""Extra clusters on real PostgreSQL 16 processes: a second server, a streaming standby, point-in-time
recovery, and their removal on close, at exit, on ``labkit down``, after a kill -9 and past a size cap."""

from __future__ import annotations

import configparser
import contextlib
import gc
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers_servers import cmdline, postmasters

from labkit.config import Settings
from labkit.servers import extra
from labkit.servers.base import ConnectionInfo
from labkit.servers.clients import client_env, client_program
from labkit.servers.unprivileged import server_user

HOLDER = """
import sys, time
from labkit.servers import extra
kind = sys.argv[1]
held = [extra.extra_cluster("held")]
if kind == "with-archive":
    held.append(extra.wal_archive("held-wal"))
if kind == "with-slot":
    held.append(extra.extra_cluster("held-standby", standby=True, slot=True))
print("ready", flush=True)
if kind == "exit":
    sys.exit(0)
time.sleep(600)
"""


def receivers(under: Path) -> list[int]:
    """PIDs of live pg_receivewal processes writing below ``under``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = cmdline(int(entry.name))
            if argv and argv[0].endswith("pg_receivewal") and any(a.startswith(str(under)) for a in argv):
                found.append(int(entry.name))
    return found


def leftovers(settings: Settings) -> list[str]:
    base = extra.clusters_dir(settings)
    items = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
    return items + [f"postmaster {pid}" for pid in postmasters(base)] + [f"pg_receivewal {pid}" for pid in receivers(base)]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_after_the_run(settings: Settings) -> Iterator[None]:
    """Every extra cluster, backup and archive is gone after the test run: no folder, no process."""
    extra.cleanup_leftovers(settings)
    yield
    assert leftovers(settings) == [], "extra clusters left behind"
    assert not extra.clusters_dir(settings).exists()


@pytest.fixture
def lab(shop: ConnectionInfo) -> ConnectionInfo:
    """The lab server labkit runs: extra clusters copy it and run from its binaries."""
    if os.environ.get("LABKIT_TEST_URL"):
        pytest.skip("extra clusters need the lab server labkit runs itself; LABKIT_TEST_URL points at another server")
    return shop


def start_holder(kind: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the holder did not start: {line}{proc.communicate()[1]}")
    return proc


def slots(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE 'labkit%' ORDER BY 1").fetchall()


def hba_rules(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT type, database, user_name, address, netmask, auth_method FROM pg_hba_file_rules ORDER BY rule_number"
    ).fetchall()


def test_a_plain_cluster_is_private_like_the_lab_and_removed_on_close(lab: ConnectionInfo, settings: Settings) -> None:
    with extra.extra_cluster("second", settings) as second:
        assert second.port != lab.port and second.info.host == "127.0.0.1"
        with second.connect() as conn, lab.connect() as lab_conn:
            assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("16")  # type: ignore[index]
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"  # type: ignore[index]
            sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]  # type: ignore[index]
            assert Path(sockets) in {second.root, second.cluster.paths.socket_dir}
            assert hba_rules(conn) == hba_rules(lab_conn), "not the lab server's authentication"
            assert conn.execute("SHOW cluster_name").fetchone()[0] == "second"  # type: ignore[index]
        assert second.root.is_relative_to(extra.clusters_dir(settings))
        assert second.root.stat().st_mode & 0o077 == 0
        assert second.data_dir.stat().st_uid == server_user(settings.run_as).uid
        assert len(postmasters(second.root)) == 1
        assert "second" in extra.describe_support(settings)
    assert not second.root.exists()
    assert postmasters(second.root) == []
    with pytest.raises(extra.ExtraClusterError, match="is gone"):
        second.connect()


@pytest.mark.slow
def test_a_standby_streams_from_the_lab_and_is_promoted(lab: ConnectionInfo, settings: Settings) -> None:
    with lab.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS standby_probe; CREATE TABLE standby_probe (id int)")
    try:
        with extra.extra_cluster("standby", settings, standby=True, slot=True) as standby:
            standby.wait_streaming()
            with lab.connect() as conn:
                rows = conn.execute("SELECT state FROM pg_stat_replication WHERE application_name = 'standby'").fetchall()
                assert rows == [("streaming",)]
                assert slots(conn) == [("labkit_standby", True)]
                conn.execute("INSERT INTO standby_probe VALUES (42)")
                lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            standby.wait_for_lsn(lsn)
            with standby.connect() as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True  # type: ignore[index]
                assert conn.execute("SELECT id FROM standby_probe").fetchall() == [(42,)]
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute("INSERT INTO standby_probe VALUES (1)")
            standby.promote()
            with standby.connect() as conn:
                conn.execute("INSERT INTO standby_probe VALUES (43)")
                assert conn.execute("SELECT count(*) FROM standby_probe").fetchone()[0] == 2  # type: ignore[index]
            with lab.connect() as conn:
                assert conn.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby'").fetchone()[0] == 0  # type: ignore[index]
                assert conn.execute("SELECT count(*) FROM standby_probe").fetchone()[0] == 1  # type: ignore[index]
        with lab.connect() as conn:
            assert slots(conn) == [], "the standby's slot would keep the lab server's WAL forever"
    finally:
        with lab.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS standby_probe")


@pytest.mark.slow
def test_point_in_time_recovery_to_before_a_delete_brings_the_rows_back(lab: ConnectionInfo, settings: Settings) -> None:
    with lab.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS pitr_probe; CREATE TABLE pitr_probe (id int)")
    try:
        with extra.wal_archive("pitr-wal", settings) as archive, extra.base_backup("pitr-base", settings) as backup:
            verify = subprocess.run(
                [str(client_program("pg_verifybackup", settings)), str(backup.path)],
                capture_output=True, text=True, env=client_env("pg_verifybackup", settings),
            )  # fmt: skip
            assert verify.returncode == 0, verify.stderr
            with lab.connect() as conn:
                conn.execute("INSERT INTO pitr_probe SELECT generate_series(1, 100)")
                before_lsn, before_time = conn.execute("SELECT pg_current_wal_lsn()::text, clock_timestamp()").fetchone()  # type: ignore[misc]
                time.sleep(0.01)
                conn.execute("DELETE FROM pitr_probe")
                after = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            archive.wait_for(after)
            for target in (extra.RecoveryTarget(lsn=before_lsn), extra.RecoveryTarget(time=before_time)):
                with extra.extra_cluster("pitr", settings, from_backup=backup, wal_archive=archive, recovery_target=target) as recovered:
                    with recovered.connect() as conn:
                        assert conn.execute("SELECT count(*) FROM pitr_probe").fetchone()[0] == 100, target  # type: ignore[index]
                        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False  # type: ignore[index]
            with extra.extra_cluster("pitr-end", settings, from_backup=backup, wal_archive=archive) as latest:
                with latest.connect() as conn:  # no target: to the end of the archive, after the DELETE
                    assert conn.execute("SELECT count(*) FROM pitr_probe").fetchone()[0] == 0  # type: ignore[index]
            with pytest.raises(extra.ExtraClusterError, match="end of the WAL archive before its recovery target"):
                extra.extra_cluster(
                    "pitr-late", settings, from_backup=backup, wal_archive=archive, recovery_target=extra.RecoveryTarget(lsn="FF/0")
                )
            assert not (extra.clusters_dir(settings) / "pitr-late").exists()
    finally:
        with lab.connect() as conn:
            conn.execute("DROP TABLE IF EXISTS pitr_probe")


@pytest.mark.slow
@pytest.mark.parametrize("cleanup", ["next extra cluster", "labkit down"])
def test_after_a_kill_9_of_the_owner_the_next_call_removes_everything(lab: ConnectionInfo, settings: Settings, cleanup: str) -> None:
    holder = start_holder("with-archive")
    base = extra.clusters_dir(settings)
    assert len(postmasters(base / "held")) == 1 and len(receivers(base / "held-wal")) == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert len(postmasters(base / "held")) == 1, "the postmaster outlives its owner (what the cleanup is for)"
    if cleanup == "labkit down":
        assert set(extra.stop_all_extra_clusters(settings)) == {"held", "held-wal"}
    else:
        with extra.extra_cluster("after-crash", settings):
            assert sorted(p.name for p in base.iterdir()) == ["after-crash"]
    assert leftovers(settings) == []


@pytest.mark.slow
def test_after_a_kill_9_the_slot_of_a_standby_is_dropped_on_the_lab(lab: ConnectionInfo, settings: Settings) -> None:
    holder = start_holder("with-slot")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with lab.connect() as conn:
        assert slots(conn) == [("labkit_held_standby", True)], "the orphaned standby still streams on its slot"
    assert set(extra.cleanup_leftovers(settings)) == {"held", "held-standby"}
    with lab.connect() as conn:
        assert slots(conn) == []
    assert leftovers(settings) == []


@pytest.mark.slow
def test_labkit_down_stops_clusters_of_a_running_notebook_and_names_are_owned(lab: ConnectionInfo, settings: Settings) -> None:
    holder = start_holder("plain")
    try:
        with pytest.raises(extra.ExtraClusterError, match="another running process"):
            extra.extra_cluster("held", settings)
        assert extra.cleanup_leftovers(settings) == [], "a live owner's cluster is not a leftover"
        assert extra.stop_all_extra_clusters(settings) == ["held"]
        assert leftovers(settings) == []
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_cluster_never_closed_is_removed_when_python_exits(lab: ConnectionInfo, settings: Settings) -> None:
    holder = start_holder("exit")
    assert holder.wait(timeout=60) == 0
    assert leftovers(settings) == []


@pytest.mark.slow
def test_a_cluster_that_outgrows_its_cap_is_stopped_and_removed(lab: ConnectionInfo, settings: Settings) -> None:
    with extra.extra_cluster("grower", settings, max_mb=80) as grower:
        with contextlib.suppress(psycopg.OperationalError), grower.connect() as conn:  # a slow machine: stopped mid-statement
            conn.execute("CREATE TABLE filler AS SELECT repeat('x', 1000) AS pad FROM generate_series(1, 60000)")
        deadline = time.monotonic() + 4 * extra.WATCH_INTERVAL_S
        while grower.root.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not grower.root.exists() and postmasters(grower.root) == []
        with pytest.raises(extra.ExtraClusterError, match="past its cap of 80 MB"):
            grower.connect()


def test_a_standby_larger_than_its_cap_is_refused_before_copying(lab: ConnectionInfo, settings: Settings) -> None:
    with pytest.raises(extra.ExtraClusterError, match="more than its cap of 1 MB"):
        extra.extra_cluster("tiny", settings, standby=True, max_mb=1)
    assert not (extra.clusters_dir(settings) / "tiny").exists()


@pytest.mark.parametrize("name", ["", "Standby", "../lab", "a b", "x" * 41])
def test_a_bad_name_is_one_clear_error(name: str, settings: Settings) -> None:
    with pytest.raises(extra.ExtraClusterError, match="not a usable cluster name"):
        extra.extra_cluster(name, settings)


def test_extra_clusters_block_removes_what_it_started(lab: ConnectionInfo, settings: Settings) -> None:
    with extra.extra_clusters(settings):
        first = extra.extra_cluster("one", settings)
        second = extra.extra_cluster("two", settings, conf={"wal_level": "logical"})
        with second.connect() as conn:
            assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"  # type: ignore[index]
    assert not first.root.exists() and not second.root.exists()
    assert leftovers(settings) == []


def sanitize(text: str) -> str:
    """Apply tests/sanitize.cfg the way nbval does: every section's regex, in file order."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(Path(__file__).with_name("sanitize.cfg"))
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def volatile_output(cluster: extra.ExtraCluster) -> str:
    """What an operations lesson prints that differs between two runs (or two clusters)."""
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
        row = conn.execute(
            "SELECT pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn()), system_identifier, pg_backend_pid(),"
            " now(), clock_timestamp() - now(), pg_size_pretty(pg_database_size(current_database())), txid_current()"
            " FROM pg_control_system()"
        ).fetchone()
    lsn, walfile, sysid, pid, now, lag, size, xid = row  # type: ignore[misc]
    return (
        f"lsn {lsn} | file {walfile} | system {sysid} | PID {pid} | at {now} | lag {lag} | size {size} | xid: {xid}\n"
        f"{cluster.url()} port={cluster.port} in {cluster.data_dir}\n{cluster.log_tail(1)}"
    )


def test_the_ops_sanitizers_make_two_runs_print_the_same(lab: ConnectionInfo, settings: Settings) -> None:
    with extra.extra_cluster("sanitize", settings) as first:
        one = volatile_output(first)
    with extra.extra_cluster("sanitize", settings, conf={"shared_buffers": "'64MB'"}) as second:
        with second.connect() as conn:
            conn.execute("CREATE TABLE extra AS SELECT generate_series(1, 100000) AS n")  # other LSNs, xids, size
        two = volatile_output(second)
    assert one != two
    assert sanitize(one) == sanitize(two), (sanitize(one), sanitize(two))
    assert str(first.port) not in sanitize(one) and str(first.root) not in sanitize(one)


def test_rerunning_a_cell_replaces_the_cluster_of_that_name(lab: ConnectionInfo, settings: Settings) -> None:
    first = extra.extra_cluster("again", settings)
    with extra.extra_cluster("again", settings) as second:
        assert len(postmasters(second.root)) == 1
        with pytest.raises(extra.ExtraClusterError, match="replaced by a newer one"):
            first.connect()
        with second.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        del first  # collecting the replaced object must not remove the new cluster
        gc.collect()
        assert second.is_running()
