"""The JupyterHub ``pre_spawn_hook``: every user's server gets their own database on the class server.

In ``jupyterhub_config.py``::

    from labkit.classroom import hub
    c.Spawner.pre_spawn_hook = hub.make_pre_spawn_hook(
        url="postgresql://instructor:PASSWORD@db.example.org:5432/postgres",   # CREATEDB CREATEROLE
        credentials="/srv/jupyterhub/class-credentials.csv",                   # mode 0600, the hub's own
    )

or ``c.Spawner.pre_spawn_hook = hub.pre_spawn_hook`` with the same settings in the hub's environment
(``LABKIT_CLASS_URL``, ``LABKIT_CLASS_CREDENTIALS``, ``LABKIT_CLASS_PREFIX``, ``LABKIT_CLASS_STUDENT_HOST``).
The first spawn provisions the user (about half a second at scale 1); later spawns only look them up.
A user already provisioned from a roster is matched by id, login, email or the email's local part.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from labkit.classroom import provision
from labkit.classroom.credentials import DEFAULT_PATH, Credential, Store
from labkit.classroom.roster import DEFAULT_PREFIX, Student
from labkit.config import RESET_URL_ENV, WORKSPACE_ENV
from labkit.errors import ConfigError
from labkit.servers.url import explain_connect_error, parse_url

DEFAULT_WORKSPACE = "{home}/pg-labkit"


@dataclass(frozen=True)
class HubSettings:
    """What the hook needs: the instructor's URL, where credentials live, naming and limits."""

    url: str
    credentials: Path = DEFAULT_PATH
    prefix: str = DEFAULT_PREFIX
    student_host: str | None = None
    workspace: str = DEFAULT_WORKSPACE
    limits: provision.Limits = field(default_factory=provision.Limits)

    @classmethod
    def from_env(cls) -> HubSettings:
        url = os.environ.get("LABKIT_CLASS_URL")
        if not url:
            raise ConfigError(
                "The JupyterHub hook has no class server.",
                "Set LABKIT_CLASS_URL=postgresql://INSTRUCTOR:PASSWORD@HOST:5432/postgres in the hub's environment.",
            )
        return cls(
            url=url,
            credentials=Path(os.environ.get("LABKIT_CLASS_CREDENTIALS") or DEFAULT_PATH),
            prefix=os.environ.get("LABKIT_CLASS_PREFIX") or DEFAULT_PREFIX,
            student_host=os.environ.get("LABKIT_CLASS_STUDENT_HOST") or None,
            workspace=os.environ.get("LABKIT_CLASS_WORKSPACE") or DEFAULT_WORKSPACE,
        )


def student_for(username: str, known: dict[str, Credential]) -> Student:
    """The student a hub user is: a roster entry with that id, login or email, else the user name itself."""
    for credential in known.values():
        email = credential.email.lower()
        if username in (credential.key, credential.login) or username.lower() in (email, email.split("@")[0]):
            return Student(key=credential.key, name=credential.name, login=credential.login, email=credential.email)
    return Student(key=username, login=username)


def ensure_student(settings: HubSettings, username: str) -> Credential:
    """Provision ``username`` if need be (idempotent) and return their credentials."""
    store = Store(settings.credentials)
    with store.locked():
        student = student_for(username, store.read())
    info = parse_url(settings.url)
    try:
        report = provision.provision(info, [student], store, limits=settings.limits, prefix=settings.prefix, host=settings.student_host)
    except psycopg.OperationalError as exc:
        raise explain_connect_error(info, exc) from None
    return report.outcomes[0].credential


def home_of(spawner: Any) -> str:
    """The user's home as their server will see it: the local spawners' real one, else ``~``."""
    if home := getattr(spawner, "home_dir", None):
        return str(home)
    if "LocalProcessSpawner" in type(spawner).__name__:
        try:
            return pwd.getpwnam(spawner.user.name).pw_dir
        except KeyError:
            pass
    return "~"  # expanded by labkit in the user's own server (KubeSpawner, SystemdSpawner, …)


def environment(settings: HubSettings, credential: Credential, spawner: Any, reset_url: str | None = None) -> dict[str, str]:
    """What the single-user server gets: its database URL (both names labkit reads), its workspace, the reset service."""
    home = home_of(spawner)
    extra = {RESET_URL_ENV: reset_url} if reset_url else {}
    return {
        **extra,
        "DATABASE_URL": credential.database_url,
        "LABKIT_DATABASE_URL": credential.database_url,
        "LABKIT_SERVER": "url",
        WORKSPACE_ENV: settings.workspace.format(home=home, username=spawner.user.name),
        "LABKIT_DATA_DIR": f"{home}/.labkit",  # the user's own lab state, never the shared checkout's
    }


def make_pre_spawn_hook(
    settings: HubSettings | None = None, *, reset_url: str | None = None, **options: Any
) -> Callable[[Any], Awaitable[None]]:
    """A ``pre_spawn_hook`` for ``settings`` (or ``HubSettings(**options)``, or the hub's environment).

    ``reset_url``: the reset service's address (``reset_service.service(...)["url"]``), so that a
    student's ``shop.reset()`` works (default: ``LABKIT_CLASS_RESET_URL`` in the hub's environment)."""
    chosen = settings or (HubSettings(**options) if options else None)
    reset = reset_url or os.environ.get("LABKIT_CLASS_RESET_URL") or None

    async def hook(spawner: Any) -> None:
        current = chosen or HubSettings.from_env()
        username = spawner.user.name
        credential = await asyncio.to_thread(ensure_student, current, username)  # the hub keeps serving meanwhile
        spawner.environment = {**spawner.environment, **environment(current, credential, spawner, reset)}
        spawner.log.info("labkit: %s uses database %s", username, credential.database)

    return hook


async def pre_spawn_hook(spawner: Any) -> None:
    """The hook configured from the hub's environment (LABKIT_CLASS_URL, …)."""
    await make_pre_spawn_hook()(spawner)
