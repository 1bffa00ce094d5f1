"""Shared fixtures: every test talks to a real PostgreSQL 16 started by labkit itself."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from labkit.config import Settings
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.servers.url import parse_url


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


@pytest.fixture
def scratch_db(server: ConnectionInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database for one test, dropped afterwards."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
