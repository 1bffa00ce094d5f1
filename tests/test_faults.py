"""What goes wrong on a learner's machine, against real servers: each fault gives a clear message with a
next step and a stable exit code, and nothing of the learner's is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers_servers import (
    IS_ROOT,
    LABKIT,
    clean_env,
    free_port,
    kill_postmasters,
    labkit,
    postmasters,
    python_for,
    reachable,
    run_as_user,
    settings_for,
    shutdown,
    snapshot,
    state_env,
    stopped_afterwards,
    user_with_python,
    wait_gone,
)

import labkit as labkit_package
from labkit.config import Settings
from labkit.errors import ConfigError, ConnectError, ForeignServer, NotRunning, ProviderUnavailable, ServerStartError
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR, find_installs, probe
from labkit.servers.cluster import DEFAULT_PORT, ClusterPaths
from labkit.servers.docker import engine_client
from labkit.servers.identity import check_own_server
from labkit.servers.portable import PortableProvider


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, ConnectionInfo]]:
    """One private PostgreSQL 16 for the URL faults of this module."""
    state = reachable(tmp_path_factory.mktemp("faults") / "state")
    settings = settings_for(state)
    try:
        yield settings, lifecycle.ensure_server(settings)
    finally:
        shutdown(settings)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A fresh state folder for the portable provider; stopped and deleted afterwards."""
    folder = reachable(tmp_path / "state")
    with stopped_afterwards(folder, _env(folder)):
        yield folder


def _env(state: Path, **extra: str) -> dict[str, str]:
    return state_env(state, LABKIT_SERVER="portable", **extra)


def _up(state: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return labkit("up", "--no-data", *args, env=_env(state, **extra))


def _port(up: subprocess.CompletedProcess[str]) -> int:
    line = next(x for x in up.stdout.splitlines() if "connection:" in x)
    return int(line.rsplit(":", 1)[1].split("/")[0])


def _admin(state: Path) -> psycopg.Connection:
    dsn = labkit("dsn", "--db", "postgres", env=_env(state))
    assert dsn.returncode == 0, dsn.stderr
    return psycopg.connect(dsn.stdout.strip(), autocommit=True)


OTHER_MAJOR_BINS = sorted(p for p in Path("/usr/lib/postgresql").glob("*/bin") if not p.parent.name.startswith(str(REQUIRED_MAJOR)))


def _as_nobody(*cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command run by another local user (``nobody``), as on a shared class server."""
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *cmd], capture_output=True, text=True, timeout=30, env=clean_env(**env), cwd="/"
    )


def _kill_postmaster(state: Path) -> int:
    [pid] = postmasters(state)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    return pid


@contextlib.contextmanager
def _listening(port: int | None = None, host: str = "127.0.0.1") -> Iterator[int]:
    """Another program listening on ``port`` (any free one if None) while the block runs.

    SO_REUSEADDR lets it take a port whose old connections still linger in TIME_WAIT after
    ``labkit down``, exactly as PostgreSQL itself would; a live listener still blocks both.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port or 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- bad URLs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "message"), [
    ("mysql://ann:s3cret-pw@db.example/shop", "does not start with postgresql://"),
    ("postgresql://ann:s3cret-pw@db.example:port/shop", "is not a number"),
    ("postgresql://ann:s3cret-pw@[::1/shop", "is malformed"),
    ("postgresql://ann:s3cret-pw@db.example/shop?colour=blue", 'invalid URI query parameter: "colour"'),
])  # fmt: skip
def test_malformed_url_is_a_config_error_that_hides_the_password(tmp_path: Path, url: str, message: str) -> None:
    result = labkit("up", "--no-data", env=state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL=url))
    assert result.returncode == ConfigError.exit_code == 2, result.stderr
    assert message in result.stderr and "→ Use" in result.stderr and "postgresql://USER" in result.stderr
    assert "ann:****@" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_unreachable_url_says_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    env = state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL=f"postgresql://ann:pw@127.0.0.1:{port}/postgres")
    started = time.monotonic()
    result = labkit("up", "--no-data", env=env)
    assert time.monotonic() - started < 20
    assert result.returncode == ConnectError.exit_code == 5
    assert f"Nothing answers at 127.0.0.1:{port} (connection refused)." in result.stderr and "labkit doctor" in result.stderr
    status = labkit("status", env=env)
    assert status.returncode == 6 and "not running" in status.stdout


def test_unresolvable_host_is_named(tmp_path: Path) -> None:
    env = state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL="postgresql://ann@no-such-host.invalid/postgres")
    result = labkit("up", "--no-data", env=env)
    assert result.returncode == 5
    assert "The host name 'no-such-host.invalid' cannot be resolved." in result.stderr


def test_wrong_password_is_named(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    with info.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS pwuser")
        conn.execute("CREATE ROLE pwuser LOGIN CREATEDB PASSWORD 'right-horse'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
    original = hba.read_text()
    hba.write_text("host all pwuser 127.0.0.1/32 scram-sha-256\n" + original)
    try:
        with info.connect() as conn:
            assert conn.execute("SELECT pg_reload_conf()").fetchone() == (True,)
            for _ in range(50):  # the reload is asynchronous
                if conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE 'pwuser' = ANY(user_name)").fetchone() == (1,):
                    break
                time.sleep(0.05)
        state = reachable(tmp_path / "state")
        wrong = labkit(
            "up", "--no-data", env=state_env(state, LABKIT_DATABASE_URL=f"postgresql://pwuser:wrong-horse@127.0.0.1:{info.port}/postgres")
        )
        assert wrong.returncode == ConnectError.exit_code
        assert f"The server at 127.0.0.1:{info.port} rejected the password for user 'pwuser'." in wrong.stderr
        assert "Check the user and password in LABKIT_DATABASE_URL." in wrong.stderr
        assert "wrong-horse" not in wrong.stderr
        missing = labkit("up", "--no-data", env=state_env(state, LABKIT_DATABASE_URL=f"postgresql://pwuser@127.0.0.1:{info.port}/postgres"))
        assert missing.returncode == 5 and "rejected the password for user 'pwuser'" in missing.stderr
        right = labkit(
            "up", "--no-data", env=state_env(state, LABKIT_DATABASE_URL=f"postgresql://pwuser:right-horse@127.0.0.1:{info.port}/postgres")
        )
        assert right.returncode == 0, right.stderr  # the same URL with the right password works
    finally:
        hba.write_text(original)
        with info.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")


# -- ports ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_busy_explicit_port_is_a_config_error(state: Path, host: str) -> None:
    with _listening(host=host) as busy:
        result = _up(state, LABKIT_PORT=str(busy))
    assert result.returncode == ConfigError.exit_code
    assert f"Port {busy} on 127.0.0.1 is already in use by another program." in result.stderr
    assert "LABKIT_PORT" in result.stderr
    assert postmasters(state) == []


def test_free_explicit_port_is_used(state: Path) -> None:
    port = free_port()
    up = _up(state, LABKIT_PORT=str(port))
    assert up.returncode == 0, up.stderr
    assert _port(up) == port


def test_busy_default_port_means_another_free_port(state: Path) -> None:
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # already taken (e.g. by the project's own lab server): fine too
            stack.enter_context(_listening(DEFAULT_PORT))
        up = _up(state)
        assert up.returncode == 0, up.stderr
        assert _port(up) != DEFAULT_PORT
        with _admin(state) as conn:
            assert conn.execute("SELECT current_setting('port')::int").fetchone() == (_port(up),)


def test_busy_previous_port_means_another_free_port(state: Path) -> None:
    first = _port(_up(state))
    assert labkit("down", env=_env(state)).returncode == 0
    with _listening(first):
        again = _up(state)
        assert again.returncode == 0, again.stderr
        assert _port(again) != first
        with _admin(state) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert labkit("status", env=_env(state)).returncode == 0


# -- crashes and stale files ----------------------------------------------------------------------
def test_up_after_kill_9_recovers_with_the_data(state: Path) -> None:
    first = _up(state)
    assert first.returncode == 0, first.stderr
    with _admin(state) as conn:
        conn.execute("CREATE TABLE survivor (x int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    old = _kill_postmaster(state)  # no wait for the reaper: a zombie postmaster must not count as running
    assert (state / "pg16" / "data" / "postmaster.pid").read_text().split()[0] == str(old)  # left behind
    assert labkit("status", env=_env(state)).returncode == 6
    again = _up(state)
    assert again.returncode == 0, again.stderr
    assert _port(again) == _port(first)
    [pid] = postmasters(state)
    assert pid != old
    with _admin(state) as conn:
        assert conn.execute("SELECT x FROM survivor").fetchall() == [(42,)]


def test_pid_file_naming_a_live_unrelated_process_is_stale(state: Path) -> None:
    first = _up(state)
    assert first.returncode == 0, first.stderr
    assert labkit("down", env=_env(state)).returncode == 0
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        data = state / "pg16" / "data"
        (data / "postmaster.pid").write_text(f"{bystander.pid}\n{data}\n0\n{_port(first)}\n{data.parent}\n127.0.0.1\n")
        status = labkit("status", env=_env(state))
        assert status.returncode == 6, status.stdout
        again = _up(state)
        assert again.returncode == 0, again.stderr
        with _admin(state) as conn:
            assert conn.execute("SELECT pg_backend_pid() > 0").fetchone() == (True,)
        assert bystander.poll() is None  # labkit never signals a process that is not its server
        assert labkit("down", env=_env(state)).stdout.strip() == "Stopped the portable server."
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_pid_file_naming_another_clusters_postmaster_is_stale(cluster, state: Path) -> None:  # type: ignore[no-untyped-def]
    """After a reboot an old PID may belong to another PostgreSQL: labkit must not attach to (or stop) that one."""
    other_settings, other = cluster
    [other_pid] = postmasters(other_settings.state_dir)
    first = _up(state)
    assert first.returncode == 0, first.stderr
    assert labkit("down", env=_env(state)).returncode == 0
    data = state / "pg16" / "data"
    (data / "postmaster.pid").write_text(f"{other_pid}\n{data}\n0\n{other.port}\n{data.parent}\n127.0.0.1\n")
    assert labkit("status", env=_env(state)).returncode == 6
    assert labkit("down", env=_env(state)).stdout.strip() == "The portable server was not running."
    again = _up(state)
    assert again.returncode == 0, again.stderr
    assert _port(again) != other.port
    assert postmasters(other_settings.state_dir) == [other_pid]  # the other server is untouched
    with _admin(state) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (str(data),)


def test_lab_recovers_when_the_server_was_killed(cluster, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    for name in [n for n in os.environ if n.startswith("LABKIT_") or n == "DATABASE_URL"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LABKIT_DATA_DIR", str(settings.state_dir))
    monkeypatch.setenv("LABKIT_SERVER", "portable")
    lab = labkit_package.lab(load_data=False)
    try:
        assert lab.df("SELECT 1 AS one")["one"].tolist() == [1]
        _kill_postmaster(settings.state_dir)
        with pytest.raises(Exception, match=r"(?i)connect|terminat|closed"):
            lab.df("SELECT 1 AS one")
    finally:
        lab.engine.dispose()
    again = labkit_package.lab(load_data=False)
    try:
        assert again.info.port == info.port
        assert again.df("SELECT 2 AS two")["two"].tolist() == [2]
        assert len(postmasters(settings.state_dir)) == 1
    finally:
        again.engine.dispose()


# -- data directories labkit must not touch -------------------------------------------------------
def _foreign_data_dir(state: Path, pg_version: str | None) -> Path:
    data = state / "pg16" / "data"
    (data / "base" / "1").mkdir(parents=True)
    (data / "base" / "1" / "1259").write_bytes(b"\x00\x01precious table bytes")
    (data / "postgresql.conf").write_text("# someone's own settings\nport = 5433\n")
    if pg_version is not None:
        (data / "PG_VERSION").write_text(pg_version)
    return data


@pytest.mark.parametrize(("pg_version", "message"), [
    ("15\n", "was made by PostgreSQL 15, but the binaries in"),
    (None, "exists but is not a PostgreSQL data directory (PG_VERSION missing or damaged)."),
    ("garbage\n", "exists but is not a PostgreSQL data directory (PG_VERSION missing or damaged)."),
])  # fmt: skip
def test_foreign_data_directory_is_refused_and_left_untouched(state: Path, pg_version: str | None, message: str) -> None:
    data = _foreign_data_dir(state, pg_version)
    before = snapshot(data)
    result = _up(state)
    assert result.returncode == ServerStartError.exit_code == 4
    assert str(data) in result.stderr and message in result.stderr
    assert "nothing is deleted automatically" in result.stderr or "move the folder aside" in result.stderr
    assert snapshot(data) == before
    assert postmasters(state) == []
    assert labkit("status", env=_env(state)).returncode == 6


@pytest.mark.parametrize(("damage", "said"), [
    ("missing", "its control file global/pg_control is missing"),
    ("truncated", "its control file global/pg_control is truncated (100 of 8192 bytes)"),
    ("garbled", "PostgreSQL cannot read its control file (global/pg_control)"),
])  # fmt: skip
def test_damaged_control_file_says_what_is_lost_and_how_to_start_afresh(state: Path, damage: str, said: str) -> None:
    assert _up(state).returncode == 0
    assert labkit("down", env=_env(state)).returncode == 0
    control = state / "pg16" / "data" / "global" / "pg_control"
    if damage == "missing":
        control.unlink()
    elif damage == "truncated":
        control.write_bytes(control.read_bytes()[:100])
    else:  # right size, wrong checksum: only the server's own log tells
        raw = bytearray(control.read_bytes())
        raw[16:48] = bytes(32)
        control.write_bytes(bytes(raw))
    before = snapshot(state / "pg16" / "data")
    result = _up(state)
    assert result.returncode == ServerStartError.exit_code == 4, result.stderr
    assert f"The lab's PostgreSQL cluster in {state / 'pg16' / 'data'} is damaged: {said}." in result.stderr
    assert "the databases in it (the shop and any tables or databases you made there) cannot be opened" in result.stderr
    assert "'labkit down --delete-data' deletes it and 'labkit up' starts afresh" in result.stderr
    assert "move it aside" not in result.stderr and "Traceback" not in result.stderr
    assert snapshot(state / "pg16" / "data") == before  # nothing deleted on its own
    assert postmasters(state) == []
    down = labkit("down", "--delete-data", env=_env(state))
    assert down.returncode == 0 and "Deleted its data" in down.stdout
    assert _up(state).returncode == 0  # afresh


# -- providers that cannot run here ---------------------------------------------------------------
def _skip_if_docker_answers(docker_host: str | None) -> None:
    previous = os.environ.get("DOCKER_HOST")
    try:
        if docker_host is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = docker_host
        engine_client(timeout=2)
    except ProviderUnavailable:
        return
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
    pytest.skip("a Docker engine answers here")


@pytest.mark.parametrize("docker_host", [None, "unix:///nonexistent.sock", "tcp://127.0.0.1:{port}"])
def test_docker_without_an_engine_fails_fast_and_explains(tmp_path: Path, docker_host: str | None) -> None:
    if docker_host:
        docker_host = docker_host.format(port=free_port())
    _skip_if_docker_answers(docker_host)
    extra = {"DOCKER_HOST": docker_host} if docker_host else {}
    env = state_env(reachable(tmp_path / "state"), **extra)
    started = time.monotonic()
    result = labkit("up", "--server", "docker", "--no-data", env=env)
    assert time.monotonic() - started < 5
    assert result.returncode == ProviderUnavailable.exit_code == 3
    where = docker_host or "the default socket (/var/run/docker.sock)"
    assert f"No Docker engine answers at {where}" in result.stderr
    assert "Docker Desktop" in result.stderr and "DOCKER_HOST" in result.stderr and "--server portable" in result.stderr
    assert "Traceback" not in result.stderr
    status = labkit("status", "--server", "docker", env=env)
    assert status.returncode == 6
    down = labkit("down", "--server", "docker", env=env)
    assert down.returncode == 0 and "was not running" in down.stdout


def test_portable_without_npm_lists_the_other_options(tmp_path: Path) -> None:
    no_tools = reachable(tmp_path / "bin")  # a PATH without npm (and without pg_ctl)
    env = state_env(reachable(tmp_path / "state"), PATH=str(no_tools), LABKIT_CACHE_DIR=str(tmp_path / "empty-cache"))
    result = labkit("up", "--server", "portable", "--no-data", env=env)
    assert result.returncode == ProviderUnavailable.exit_code
    assert "needs npm to download it, and npm is not installed" in result.stderr
    for option in ("Install Node.js", "--server local", "--server docker", "LABKIT_DATABASE_URL"):
        assert option in result.stderr
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())
    doctor = labkit("doctor", env=env)
    assert "[no ] portable  npm is not installed" in doctor.stdout


def test_auto_with_nothing_usable_explains_every_provider(tmp_path: Path) -> None:
    if any(i.major == REQUIRED_MAJOR for i in find_installs(None)):
        pytest.skip("PostgreSQL 16 is installed here")
    _skip_if_docker_answers("unix:///nonexistent.sock")
    env = state_env(
        reachable(tmp_path / "state"),
        PATH=str(reachable(tmp_path / "bin")),
        LABKIT_CACHE_DIR=str(tmp_path / "empty-cache"),
        DOCKER_HOST="unix:///nonexistent.sock",
    )
    result = labkit("up", "--no-data", env=env)
    assert result.returncode == 3
    assert "No way to run PostgreSQL 16 was found:" in result.stderr
    for line in ("  url: ", "  local: ", "  docker: No Docker engine answers", "  portable: npm is not installed"):
        assert line in result.stderr
    assert "Install Node.js/npm" in result.stderr and "LABKIT_DATABASE_URL" in result.stderr
    doctor = labkit("doctor", env=env)
    assert doctor.returncode == 3 and "auto would use: nothing" in doctor.stdout


# -- folders the user cannot write ----------------------------------------------------------------
def test_unwritable_explicit_data_dir_is_a_config_error(tmp_path: Path) -> None:
    user, python, python_env = user_with_python()
    home = reachable(tmp_path / "home", owner=user)
    locked_dir = reachable(tmp_path / "roots-only")  # root's, mode 0755
    env = clean_env(HOME=str(home), LABKIT_DATA_DIR=str(locked_dir / "state"), **python_env)
    result = run_as_user(user, python, ["up", "--no-data", "--server", "portable"], env)
    assert result.returncode == 2, result.stderr
    assert f"The data directory {locked_dir / 'state'} is not writable." in result.stderr
    assert not (locked_dir / "state").exists()
    assert pwd.getpwnam(user).pw_uid != 0


def test_cache_is_reused_not_refetched(tmp_path: Path) -> None:
    """The portable build is cached once; a second provider finds it without npm."""
    cached = PortableProvider(settings_for(Path("/nonexistent"))).cached()
    if cached is None:
        pytest.skip("the portable build is not cached yet")
    env = state_env(reachable(tmp_path / "state"), PATH=str(reachable(tmp_path / "bin")))
    doctor = labkit("doctor", env=env)
    assert f"[ok ] portable  PostgreSQL {cached.version} cached in" in doctor.stdout


def test_binaries_the_server_user_cannot_reach_are_a_clear_error(tmp_path: Path) -> None:
    """As root the server runs as an unprivileged user: PostgreSQL programs in a private folder
    (e.g. LABKIT_CACHE_DIR or LABKIT_PG_BIN under a mode-0700 folder) are out of its reach."""
    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another user")
    cached = PortableProvider(settings_for(Path("/nonexistent"))).cached()
    if cached is None:
        pytest.skip("the portable build is not cached yet")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shutil.copytree(cached.bindir.parent, private / "pg", symlinks=True, copy_function=os.link)  # a private copy
    state = reachable(tmp_path / "state")
    env = state_env(state, LABKIT_PG_BIN=str(private / "pg" / "bin"))
    with stopped_afterwards(state):
        result = labkit("up", "--server", "local", "--no-data", env=env)
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert f"The PostgreSQL programs in {private / 'pg' / 'bin'} are out of reach of" in result.stderr
    assert "Traceback" not in result.stderr
    assert not postmasters(state)


# -- only the lab's owner gets in -----------------------------------------------------------------
def _needs_root_and_psql() -> None:
    if not IS_ROOT or shutil.which("psql") is None or shutil.which("runuser") is None:
        pytest.skip("needs root (to act as another user with runuser) and psql")


def test_another_local_user_cannot_connect(state: Path) -> None:
    _needs_root_and_psql()
    up = _up(state)
    assert up.returncode == 0, up.stderr
    port = _port(up)
    password_file = state / "pg16" / "password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 24 and password not in up.stdout + up.stderr
    psql = ["psql", "-w", "-X", "-U", "postgres", "-d", "postgres", "-p", str(port), "-c", "SELECT 1"]
    no_password = _as_nobody(*psql, "-h", "127.0.0.1")
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr
    wrong = _as_nobody(*psql, "-h", "127.0.0.1", PGPASSWORD="guess")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    via_socket = _as_nobody(*psql, "-h", str(state / "pg16"))
    assert via_socket.returncode != 0 and "Permission denied" in via_socket.stderr  # the socket folder is private
    assert _as_nobody("cat", str(password_file)).returncode != 0
    with _admin(state) as conn:  # the owner: labkit dsn carries the password
        assert conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method IN ('trust', 'password')").fetchone() == (0,)
    own = labkit("psql", "--db", "postgres", "--", "-tAX", "-c", "SELECT current_user", env=_env(state))
    assert own.returncode == 0 and own.stdout.strip() == "postgres", own.stderr
    with psycopg.connect(host=str(state / "pg16"), port=port, user="postgres", dbname="postgres") as conn:  # peer on the socket
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


@pytest.mark.parametrize("how", ["made with trust", "password file lost", "password changed by hand"])
def test_the_owner_keeps_access_and_others_stay_out(state: Path, how: str) -> None:
    """Clusters made by an earlier labkit trusted every local user: the next start fixes that. A lost password
    file or an ``ALTER ROLE postgres PASSWORD`` typed in psql does not lock the owner out. The data is kept."""
    assert _up(state).returncode == 0
    with _admin(state) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        if how == "password changed by hand":
            conn.execute("ALTER ROLE postgres PASSWORD 'typed-in-psql'")
    assert labkit("down", env=_env(state)).returncode == 0
    data = state / "pg16" / "data"
    if how == "made with trust":
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
    if how != "password changed by hand":
        (state / "pg16" / "password").unlink()
    up = _up(state)
    assert up.returncode == 0, up.stderr
    assert (state / "pg16" / "password").stat().st_mode & 0o777 == 0o600
    for guess in ("anything", "typed-in-psql"):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=_port(up), user="postgres", password=guess, dbname="postgres").close()
    with _admin(state) as conn:
        assert conn.execute("SELECT to_regclass('kept')::text").fetchone() == ("kept",)
        assert conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'").fetchone() == (0,)


def test_another_clones_server_on_the_same_port_is_told_apart(cluster, state: Path) -> None:  # type: ignore[no-untyped-def]
    """After a restart another clone's lab may take the port: its password and its system identifier differ."""
    _, other = cluster
    assert _up(state).returncode == 0
    own = lifecycle.current_server(settings_for(state))
    assert own is not None and own.system_identifier is not None and own.password
    check_own_server(own)  # the real one passes
    impostor = dataclasses.replace(own, port=other.port)  # what a kernel holding the old port would reach
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        impostor.connect().close()
    with pytest.raises(ForeignServer, match="is not this project's lab server") as raised, other.connect() as conn:
        check_own_server(impostor, conn)
    assert raised.value.exit_code == ConnectError.exit_code and "Nothing was changed" in str(raised.value)


# -- interrupted and orphaned servers -------------------------------------------------------------
@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_during_the_first_up_leaves_no_half_made_cluster(state: Path, target: str) -> None:
    root = state / "pg16"
    proc = subprocess.Popen([*LABKIT, "up", "--no-data"], env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/", start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not any((root / d / "base").is_dir() for d in ("data", "data.initdb")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    (os.killpg if target == "group" else os.kill)(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not (root / "data").exists()  # initdb had not finished: no data directory that looks real
    assert postmasters(state) == []
    down = labkit("down", "--delete-data", env=_env(state))
    assert down.returncode == 0 and "No lab server was started" not in down.stdout, down.stdout
    assert not root.exists()
    started = time.monotonic()
    up = _up(state)
    assert up.returncode == 0, up.stderr
    assert time.monotonic() - started < 30
    with _admin(state) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname IN ('postgres', 'template1')").fetchone() == (2,)


def test_an_interrupted_initdb_is_redone(state: Path) -> None:
    """A leftover data.initdb (labkit's own, unfinished) is replaced by a complete cluster."""
    partial = reachable(state / "pg16" / "data.initdb")
    (partial / "base").mkdir()
    (partial / "PG_VERSION").write_text("16\n")
    up = _up(state)
    assert up.returncode == 0, up.stderr
    assert not partial.exists() and (state / "pg16" / "data" / "global" / "pg_control").is_file()


def test_status_and_down_find_the_server_without_the_state_file(state: Path) -> None:
    assert _up(state).returncode == 0
    (state / "state.json").unlink()
    status = labkit("status", env=state_env(state))  # auto, no state: the data directory says it all
    assert status.returncode == 0 and "via portable at 127.0.0.1:" in status.stdout, status.stdout
    down = labkit("down", env=state_env(state))
    assert down.returncode == 0 and down.stdout.strip() == "Stopped the portable server."
    assert postmasters(state) == []


def test_down_stops_the_lab_after_a_url_pointed_at_it(state: Path) -> None:
    assert _up(state).returncode == 0
    url = labkit("dsn", "--db", "postgres", env=_env(state)).stdout.strip()
    via_url = labkit("up", "--no-data", env=state_env(state, LABKIT_DATABASE_URL=url))
    assert via_url.returncode == 0 and "(url provider)" in via_url.stdout, via_url.stderr
    down = labkit("down", env=state_env(state))
    assert down.returncode == 0 and "Stopped the portable server." in down.stdout, down.stdout
    assert postmasters(state) == []


def test_a_server_whose_folder_was_deleted_is_stopped_not_doubled(state: Path) -> None:
    first = _up(state)
    assert first.returncode == 0, first.stderr
    [old] = postmasters(state)
    shutil.rmtree(state)  # rm -rf .labkit while it runs
    reachable(state)
    again = _up(state)
    assert again.returncode == 0, again.stderr
    assert f"stopping the lab server (pid {old}) whose folder" in again.stderr
    [new] = postmasters(state)
    assert new != old
    shutil.rmtree(state / "pg16")
    down = labkit("down", env=_env(state))
    assert down.returncode == 0 and f"Stopped the lab server (pid {new}) whose folder had been deleted." in down.stdout, down.stdout
    assert postmasters(state) == []


@pytest.mark.skipif(not OTHER_MAJOR_BINS, reason="no other PostgreSQL major version installed")
def test_a_server_of_another_major_is_found_checked_and_stopped(state: Path, tmp_path: Path) -> None:
    bindir = OTHER_MAJOR_BINS[-1]
    major = int(bindir.parent.name)
    env = state_env(state, LABKIT_PG_BIN=str(bindir))
    up = labkit("up", "--server", "local", "--allow-other-major", "--no-data", env=env)
    assert up.returncode == 0, up.stderr
    url = labkit("dsn", "--db", "postgres", "--server", "local", "--allow-other-major", env=env).stdout.strip()
    # Another project pointed at that server: status and doctor say it is the wrong version.
    other = state_env(reachable(tmp_path / "other"), LABKIT_DATABASE_URL=url)
    status = labkit("status", env=other)
    assert status.returncode == NotRunning.exit_code, status.stdout
    assert f"this is PostgreSQL {major}, the course needs 16: 'labkit up' refuses it" in status.stdout
    assert "labkit up loads it" not in status.stdout
    doctor = labkit("doctor", env=other)
    url_row = next(x for x in doctor.stdout.splitlines() if "] url" in x)
    assert url_row.startswith("  [no ]") and f"runs PostgreSQL {major}, the course needs 16" in url_row
    assert "[no: the course needs PostgreSQL 16]" in doctor.stdout
    # A plain `labkit down` (no flags, no LABKIT_PG_BIN) still stops it.
    down = labkit("down", env=state_env(state))
    assert down.returncode == 0 and f"Stopped the local server (pg{major})." in down.stdout, down.stdout
    assert postmasters(state) == []


@pytest.mark.skipif(not OTHER_MAJOR_BINS, reason="no other PostgreSQL major version installed")
def test_allowing_another_major_still_prefers_16(tmp_path: Path) -> None:
    if any(i.major == REQUIRED_MAJOR for i in find_installs(None)) or PortableProvider(settings_for(Path("/nonexistent"))).cached() is None:
        pytest.skip("needs a local PostgreSQL of another major only, and the cached portable 16")
    assert probe(OTHER_MAJOR_BINS[-1], "test") is not None
    env = state_env(reachable(tmp_path / "state"), LABKIT_ALLOW_OTHER_MAJOR="1", PATH=f"{OTHER_MAJOR_BINS[-1]}:{os.environ['PATH']}")
    doctor = labkit("doctor", env=env)
    assert "auto would use: portable" in doctor.stdout, doctor.stdout
    assert "[ok ] local" in doctor.stdout  # allowed, but not preferred over 16


def test_labkit_port_is_named_when_the_server_runs_elsewhere(state: Path) -> None:
    first = _up(state)
    assert first.returncode == 0, first.stderr
    wanted = free_port()
    again = _up(state, LABKIT_PORT=str(wanted))
    assert again.returncode == 0 and _port(again) == _port(first)
    assert f"LABKIT_PORT={wanted} is not used: the lab server was already running on port {_port(first)}" in again.stderr
    assert "'labkit down' and 'labkit up'" in again.stderr


def test_down_delete_data_of_a_stopped_server_says_it_deleted(state: Path) -> None:
    assert _up(state).returncode == 0
    assert labkit("down", env=_env(state)).returncode == 0
    down = labkit("down", "--delete-data", env=_env(state))
    assert down.returncode == 0
    assert down.stdout.strip() == f"The portable server was not running. Deleted its data ({state / 'pg16'})."
    assert not (state / "pg16").exists()


def test_kill_9_while_a_backend_is_busy_waits_then_restarts(state: Path) -> None:
    assert _up(state).returncode == 0
    with _admin(state) as conn:
        conn.execute("CREATE TABLE survivor AS SELECT 42 AS x")
    busy = _admin(state)

    def long_query() -> None:
        with contextlib.suppress(psycopg.Error):
            busy.execute("SELECT count(*) FROM generate_series(1, 10000000000)")

    worker = threading.Thread(target=long_query)
    worker.start()
    time.sleep(1)
    _kill_postmaster(state)
    try:
        data = state / "pg16" / "data"
        leftover = [p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if _cwd(p) == str(data)]
        assert leftover, "the busy backend should outlive its postmaster"
        up = _up(state)
        assert up.returncode == 0, up.stderr
        assert "of the lab server that was killed are still running" in up.stderr and "shared memory" not in up.stderr
        with _admin(state) as conn:
            assert conn.execute("SELECT x FROM survivor").fetchall() == [(42,)]
    finally:
        worker.join(timeout=60)
        with contextlib.suppress(Exception):
            busy.close()


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def test_status_while_the_server_shuts_down_does_not_crash(state: Path) -> None:
    assert _up(state).returncode == 0
    held = _admin(state)  # a smart shutdown waits for this session; new ones are refused meanwhile
    try:
        [pid] = postmasters(state)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while True:
            try:
                _admin(state).close()
            except psycopg.OperationalError as exc:
                if "shutting down" in str(exc):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for command in ("status", "doctor"):
            result = labkit(command, env=_env(state))
            assert "Traceback" not in result.stderr, result.stderr
            assert "not accepting connections: it is shutting down" in result.stdout, result.stdout
        assert labkit("status", env=_env(state)).returncode == NotRunning.exit_code
    finally:
        held.close()


def test_too_little_disk_space_refuses_before_initdb(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("needs root to mount a small tmpfs")
    small = reachable(tmp_path / "small")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0755", "tmpfs", str(small)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        state = small / "state"
        result = _up(state)
        assert result.returncode == ServerStartError.exit_code, result.stderr
        assert "MB are free on the disk of" in result.stderr and "needs at least 100 MB" in result.stderr
        assert "LABKIT_DATA_DIR" in result.stderr and "Traceback" not in result.stderr
        assert not (state / "pg16").exists()  # nothing created
        assert postmasters(small) == []
    finally:
        kill_postmasters(small)
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


# -- URLs and settings, said precisely ------------------------------------------------------------
def test_an_at_sign_in_the_password_says_how_to_encode_it(tmp_path: Path) -> None:
    env = state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL=f"postgresql://ann:p@ss@127.0.0.1:{free_port()}/postgres")
    result = labkit("up", "--no-data", env=env)
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert "must be written %40" in result.stderr and "Percent-encode" in result.stderr and "urllib.parse.quote" in result.stderr
    assert "p@ss" not in result.stderr and "ss@127.0.0.1" not in result.stderr and "cannot be resolved" not in result.stderr


def test_a_missing_role_is_named_as_a_role(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    with info.connect() as conn:
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
    original = hba.read_text()
    hba.write_text("host all database_admin 127.0.0.1/32 trust\n" + original)  # so the server tells the role is missing
    try:
        with info.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")
            time.sleep(0.3)
        env = state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL=f"postgresql://database_admin@127.0.0.1:{info.port}/postgres")
        result = labkit("up", "--no-data", env=env)
        assert result.returncode == ConnectError.exit_code
        assert f"The server at 127.0.0.1:{info.port} has no role 'database_admin'." in result.stderr, result.stderr
        assert "no database" not in result.stderr
    finally:
        hba.write_text(original)
        with info.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")


def test_a_unix_socket_url_prints_commands_for_that_socket(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    socket_dir = ClusterPaths(settings.state_dir / "pg16").socket_dir
    url = f"postgresql://postgres@/postgres?host={socket_dir}&port={info.port}"
    env = state_env(reachable(tmp_path / "state"), LABKIT_DATABASE_URL=url)
    up = labkit("up", "--no-data", env=env)
    assert up.returncode == 0, up.stderr
    assert f"connection:  postgresql://postgres@/shop?host={str(socket_dir).replace('/', '%2F')}&port={info.port}" in up.stdout
    status = labkit("status", env=env)
    assert f"at socket {socket_dir} port {info.port}" in status.stdout, status.stdout
    dsn = labkit("dsn", "--db", "postgres", env=env).stdout.strip()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (str(settings.state_dir / "pg16" / "data"),)
    if shutil.which("psql"):
        psql = subprocess.run(["psql", "-X", "-tA", dsn, "-c", "SHOW port"], capture_output=True, text=True, timeout=30)
        assert psql.stdout.strip() == str(info.port), psql.stderr


def test_read_only_project_and_no_writable_home_is_a_clear_error(tmp_path: Path) -> None:
    if not IS_ROOT:
        pytest.skip("needs root to act as nobody")
    found = python_for("nobody")
    if found is None:
        pytest.skip("no Python that nobody can run with labkit importable")
    python, python_env = found
    project = reachable(tmp_path / "project")  # root's: nobody may read it, not write it
    env = clean_env(HOME="/nonexistent", LABKIT_PROJECT_DIR=str(project), **python_env)
    result = run_as_user("nobody", python, ["up", "--no-data", "--server", "portable"], env)
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert f"The project folder {project} is read-only" in result.stderr and "LABKIT_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr
