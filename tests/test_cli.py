"""The ``labkit`` command as a learner runs it: a subprocess with its own environment and state folder.

up/status/dsn/down are idempotent, exit codes are stable (0 ok, 2 config, 3 provider, 6 not
running), and two ``labkit up`` at once start a single server.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from helpers_servers import LABKIT, labkit, postmasters, reachable, state_env, stopped_afterwards

from labkit.errors import ConfigError, NotRunning, ProviderUnavailable


@pytest.fixture
def state(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh state folder; whatever a test started in it is stopped and deleted afterwards."""
    with stopped_afterwards(reachable(tmp_path / "state"), state_env(tmp_path / "state", LABKIT_SERVER="portable")) as folder:
        yield folder


def _env(state: Path, **extra: str) -> dict[str, str]:
    return state_env(state, LABKIT_SERVER="portable", **extra)


def _port(up: subprocess.CompletedProcess[str]) -> int:
    line = next(x for x in up.stdout.splitlines() if "connection:" in x)
    return int(line.rsplit(":", 1)[1].split("/")[0])


def test_up_twice_is_one_server_on_one_port(state: Path) -> None:
    env = _env(state)
    first = labkit("up", "--no-data", env=env)
    assert first.returncode == 0, first.stderr
    assert "PostgreSQL is up (portable provider)." in first.stdout
    assert "connection:  postgresql://postgres:****@127.0.0.1:" in first.stdout and "labkit psql" in first.stdout
    [pid] = postmasters(state)
    second = labkit("up", "--no-data", env=env)
    assert second.returncode == 0, second.stderr
    assert "PostgreSQL is up (portable provider; it was already running, labkit attached to it)." in second.stdout
    assert _port(second) == _port(first)
    assert postmasters(state) == [pid]  # the same postmaster, not a second one
    saved = json.loads((state / "state.json").read_text())
    assert saved["provider"] == "portable" and saved["connection"]["port"] == _port(first)


def test_status_dsn_and_down_are_idempotent(state: Path) -> None:
    env = _env(state)
    status = labkit("status", env=env)
    assert status.returncode == NotRunning.exit_code == 6
    assert "not running" in status.stdout and "labkit up" in status.stdout
    dsn = labkit("dsn", env=env)
    assert dsn.returncode == 6 and "labkit up" in dsn.stderr
    assert labkit("up", "--no-data", env=env).returncode == 0
    for _ in range(2):
        status = labkit("status", env=env)
        assert status.returncode == 0, status.stderr
        assert "running: PostgreSQL 16." in status.stdout and "via portable at 127.0.0.1:" in status.stdout
        assert "shop database: not loaded" in status.stdout
    dsn = labkit("dsn", env=env).stdout.strip()  # the owner asked: the password is in it
    password = (state / "pg16" / "password").read_text().strip()
    assert dsn.startswith(f"postgresql://postgres:{password}@127.0.0.1:") and dsn.endswith("/shop")
    alchemy = labkit("dsn", "--sqlalchemy", "--db", "postgres", env=env).stdout.strip()
    assert alchemy.startswith(f"postgresql+psycopg://postgres:{password}@127.0.0.1:") and alchemy.endswith("/postgres")
    with psycopg.connect(labkit("dsn", "--db", "postgres", env=env).stdout.strip()) as conn:
        assert conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone() == (16,)
    first = labkit("down", env=env)
    assert first.returncode == 0 and first.stdout.strip() == "Stopped the portable server."
    assert postmasters(state) == []
    second = labkit("down", env=env)
    assert second.returncode == 0 and second.stdout.strip() == "The portable server was not running."
    assert labkit("status", env=env).returncode == 6
    assert (state / "pg16" / "data" / "PG_VERSION").is_file()  # plain down keeps the data


def test_down_delete_data_removes_the_cluster(state: Path) -> None:
    env = _env(state)
    assert labkit("up", "--no-data", env=env).returncode == 0
    with psycopg.connect(labkit("dsn", "--db", "postgres", env=env).stdout.strip(), autocommit=True) as conn:
        conn.execute("CREATE TABLE doomed (x int)")
    down = labkit("down", "--delete-data", env=env)
    assert down.returncode == 0 and "Stopped the portable server." in down.stdout and "Deleted its data" in down.stdout
    assert postmasters(state) == []
    assert not (state / "pg16").exists() and not (state / "state.json").exists()
    assert labkit("down", "--delete-data", env=env).returncode == 0  # nothing left: still fine
    up = labkit("up", "--no-data", env=env)  # a fresh cluster: the table is gone
    assert up.returncode == 0, up.stderr
    with psycopg.connect(labkit("dsn", "--db", "postgres", env=env).stdout.strip()) as conn:
        assert conn.execute("SELECT to_regclass('doomed')").fetchone() == (None,)


def test_down_without_any_server_says_so(tmp_path: Path) -> None:
    env = state_env(reachable(tmp_path / "state"))
    down = labkit("down", env=env)
    assert down.returncode == 0 and "No lab server was started from this project." in down.stdout


def test_a_restart_keeps_the_port(state: Path) -> None:
    env = _env(state)
    port = _port(labkit("up", "--no-data", env=env))
    assert labkit("down", env=env).returncode == 0
    again = labkit("up", "--no-data", env=env)
    assert again.returncode == 0 and _port(again) == port


def test_two_ups_at_once_start_one_server(state: Path) -> None:
    env = _env(state)
    procs = [subprocess.Popen([*LABKIT, "up", "--no-data"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
             for _ in range(3)]  # fmt: skip
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    urls = {line.strip() for out, _ in outputs for line in out.splitlines() if "connection:" in line}
    assert len(urls) == 1, urls
    assert len(postmasters(state)) == 1
    assert any("waiting" in err for _, err in outputs)  # the others waited for the first one's lock


def test_doctor_lists_every_provider_with_a_reason(tmp_path: Path) -> None:
    env = state_env(reachable(tmp_path / "state"))
    started = time.monotonic()
    doctor = labkit("doctor", env=env)
    assert doctor.returncode == 0, doctor.stderr
    assert time.monotonic() - started < 20
    lines = doctor.stdout.splitlines()
    rows = [x for x in lines if x.startswith("  [")]
    assert [r.split("]")[1].split()[0] for r in rows] == ["url", "local", "docker", "portable"]
    for row in rows:
        assert row.startswith(("  [ok ]", "  [no ]")) and len(row.split("]", 1)[1].split(None, 1)) == 2, row  # a reason each
    assert f"state:    {tmp_path / 'state'}" in doctor.stdout
    assert "auto would use: " in doctor.stdout and "running:  no lab server" in doctor.stdout
    url_row = next(r for r in rows if "] url" in r)
    assert "[no ]" in url_row and "LABKIT_DATABASE_URL / DATABASE_URL not set" in url_row
    for package in ("jupysql", "pgspecial", "psycopg"):
        assert f"  {package}:" in doctor.stdout


def test_doctor_reports_the_running_server(state: Path) -> None:
    env = _env(state)
    up = labkit("up", "--no-data", env=env)
    assert up.returncode == 0, up.stderr
    doctor = labkit("doctor", env=env)
    assert doctor.returncode == 0
    assert "running:  PostgreSQL 16." in doctor.stdout and f"via portable at 127.0.0.1:{_port(up)}" in doctor.stdout


def test_unknown_server_choice_is_a_config_error(tmp_path: Path) -> None:
    result = labkit("up", "--no-data", env=state_env(reachable(tmp_path / "state"), LABKIT_SERVER="kubernetes"))
    assert result.returncode == ConfigError.exit_code == 2
    assert "Unknown server choice 'kubernetes'" in result.stderr and "auto, url, local, docker, portable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LABKIT_PORT", "not-a-port", "LABKIT_PORT='not-a-port' is not a port number"),
    ("LABKIT_PORT", "70000", "Port 70000 is out of range: not a TCP port"),
    ("LABKIT_PORT", "80", "Port 80 is out of range: a privileged port"),
    ("LABKIT_PORT", "0", "Port 0 is out of range"),
    ("LABKIT_PORT", "-5432", "LABKIT_PORT='-5432' is not a port number"),
    ("LABKIT_PORT", "5432.5", "LABKIT_PORT='5432.5' is not a port number"),
    ("LABKIT_PG_BIN", "/nonexistent", "LABKIT_PG_BIN=/nonexistent is not a folder"),
    ("LABKIT_PG_BIN", "/tmp", "LABKIT_PG_BIN=/tmp has no postgres, pg_ctl, initdb"),
    ("LABKIT_SCALE", "0", "Scale must be positive"),
])  # fmt: skip
def test_bad_numbers_are_config_errors(tmp_path: Path, variable: str, value: str, message: str) -> None:
    state = reachable(tmp_path / "state")
    result = labkit("up", "--no-data", env=state_env(state, **{variable: value}))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert postmasters(state) == [] and not (state / "pg16").exists()
    doctor = labkit("doctor", env=state_env(state, **{variable: value}))
    assert doctor.returncode == 2 and message in doctor.stderr


def test_invalid_labkit_toml_is_a_config_error(tmp_path: Path) -> None:
    project = reachable(tmp_path / "project")
    (project / "labkit.toml").write_text("server = \n")
    result = labkit("doctor", env=state_env(reachable(tmp_path / "state"), LABKIT_PROJECT_DIR=str(project)))
    assert result.returncode == 2 and "labkit.toml is not valid TOML" in result.stderr


def test_labkit_toml_chooses_the_server(tmp_path: Path) -> None:
    project = reachable(tmp_path / "project")
    (project / "labkit.toml").write_text('server = "docker"\n')
    env = state_env(reachable(tmp_path / "state"), LABKIT_PROJECT_DIR=str(project), DOCKER_HOST="unix:///nonexistent.sock")
    doctor = labkit("doctor", env=env)
    assert "server:   docker" in doctor.stdout
    up = labkit("up", "--no-data", env=env)
    assert up.returncode == ProviderUnavailable.exit_code and "No Docker engine answers" in up.stderr
