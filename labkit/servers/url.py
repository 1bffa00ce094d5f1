"""The ``url`` provider: an existing server named by LABKIT_DATABASE_URL or DATABASE_URL."""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict

from labkit.config import Settings
from labkit.errors import ConfigError, ConnectError, ProviderUnavailable
from labkit.servers.base import Availability, ConnectionInfo, Provider
from labkit.servers.binaries import REQUIRED_MAJOR

ENCODE_HINT = (
    "Percent-encode special characters in the user name and password (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F, "
    "% as %25); python3 -c \"import urllib.parse, getpass; print(urllib.parse.quote(getpass.getpass(), safe=''))\" "
    "prints the encoded form of a password you type."
)


def parse_url(url: str) -> ConnectionInfo:
    """Turn a PostgreSQL URL into ConnectionInfo, with a clear error if it is malformed."""
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ConfigError(
            f"The database URL {_mask(url)!r} does not start with postgresql://.",
            "Use the form postgresql://USER:PASSWORD@HOST:PORT/DBNAME.",
        )
    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if authority.count("@") > 1:
        raise ConfigError(
            f"The database URL {_mask(url)!r} has more than one '@' before the host: an '@' in the password "
            "(or user name) must be written %40.",
            ENCODE_HINT,
        )
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"The database URL {_mask(url)!r} is malformed: {_hide_password(str(exc).strip(), url)}",
            "Use postgresql://USER:PASSWORD@HOST:PORT/DBNAME.",
        ) from None  # libpq's own message (and so the chained exception) quotes the whole URL
    try:
        port = int(parts.get("port") or 5432)
    except ValueError as exc:
        raise ConfigError(
            f"The port in {_mask(url)!r} is not a number.",
            "Use postgresql://USER@HOST:5432/DBNAME. If the password contains / : @ # or ?, that is the cause: " + ENCODE_HINT,
        ) from exc
    dbname = str(parts.get("dbname") or "postgres")
    return ConnectionInfo(
        host=str(parts.get("host") or ""),  # none: libpq's default Unix socket, resolved on connect
        port=port,
        user=str(parts.get("user") or "postgres"),
        password=str(parts["password"]) if parts.get("password") else None,
        provider="url",
        maintenance_db="postgres" if dbname == "shop" else dbname,
    )


def _mask(url: str) -> str:
    """The URL with any password replaced, safe to print."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":****"
        return f"{scheme}://{creds}@{host}"
    return url


def _hide_password(text: str, url: str) -> str:
    """``text`` (an error message about ``url``) with the URL's password masked wherever it appears."""
    text = text.replace(url, _mask(url))
    if "@" in url and "://" in url:
        creds = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in creds and (password := creds.split(":", 1)[1]):
            text = text.replace(password, "****")
    return text


def explain_connect_error(info: ConnectionInfo, exc: psycopg.OperationalError) -> ConnectError:
    """Translate libpq's message into what the learner should do."""
    text = str(exc).strip()
    where = info.display() if info.host else "the default Unix socket"
    if "password authentication failed" in text or "no password supplied" in text:
        return ConnectError(
            f"The server at {where} rejected the password for user {info.user!r}.", "Check the user and password in LABKIT_DATABASE_URL."
        )
    if match := re.search(r'role "(.*?)" does not exist', text):
        return ConnectError(f"The server at {where} has no role {match.group(1)!r}.", "Check the user name in LABKIT_DATABASE_URL.")
    if match := re.search(r'database "(.*?)" does not exist', text):
        return ConnectError(
            f"The server at {where} has no database {match.group(1)!r}.", "Put an existing database (e.g. postgres) in the URL's path."
        )
    if "Connection refused" in text or "could not connect" in text or "timeout" in text.lower():
        why = "connection refused" if "refused" in text else "timed out" if "timeout" in text.lower() else "no answer"
        return ConnectError(f"Nothing answers at {where} ({why}).", "Is the server running and the host/port right? Try 'labkit doctor'.")
    if "could not translate host name" in text or "failed to resolve host" in text:
        return ConnectError(f"The host name {info.host!r} cannot be resolved.", "Check the host part of LABKIT_DATABASE_URL.")
    return ConnectError(f"Could not connect to {where}: {text}", "Check LABKIT_DATABASE_URL; 'labkit doctor' shows what labkit sees.")


class UrlProvider(Provider):
    """Attach to a server someone else runs (docker-compose, Binder, a class server)."""

    name = "url"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def info(self) -> ConnectionInfo:
        if not self.settings.database_url:
            raise ProviderUnavailable(
                "No database URL is set.", "Set LABKIT_DATABASE_URL (or DATABASE_URL) to postgresql://USER:PASSWORD@HOST:PORT/DBNAME."
            )
        return parse_url(self.settings.database_url)

    def availability(self) -> Availability:
        if not self.settings.database_url:
            return Availability(False, "LABKIT_DATABASE_URL / DATABASE_URL not set")
        try:
            info = self._checked(connect_timeout=3)
        except (ConfigError, ProviderUnavailable, ConnectError) as exc:
            return Availability(False, exc.message)
        return Availability(True, f"{info.url(hide_password=True)}")

    def _checked(self, connect_timeout: int) -> ConnectionInfo:
        """Connect once: the server must answer and run PostgreSQL 16 (unless another major is allowed)."""
        info = self.info()
        try:
            with info.connect(connect_timeout=connect_timeout) as conn:
                version = conn.info.server_version
                host = conn.info.host
        except psycopg.OperationalError as exc:
            raise explain_connect_error(info, exc) from None
        if not info.host:  # libpq's default socket: name it, so printed URLs and psql commands reach the same one
            info = ConnectionInfo(**{**info.to_dict(), "host": host})
        if version // 10000 != REQUIRED_MAJOR and not self.settings.allow_other_major:
            raise ProviderUnavailable(
                f"The server at {info.display()} runs PostgreSQL {version // 10000}, the course needs {REQUIRED_MAJOR}.",
                "Point the URL at a PostgreSQL 16 server, or set LABKIT_ALLOW_OTHER_MAJOR=1 to use it anyway.",
            )
        return info

    def start(self) -> ConnectionInfo:
        return self._checked(connect_timeout=5)

    def stop(self) -> bool:
        return False  # not ours to stop

    def status(self) -> ConnectionInfo | None:
        """The server if it answers (whatever its version: ``labkit status`` says when it is not 16)."""
        try:
            info = self.info()
            with info.connect(connect_timeout=3) as conn:
                if not info.host:
                    return ConnectionInfo(**{**info.to_dict(), "host": conn.info.host})
                return info
        except (ConfigError, ProviderUnavailable, psycopg.OperationalError):
            return None
