"""The engine against real servers: provider choice, a private cluster's life cycle, faults.

Each test here uses its own state folder and port, never the project's lab server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from labkit import runtime, servers
from labkit.config import Settings
from labkit.errors import ConfigError, ConnectError, ProviderUnavailable, ServerStartError
from labkit.servers.base import ConnectionInfo
from labkit.servers.portable import PortableProvider
from labkit.servers.url import parse_url

LABKIT = [sys.executable, "-m", "labkit.cli"]
IS_ROOT = os.geteuid() == 0


def _state_dir(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    for parent in tmp.parents:  # the unprivileged server user must reach it
        if parent == Path("/"):
            break
        if IS_ROOT and not os.stat(parent).st_mode & 0o001:
            parent.chmod(os.stat(parent).st_mode | 0o011)
    return tmp


def _settings(state: Path, **overrides: object) -> Settings:
    clean = {k: None for k in ("database_url",)}
    return Settings.load(**{"server": "portable", **overrides}).with_(state_dir=state, port=None, **clean)  # type: ignore[arg-type]


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"LABKIT_DATABASE_URL", "DATABASE_URL", "LABKIT_PORT"}}
    return {**env, "LABKIT_DATA_DIR": str(state), "LABKIT_SERVER": "portable", **extra}


def _cli(*args: str, env: dict[str, str], python: str = sys.executable, **kwargs: object) -> subprocess.CompletedProcess[str]:
    command = [python, "-m", "labkit.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A private cluster started by the portable provider in a temporary state folder."""
    state = _state_dir(Path(tmp_path_factory.mktemp("engine", numbered=True)) / "state")
    settings = _settings(state)
    info = runtime.ensure_server(settings)
    yield settings, info
    runtime.stop_server(settings, delete_data=True)


# -- provider choice ------------------------------------------------------------------------
def test_doctor_explains_every_provider(tmp_path: Path) -> None:
    result = _cli("doctor", env=_env(_state_dir(tmp_path / "s")))
    assert result.returncode == 0, result.stderr
    for name in ("url", "local", "docker", "portable"):
        assert f"] {name}" in result.stdout
    assert "auto would use:" in result.stdout


def test_auto_prefers_an_explicit_url(server: ConnectionInfo, tmp_path: Path) -> None:
    settings = Settings.load(server="auto", database_url=server.url()).with_(state_dir=tmp_path)
    chosen = servers.choose(settings)
    assert chosen.name == "url"
    assert chosen.start().port == server.port


def test_auto_without_url_skips_what_is_missing(tmp_path: Path) -> None:
    settings = Settings.load(server="auto").with_(state_dir=tmp_path, database_url=None)
    survey = dict(servers.survey(settings))
    if shutil.which("docker") and not os.path.exists("/var/run/docker.sock") and "DOCKER_HOST" not in os.environ:
        assert not survey["docker"].ok and "No Docker engine" in survey["docker"].detail
    if not survey["local"].ok and "found PostgreSQL" in survey["local"].detail:
        assert "needs 16" in survey["local"].detail  # Debian's 15 is never used silently
    if not survey["local"].ok and not survey["docker"].ok:
        assert servers.choose(settings).name == "portable"


def test_docker_named_without_an_engine_fails_fast_and_explains(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _cli("up", "--server", "docker", "--no-data", env={**_env(_state_dir(tmp_path)), "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert time.monotonic() - started < 15
    assert result.returncode == 3
    assert "No Docker engine answers at unix:///nonexistent.sock" in result.stderr
    assert "DOCKER_HOST" in result.stderr and "--server portable" in result.stderr


def test_portable_without_npm_lists_the_other_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm here
    settings = _settings(tmp_path / "state").with_(cache_dir=tmp_path / "empty-cache")
    provider = PortableProvider(settings)
    assert not provider.availability().ok
    with pytest.raises(ProviderUnavailable) as raised:
        provider.start()
    assert "npm" in str(raised.value) and "--server local" in str(raised.value) and "LABKIT_DATABASE_URL" in str(raised.value)


def test_other_major_version_is_not_used_silently(tmp_path: Path) -> None:
    root = Path("/usr/lib/postgresql")
    old = [p for p in root.glob("*/bin") if not p.parent.name.startswith("16")] if root.exists() else []
    if not old:
        pytest.skip("no other PostgreSQL major version installed here")
    settings = Settings.load(server="local", pg_bin=str(old[0])).with_(state_dir=_state_dir(tmp_path / "s"), database_url=None)
    with pytest.raises(ProviderUnavailable, match="needs 16"):
        servers.choose(settings).start()
    allowed = settings.with_(allow_other_major=True)
    info = servers.choose(allowed).start()
    try:
        with info.connect() as conn:
            assert conn.info.server_version // 10000 == int(old[0].parent.name)
    finally:
        runtime.stop_server(allowed, delete_data=True)


# -- bad URLs -------------------------------------------------------------------------------
def test_malformed_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="postgresql://"):
        parse_url("mysql://user@host/db")
    with pytest.raises(ConfigError, match="not a number"):
        parse_url("postgresql://user@host:port/db")


def test_unreachable_url_says_nothing_answers(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings.load(server="url", database_url=f"postgresql://u:p@127.0.0.1:{port}/postgres").with_(state_dir=tmp_path)
    with pytest.raises(ConnectError, match="Nothing answers"):
        servers.choose(settings).start()


def test_wrong_password_is_named(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    with info.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS pwuser")
        conn.execute("CREATE ROLE pwuser LOGIN PASSWORD 'right'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
    original = hba.read_text()
    hba.write_text("host all pwuser 127.0.0.1/32 scram-sha-256\n" + original)
    try:
        with info.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)
        url = f"postgresql://pwuser:wrong@127.0.0.1:{info.port}/postgres"
        with pytest.raises(ConnectError, match="rejected the password for user 'pwuser'"):
            servers.choose(Settings.load(server="url", database_url=url).with_(state_dir=settings.state_dir)).start()
    finally:
        hba.write_text(original)
        with info.connect() as conn:
            conn.execute("SELECT pg_reload_conf()")


# -- a private cluster ---------------------------------------------------------------------
def test_cluster_is_private_safe_and_postgresql_16(cluster) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    with info.connect() as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'shared_preload_libraries', 'server_encoding', "
            "'server_version_num', 'data_directory', 'TimeZone')"
        ).fetchall())  # fmt: skip
        collate = conn.execute("SELECT datcollate FROM pg_database WHERE datname = 'postgres'").fetchone()
    assert settings["listen_addresses"] == "127.0.0.1"
    assert "pg_stat_statements" in settings["shared_preload_libraries"]
    assert settings["server_encoding"] == "UTF8" and collate == ("C",)
    assert int(settings["server_version_num"]) // 10000 == 16
    data = Path(settings["data_directory"])
    assert data.stat().st_mode & 0o777 == 0o700
    if IS_ROOT:
        assert data.stat().st_uid != 0  # PostgreSQL runs as an unprivileged user
        assert pwd.getpwuid(data.stat().st_uid).pw_name in ("postgres", "labkit")


def test_up_is_idempotent(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    again = runtime.ensure_server(settings)
    assert again.port == info.port
    assert runtime.current_server(settings) == again


def test_busy_explicit_port_is_refused(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, _ = cluster
    runtime.stop_server(settings)
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            busy = sock.getsockname()[1]
            with pytest.raises(ConfigError, match=f"Port {busy} .* already in use"):
                runtime.ensure_server(settings.with_(port=busy))
    finally:
        runtime.ensure_server(settings)


def test_killed_server_recovers_with_its_data(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, _ = cluster
    info = runtime.ensure_server(settings)
    with info.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survivor (x int)")
        conn.execute("INSERT INTO survivor VALUES (42)")
    provider = servers.provider("portable", settings)
    pid, _ = provider.cluster().pid_file()  # type: ignore[attr-defined,misc]
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    time.sleep(0.5)  # let the children notice
    assert (provider.cluster().paths.data / "postmaster.pid").exists()  # type: ignore[attr-defined]  # stale
    info = runtime.ensure_server(settings)
    with info.connect() as conn:
        assert conn.execute("SELECT x FROM survivor").fetchall() == [(42,)]


def test_pid_file_naming_another_live_process_is_stale(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, _ = cluster
    runtime.stop_server(settings)
    cluster_ = servers.provider("portable", settings).cluster()  # type: ignore[attr-defined]
    pid_file = cluster_.paths.data / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{cluster_.paths.data}\n0\n5432\n")
    info = runtime.ensure_server(settings)
    with info.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_data_directory_of_another_major_is_refused_untouched(tmp_path: Path) -> None:
    state = _state_dir(tmp_path / "s")
    settings = _settings(state)
    data = state / "pg16" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    (data / "precious").write_text("keep me")
    with pytest.raises(ServerStartError, match="made by PostgreSQL 15"):
        runtime.ensure_server(settings)
    (data / "PG_VERSION").unlink()
    with pytest.raises(ServerStartError, match="not a PostgreSQL data directory"):
        runtime.ensure_server(settings)
    assert (data / "precious").read_text() == "keep me"


def test_two_ups_at_once_start_one_server(tmp_path: Path) -> None:
    state = _state_dir(tmp_path / "s")
    env = _env(state)
    procs = [subprocess.Popen([*LABKIT, "up", "--no-data"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        urls = {line for out, _ in outputs for line in out.splitlines() if "connection:" in line}
        assert len(urls) == 1
    finally:
        _cli("down", "--delete-data", env=env)


def test_cli_status_down_and_exit_codes(tmp_path: Path) -> None:
    env = _env(_state_dir(tmp_path / "s"))
    assert _cli("status", env=env).returncode == 6
    assert _cli("up", "--no-data", env=env).returncode == 0
    status = _cli("status", env=env)
    assert status.returncode == 0 and "PostgreSQL 16" in status.stdout
    dsn = _cli("dsn", env=env).stdout.strip()
    assert dsn.startswith("postgresql://postgres@127.0.0.1:") and dsn.endswith("/shop")
    assert "Stopped" in _cli("down", env=env).stdout
    assert "was not running" in _cli("down", env=env).stdout
    assert _cli("status", env=env).returncode == 6
    _cli("down", "--delete-data", env=env)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch users")
def test_non_root_user_runs_the_lab_and_falls_back_from_a_read_only_project(tmp_path: Path) -> None:
    user = pwd.getpwnam("postgres") if "postgres" in {p.pw_name for p in pwd.getpwall()} else None
    if user is None:
        pytest.skip("no unprivileged user to run as")
    home = _state_dir(tmp_path / "home")
    os.chown(home, user.pw_uid, user.pw_gid)
    project = _state_dir(tmp_path / "project")  # owned by root: read-only for that user
    cache = Settings.load().cache_dir
    # The venv's interpreter usually links into root's private home; run the same code with the
    # system's Python 3.11 and the venv's packages instead (same ABI), as the unprivileged user.
    system_python = Path("/usr/bin/python3")
    if sys.version_info[:2] != (3, 11) or not system_python.exists():
        pytest.skip("needs a system Python matching the venv's")
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    project_root = str(Path(__file__).resolve().parent.parent)
    env = {**_env(home / "state"), "HOME": str(home), "LABKIT_CACHE_DIR": str(cache), "XDG_STATE_HOME": str(home / "xdg"),
           "PYTHONPATH": f"{project_root}:{site}"}  # fmt: skip
    run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": str(home), "python": str(system_python)}
    up = _cli("up", "--no-data", env=env, **run_as)
    try:
        assert up.returncode == 0, up.stderr
        assert _cli("status", env=env, **run_as).returncode == 0
    finally:
        _cli("down", "--delete-data", env=env, **run_as)
    env_ro = {k: v for k, v in env.items() if k != "LABKIT_DATA_DIR"} | {"LABKIT_PROJECT_DIR": str(project)}
    doctor = _cli("doctor", env=env_ro, **run_as)
    assert doctor.returncode == 0, doctor.stderr
    assert "read-only: fallback" in doctor.stdout and str(home / "xdg") in doctor.stdout


def test_lab_call_raises_when_the_lab_cannot_connect(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "import labkit\ntry:\n    labkit.lab()\nexcept labkit.LabkitError as e:\n    print('RAISED', type(e).__name__)\n"
    env = {**os.environ, "LABKIT_DATABASE_URL": f"postgresql://x@127.0.0.1:{port}/postgres"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "RAISED ConnectError" in out.stdout, out.stderr


def test_magic_in_a_kernel(server: ConnectionInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LABKIT_DATABASE_URL", server.url())
    nb = nbformat.v4.new_notebook()
    cells = [
        "import labkit\nlab = labkit.lab(load_data=False)",
        "%%sql\nSELECT '{\"a\": 1}'::jsonb -> 'a' AS a",
        "%sql DROP DATABASE IF EXISTS t_magic_db",
        "%sql CREATE DATABASE t_magic_db",
        "%%sql\nBEGIN;\nCREATE TABLE t_rolled_back (x int);\nROLLBACK;",
        "%sql SELECT to_regclass('t_rolled_back') IS NULL AS gone",
        "%sql \\dt pg_catalog.pg_am",
        "%sql DROP DATABASE t_magic_db",
    ]
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    text = [o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.outputs]
    assert any("| 1 |" in t for t in text)
    assert any("True" in t for t in text)
    assert any("pg_am" in t for t in text)
    failing = nbformat.v4.new_notebook()
    failing.cells = [nbformat.v4.new_code_cell(cells[0]), nbformat.v4.new_code_cell("%sql SELECT * FROM no_such_table")]
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="no_such_table"):
        NotebookClient(failing, kernel_name="python3", timeout=120).execute()


def test_psycopg_connection_info_round_trip(server: ConnectionInfo) -> None:
    again = parse_url(server.url())
    assert (again.host, again.port, again.user) == (server.host, server.port, server.user)
    with again.connect() as conn:
        assert isinstance(conn, psycopg.Connection)
