"""Shared fixtures: every test talks to a real PostgreSQL 16 started by labkit itself."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from labkit.config import Settings
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.url import parse_url


def pytest_sessionstart(session: pytest.Session) -> None:
    """pgvector in labkit's portable build before any notebook runs, so notebook 16's run shows no download
    (the stored output has none: it was fetched once, before)."""
    from labkit.errors import LabkitError
    from labkit.servers import extra, pgvector

    settings = Settings.load()
    with contextlib.suppress(LabkitError):  # a PostgreSQL labkit did not fetch is left as it is
        pgvector.ensure(extra.lab_install(settings), settings)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The project's own settings (the same lab server a learner gets)."""
    return Settings.load()


@pytest.fixture(scope="session")
def server(settings: Settings) -> ConnectionInfo:
    """A running PostgreSQL 16: LABKIT_TEST_URL if set, else the lab server labkit starts."""
    if url := os.environ.get("LABKIT_TEST_URL"):
        return parse_url(url)
    return lifecycle.ensure_server(settings)


@pytest.fixture(scope="session")
def shop(server: ConnectionInfo, settings: Settings) -> ConnectionInfo:
    """The server with the shop database loaded at the default scale."""
    from labkit.exercises import shuffled
    from labkit.shop import database

    with lifecycle.locked(settings):
        database.ensure_shop(server, scale=settings.scale, progress=False)
    shuffled.ensure(server)  # the copy in another physical order the checks also use, made once up front (about 10 s)
    return server


def _test_db_name(request: pytest.FixtureRequest) -> str:
    return "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]


@contextlib.contextmanager
def _throwaway_db(server: ConnectionInfo, name: str, options: str = "") -> Iterator[str]:
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" {options}')
    try:
        yield name
    finally:
        with server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_db(server: ConnectionInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database for one test, dropped afterwards."""
    with _throwaway_db(server, _test_db_name(request)) as name:
        yield name


@pytest.fixture
def shop_tables_db(server: ConnectionInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with the shop's tables as the load finds them (no keys or indexes from the finish stage), dropped afterwards."""
    from labkit.shop import schema

    with _throwaway_db(server, _test_db_name(request), "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'") as name:
        with server.connect(name) as conn:
            schema.apply_schema(conn)
        yield name
