"""Providers against real servers: which one auto picks and why, what a started cluster looks like,
runs as root and as a normal user, other binaries, and the lab inside a real IPython kernel.

Each server here lives in a temporary state folder of its own; fixtures stop it afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psycopg
import pytest
from helpers_servers import (
    IS_ROOT,
    clean_env,
    free_port,
    labkit,
    postmasters,
    process_uid,
    reachable,
    run_as_user,
    settings_for,
    shutdown,
    state_env,
    stopped_afterwards,
    user_with_python,
)
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labkit import servers
from labkit.config import Settings
from labkit.errors import ProviderUnavailable
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import REQUIRED_MAJOR, find_installs, probe
from labkit.servers.docker import engine_client
from labkit.servers.portable import PortableProvider
from labkit.servers.url import parse_url

OTHER_MAJOR_BINS = sorted(p for p in Path("/usr/lib/postgresql").glob("*/bin") if not p.parent.name.startswith(str(REQUIRED_MAJOR)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, ConnectionInfo]]:
    """One private PostgreSQL 16 for this module, started by the portable provider."""
    state = reachable(tmp_path_factory.mktemp("servers") / "state")
    settings = settings_for(state)
    try:
        info = lifecycle.ensure_server(settings)
        yield settings, info
    finally:
        shutdown(settings)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This test's process environment, with no LABKIT_*/DATABASE_URL/DOCKER_HOST from the caller."""
    for name in list(os.environ):
        if name.startswith("LABKIT_") or name in {"DATABASE_URL", "DOCKER_HOST"}:
            monkeypatch.delenv(name)
    return monkeypatch


def _docker_engine_answers() -> bool:
    try:
        engine_client(timeout=2)
    except ProviderUnavailable:
        return False
    return True


def _has_local_16() -> bool:
    return any(i.major == REQUIRED_MAJOR for i in find_installs(None))


def _portable_bin() -> Path:
    install = PortableProvider(settings_for(Path("/nonexistent"))).install()
    return install.bindir


# -- provider selection -------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["DATABASE_URL", "LABKIT_DATABASE_URL"])
def test_auto_uses_a_database_url_when_one_is_set(cluster, env: pytest.MonkeyPatch, tmp_path: Path, variable: str) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    env.setenv(variable, info.url())
    env.setenv("LABKIT_DATA_DIR", str(tmp_path / "state"))
    settings = Settings.load()
    assert settings.server == "auto" and settings.database_url == info.url()
    chosen = servers.choose(settings)
    assert chosen.name == "url"
    attached = chosen.start()
    assert (attached.host, attached.port, attached.provider) == (info.host, info.port, "url")
    assert not (tmp_path / "state" / "pg16").exists()  # nothing of its own was started


def test_database_url_via_cli_attaches_and_is_never_stopped(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    env = state_env(reachable(tmp_path / "state"), DATABASE_URL=info.url())
    up = labkit("up", "--no-data", env=env)
    assert up.returncode == 0, up.stderr
    assert "(url provider)" in up.stdout and f":{info.port}/shop" in up.stdout
    status = labkit("status", env=env)
    assert status.returncode == 0 and f"via url at 127.0.0.1:{info.port}" in status.stdout
    down = labkit("down", env=env)
    assert down.returncode == 0 and "does not stop it" in down.stdout
    with info.connect() as conn:  # still running
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_auto_without_url_skips_local_15_and_docker_and_picks_portable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if _has_local_16() or _docker_engine_answers():
        pytest.skip("this machine has PostgreSQL 16 or a Docker engine: auto would rightly pick those")
    env.setenv("LABKIT_DATA_DIR", str(tmp_path / "state"))
    settings = Settings.load()
    survey = dict(servers.survey(settings))
    assert list(survey) == ["url", "local", "docker", "portable"]
    assert not survey["url"].ok and "not set" in survey["url"].detail
    assert not survey["local"].ok
    if OTHER_MAJOR_BINS:
        other = probe(OTHER_MAJOR_BINS[0], "test")
        assert other is not None
        assert f"found PostgreSQL {other.version}" in survey["local"].detail and "needs 16" in survey["local"].detail
        assert "LABKIT_ALLOW_OTHER_MAJOR=1" in survey["local"].detail
    assert not survey["docker"].ok and "No Docker engine answers" in survey["docker"].detail
    assert survey["portable"].ok
    assert servers.choose(settings).name == "portable"


@pytest.mark.skipif(not OTHER_MAJOR_BINS, reason="no other PostgreSQL major version installed")
def test_local_refuses_another_major_without_the_flag(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("LABKIT_PG_BIN", str(OTHER_MAJOR_BINS[0]))
    state = reachable(tmp_path / "state")
    result = labkit("up", "--server", "local", "--no-data", env=state_env(state, LABKIT_PG_BIN=str(OTHER_MAJOR_BINS[0])))
    assert result.returncode == ProviderUnavailable.exit_code, result.stderr
    assert "needs 16" in result.stderr and "LABKIT_ALLOW_OTHER_MAJOR=1" in result.stderr
    assert not any(state.glob("pg*")) and postmasters(state) == []


@pytest.mark.skipif(not OTHER_MAJOR_BINS, reason="no other PostgreSQL major version installed")
@pytest.mark.parametrize("how", ["env", "flag"])
def test_local_runs_another_major_when_allowed(tmp_path: Path, how: str) -> None:
    bindir = OTHER_MAJOR_BINS[-1]
    major = int(bindir.parent.name)
    state = reachable(tmp_path / "state")
    env = state_env(state, LABKIT_PG_BIN=str(bindir), LABKIT_SERVER="local")
    flag = ["--allow-other-major"] if how == "flag" else []
    if how == "env":
        env["LABKIT_ALLOW_OTHER_MAJOR"] = "1"
    with stopped_afterwards(state, env):
        up = labkit("up", "--no-data", *flag, env=env)
        assert up.returncode == 0, up.stderr
        assert "(local provider)" in up.stdout
        dsn = labkit("dsn", "--db", "postgres", *flag, env=env)
        assert dsn.returncode == 0, dsn.stderr
        with psycopg.connect(dsn.stdout.strip()) as conn:
            assert conn.info.server_version // 10000 == major
            data_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        assert data_dir == state / f"pg{major}" / "data"
        [pid] = postmasters(state)
        assert Path(f"/proc/{pid}/exe").resolve().parent == bindir.resolve()
        if IS_ROOT:
            assert process_uid(pid) != 0 and data_dir.stat().st_uid == process_uid(pid)


def test_local_runs_the_portable_build_named_by_labkit_pg_bin(tmp_path: Path) -> None:
    """The portable binaries find their own libraries (RUNPATH $ORIGIN/../lib): no LD_LIBRARY_PATH needed."""
    bindir = _portable_bin()
    state = reachable(tmp_path / "state")
    env = state_env(state, LABKIT_PG_BIN=str(bindir), LABKIT_SERVER="local")
    env.pop("LD_LIBRARY_PATH", None)
    with stopped_afterwards(state, env):
        doctor = labkit("doctor", env=env)
        assert "[ok ] local     PostgreSQL 16." in doctor.stdout and "(LABKIT_PG_BIN)" in doctor.stdout, doctor.stdout
        up = labkit("up", "--no-data", env=env)
        assert up.returncode == 0, up.stderr
        assert "(local provider)" in up.stdout
        [pid] = postmasters(state)
        assert Path(f"/proc/{pid}/exe").resolve().parent == bindir.resolve()
        status = labkit("status", env=env)
        assert status.returncode == 0 and "PostgreSQL 16." in status.stdout and "via local" in status.stdout


# -- what a started cluster looks like ------------------------------------------------------------
def test_cluster_settings_are_the_course_defaults(cluster) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    with info.connect() as conn:
        setting = dict(conn.execute("SELECT name, setting FROM pg_settings").fetchall())  # type: ignore[arg-type]
        datcollate, datctype, encoding = conn.execute(
            "SELECT datcollate, datctype, pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        ).fetchone()  # type: ignore[misc]
    assert setting["listen_addresses"] == "127.0.0.1"
    assert "pg_stat_statements" in setting["shared_preload_libraries"].split(",")
    assert setting["server_encoding"] == "UTF8" and encoding == "UTF8"
    assert (datcollate, datctype) == ("C", "C")
    assert setting["server_version"].startswith("16.")
    assert int(setting["server_version_num"]) // 10000 == 16
    assert setting["TimeZone"] == "UTC"


def test_root_runs_the_server_as_an_unprivileged_owner_of_a_private_data_dir(cluster) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    with info.connect() as conn:
        data = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    assert data == settings.state_dir / "pg16" / "data"
    [pid] = postmasters(settings.state_dir)
    assert int((data / "postmaster.pid").read_text().split()[0]) == pid
    stat = data.stat()
    assert stat.st_mode & 0o777 == 0o700
    assert stat.st_uid == process_uid(pid)
    if IS_ROOT:
        assert process_uid(pid) != 0
        assert pwd.getpwuid(process_uid(pid)).pw_name in ("postgres", "labkit")
    else:
        assert process_uid(pid) == os.geteuid()


def test_server_answers_on_loopback_only(cluster) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    listening = _listening_addresses(info.port)
    assert listening == {"127.0.0.1"}, listening


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:
                continue
            if width == 8:
                found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add("::" if set(address) == {"0"} else address)
    return found


# -- as a normal user -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def normal_user() -> tuple[str, list[str], dict[str, str]]:
    found = user_with_python()
    PortableProvider(settings_for(Path("/nonexistent"))).install()  # cached once, readable by everyone
    return found


def _user_env(home: Path, python_env: dict[str, str], **extra: str) -> dict[str, str]:
    cache = PortableProvider(settings_for(Path("/nonexistent"))).settings.cache_dir
    return clean_env(HOME=str(home), XDG_STATE_HOME=str(home / "state"), LABKIT_CACHE_DIR=str(cache), **python_env, **extra)


def test_non_root_user_runs_the_lab(normal_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    user, python, python_env = normal_user
    entry = pwd.getpwnam(user)
    home = reachable(tmp_path / "home", owner=user)
    state = home / "lab"
    env = _user_env(home, python_env, LABKIT_DATA_DIR=str(state))
    try:
        up = run_as_user(user, python, ["up", "--no-data", "--server", "portable"], env)
        assert up.returncode == 0, up.stderr
        [pid] = postmasters(state)
        assert process_uid(pid) == entry.pw_uid
        assert (state / "pg16" / "data").stat().st_uid == entry.pw_uid
        assert (state / "state.json").stat().st_uid == entry.pw_uid
        password = state / "pg16" / "password"
        assert password.stat().st_uid == entry.pw_uid and password.stat().st_mode & 0o777 == 0o600
        assert json.loads((state / "state.json").read_text())["connection"].get("password") is None  # never in state.json
        status = run_as_user(user, python, ["status"], env)
        assert status.returncode == 0 and "PostgreSQL 16." in status.stdout, status.stderr
        dsn = run_as_user(user, python, ["dsn", "--db", "postgres"], env)
        assert dsn.returncode == 0, dsn.stderr
        with psycopg.connect(dsn.stdout.strip()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        down = run_as_user(user, python, ["down"], env)
        assert down.returncode == 0 and "Stopped the portable server." in down.stdout, down.stderr
        assert postmasters(state) == []
        assert run_as_user(user, python, ["status"], env).returncode == 6
    finally:
        run_as_user(user, python, ["down", "--delete-data"], env, timeout=60)
        assert postmasters(state) == []


def test_read_only_project_folder_falls_back_to_the_users_state_folder(normal_user, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    user, python, python_env = normal_user
    home = reachable(tmp_path / "home", owner=user)
    project = reachable(tmp_path / "project")  # root's: the user may read it, not write it
    env = _user_env(home, python_env, LABKIT_PROJECT_DIR=str(project), LABKIT_SERVER="portable")
    doctor = run_as_user(user, python, ["doctor"], env)
    assert doctor.returncode == 0, doctor.stderr
    line = next(x for x in doctor.stdout.splitlines() if x.startswith("state:"))
    assert "read-only: fallback" in line
    fallback = Path(line.split()[1])
    assert fallback.parent == home / "state" / "labkit" and fallback.name.startswith("project-")
    try:
        up = run_as_user(user, python, ["up", "--no-data"], env)
        assert up.returncode == 0, up.stderr
        assert f"keeping the server in {fallback}" in up.stderr
        assert postmasters(fallback) and (fallback / "pg16" / "data" / "PG_VERSION").is_file()
        assert not (project / ".labkit").exists()
        assert run_as_user(user, python, ["status"], env).returncode == 0
    finally:
        run_as_user(user, python, ["down", "--delete-data"], env, timeout=60)
    assert postmasters(fallback) == [] and not (fallback / "pg16").exists()


# -- the lab in a real IPython kernel -------------------------------------------------------------
def _run_notebook(path: Path, *sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture
def kernel_env(cluster, env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:  # type: ignore[no-untyped-def]
    """The kernel inherits this environment: it attaches to this module's cluster."""
    settings, _ = cluster
    env.setenv("LABKIT_DATA_DIR", str(settings.state_dir))
    env.setenv("LABKIT_SERVER", "portable")
    return env


def test_sql_magic_in_a_kernel(cluster, kernel_env: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, info = cluster
    with info.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS magic_made_db")
        conn.execute("DROP TABLE IF EXISTS magic_rolled_back, magic_listed")
    try:
        nb = _run_notebook(
            tmp_path / "magic.ipynb",
            "import labkit\nlab = labkit.lab(load_data=False)\nprint(lab.info.port, lab.dbname)",
            "%sql SELECT '{\"a\":1}'::jsonb AS doc, '{\"b\": [1, 2]}'::json -> 'b' AS arr",
            "%sql CREATE DATABASE magic_made_db",
            "%%sql\nBEGIN;\nCREATE TABLE magic_rolled_back (x int);\nINSERT INTO magic_rolled_back VALUES (1);\nROLLBACK;",
            "%sql CREATE TABLE magic_listed (id int PRIMARY KEY)",
            "%sql \\dt magic_*",
            "%sql SELECT 'Sports%' LIKE 'Sport%' AS matches",
            "%%sql\nSELECT 'it''s 100% done' AS note",
            "display(lab, lab.info, lab.url, lab.engine, lab.engine.url)\nprint(lab.info, lab.url)",
        )
        assert _text(nb.cells[0]).strip().splitlines()[-1].split() == [str(info.port), "postgres"]  # after labkit.lab()'s own line
        assert '{"a": 1}' in _text(nb.cells[1]) and "[1, 2]" in _text(nb.cells[1])
        assert "magic_listed" in _text(nb.cells[5]) and "magic_rolled_back" not in _text(nb.cells[5])
        assert "True" in _text(nb.cells[6])
        assert "it's 100% done" in _text(nb.cells[7])
        assert info.password and "postgres:****@" in _text(nb.cells[8])
        assert info.password not in nbformat.writes(nb)  # no stored output can carry the lab's password
        with info.connect() as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'magic_made_db'").fetchone() == (1,)
            assert conn.execute("SELECT to_regclass('magic_rolled_back')").fetchone() == (None,)
            assert conn.execute("SELECT to_regclass('magic_listed')::text").fetchone() == ("magic_listed",)
    finally:
        with info.connect() as conn:
            conn.execute("DROP DATABASE IF EXISTS magic_made_db WITH (FORCE)")
            conn.execute("DROP TABLE IF EXISTS magic_rolled_back, magic_listed")


def test_a_failing_sql_cell_fails_the_notebook(kernel_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(CellExecutionError) as raised:
        _run_notebook(
            tmp_path / "failing.ipynb",
            "import labkit\nlab = labkit.lab(load_data=False)",
            "%sql SELECT * FROM no_such_table",
            "print('not reached')",
        )
    assert raised.value.ename == "ProgrammingError"
    assert 'relation "no_such_table" does not exist' in raised.value.evalue


def test_lab_reconnects_after_the_server_was_killed(cluster, kernel_env: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, info = cluster
    with info.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kernel_survivor (x int)")
        conn.execute("TRUNCATE kernel_survivor")
        conn.execute("INSERT INTO kernel_survivor VALUES (7)")
    data = settings.state_dir / "pg16" / "data"
    try:
        nb = _run_notebook(
            tmp_path / "killed.ipynb",
            "import labkit, os, signal, time\nlab = labkit.lab(load_data=False)",
            "%sql SELECT count(*) AS n FROM kernel_survivor",
            f"pid = int(open({str(data / 'postmaster.pid')!r}).readline())\nos.kill(pid, signal.SIGKILL)\n"
            "while os.path.exists(f'/proc/{pid}') and open(f'/proc/{pid}/stat').read().split(')')[-1].split()[0] != 'Z':\n"
            "    time.sleep(0.01)",
            "lab = labkit.lab(load_data=False)\nprint(lab.info.port)",
            "%sql SELECT x FROM kernel_survivor",
        )
        assert "7" in _text(nb.cells[4])
        assert _text(nb.cells[3]).strip().splitlines()[-1] == str(info.port)  # same port as before the crash
        assert len(postmasters(settings.state_dir)) == 1
    finally:
        again = lifecycle.ensure_server(settings)
        assert again.port == info.port  # the module fixture keeps using this cluster


def test_lab_raises_a_real_error_when_it_cannot_connect(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("LABKIT_DATABASE_URL", f"postgresql://student@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(CellExecutionError) as raised:
        _run_notebook(tmp_path / "dead.ipynb", "import labkit\nlab = labkit.lab(load_data=False)", "print('not reached')")
    assert raised.value.ename == "ConnectError"  # a real exception, not JupySQL's UsageError printout
    assert "Nothing answers at 127.0.0.1:" in raised.value.evalue


def test_connection_url_round_trips(server: ConnectionInfo) -> None:
    again = parse_url(server.url())
    assert (again.host, again.port, again.user) == (server.host, server.port, server.user)
    with again.connect() as conn:
        assert conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone() == (16,)
