"""What every server provider hands back: how to reach a running PostgreSQL."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg

MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class ConnectionInfo:
    """Where a running PostgreSQL server listens and who we connect as.

    ``host`` is a name or address, or a Unix-socket folder (a path starting with ``/``).
    ``system_identifier`` is set for labkit's own clusters: the server must report the same one."""

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)  # never shown: not in repr, URLs can hide it
    provider: str = "url"
    maintenance_db: str = MAINTENANCE_DB
    system_identifier: int | None = None

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def url(self, dbname: str | None = None, *, hide_password: bool = False) -> str:
        """A ``postgresql://`` URL for ``dbname`` (the maintenance database if omitted).

        A socket folder goes in the ``host`` query parameter, the form libpq, psql and SQLAlchemy all read."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + ("****" if hide_password else quote(self.password, safe=""))
        path = quote(dbname or self.maintenance_db, safe="")
        if self.is_socket:
            return f"postgresql://{auth}@/{path}?host={quote(self.host, safe='')}&port={self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{path}"

    def display(self) -> str:
        """Where the server is, for messages: ``host:port`` or the socket folder and port."""
        return f"socket {self.host} port {self.port}" if self.is_socket else f"{self.host}:{self.port}"

    def sqlalchemy_url(self, dbname: str | None = None) -> str:
        """The same URL spelled for SQLAlchemy with the psycopg 3 driver."""
        return self.url(dbname).replace("postgresql://", "postgresql+psycopg://", 1)

    def connect(self, dbname: str | None = None, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection:
        """Open a psycopg connection to ``dbname``."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.maintenance_db,
            autocommit=autocommit,
            connect_timeout=kwargs.pop("connect_timeout", 5),
            **kwargs,
        )

    def without_password(self) -> ConnectionInfo:
        return ConnectionInfo(**{**asdict(self), "password": None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConnectionInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Availability:
    """Whether a provider can run here, with the reason or the version found."""

    ok: bool
    detail: str


class Provider:
    """Where PostgreSQL comes from. Subclasses implement all four methods."""

    name = "provider"

    def availability(self) -> Availability:
        """Cheap check: could ``start`` work here? Never starts anything."""
        raise NotImplementedError

    def start(self) -> ConnectionInfo:
        """Start (or attach to) the server and return how to reach it. Idempotent."""
        raise NotImplementedError

    def stop(self) -> bool:
        """Stop what this provider started. True if something was stopped."""
        raise NotImplementedError

    def status(self) -> ConnectionInfo | None:
        """How to reach the server if it is running now, else None."""
        raise NotImplementedError
