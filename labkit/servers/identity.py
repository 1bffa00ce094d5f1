"""Is the server that answers really this project's own? Compare PostgreSQL's system identifier.

Every cluster gets a random 64-bit identifier at initdb (stored in ``global/pg_control``);
labkit reads it from the data directory and the server reports it in ``pg_control_system()``.
Call :func:`check_own_server` before anything destructive (a reset, a rebuild).
"""

from __future__ import annotations

import psycopg

from labkit.errors import ForeignServer
from labkit.servers.base import ConnectionInfo


def server_identifier(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    return int(row[0])  # type: ignore[index]


def check_own_server(info: ConnectionInfo, conn: psycopg.Connection | None = None) -> None:
    """Raise ForeignServer unless the server behind ``info`` is the cluster ``info`` was made for.

    A no-op for servers labkit does not run itself (``url`` and ``docker``: no identifier is known)."""
    if info.system_identifier is None:
        return
    if conn is None:
        with info.connect() as own:
            found = server_identifier(own)
    else:
        found = server_identifier(conn)
    if found != info.system_identifier:
        raise ForeignServer(
            f"The server at {info.display()} is not this project's lab server (its system identifier is {found}, "
            f"this project's cluster has {info.system_identifier}): another PostgreSQL took the port.",
            "Nothing was changed. Run 'labkit up' (or restart the notebook kernel) to reach this project's own server.",
        )
