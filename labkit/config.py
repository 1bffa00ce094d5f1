"""Settings: where the project lives, where state goes, which server to use.

Precedence: explicit arguments (CLI flags) > environment variables > ``labkit.toml``
in the project folder > defaults.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError

SERVER_CHOICES = ("auto", "url", "local", "docker", "portable")
PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
"""The course checkout: the package reads its SQL, word lists, notebooks and exercise specs from here."""
SQL_DIR = CHECKOUT_DIR / "sql"
DATASETS_DIR = CHECKOUT_DIR / "datasets"
NOTEBOOKS_DIR = CHECKOUT_DIR / "notebooks"
EXERCISES_DIR = CHECKOUT_DIR / "exercises"
CONFIG_FILE = "labkit.toml"
# What a JupyterHub's pre_spawn_hook puts into a student's server and labkit reads there:
WORKSPACE_ENV = "LABKIT_WORKSPACE"  # the student's workspace folder (the course notebooks they work in)
RESET_URL_ENV = "LABKIT_RESET_URL"  # the hub's reset service, which a student's shop.reset() asks


def find_project_dir() -> Path:
    """The project folder: ``LABKIT_PROJECT_DIR``, else the checkout the package lives in, else cwd."""
    if env := os.environ.get("LABKIT_PROJECT_DIR"):
        return Path(env).expanduser().resolve()
    checkout = CHECKOUT_DIR
    if (checkout / "pyproject.toml").is_file() and (checkout / "sql").is_dir():
        return checkout
    return Path.cwd().resolve()


def _read_config_file(project_dir: Path) -> dict[str, Any]:
    path = project_dir / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "Fix or delete the file.") from exc


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything labkit needs to know before it touches a server."""

    project_dir: Path
    state_dir: Path
    server: str = "auto"
    database_url: str | None = None
    pg_bin: str | None = None
    allow_other_major: bool = False
    port: int | None = None
    scale: float = 1.0
    run_as: str | None = None
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    state_dir_is_fallback: bool = False

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from the environment, ``labkit.toml`` and ``overrides`` (None = not given)."""
        project_dir = find_project_dir()
        file = _read_config_file(project_dir)
        env = os.environ

        def pick(key: str, env_name: str | None, default: Any = None) -> Any:
            if overrides.get(key) is not None:
                return overrides[key]
            if env_name and env.get(env_name):
                return env[env_name]
            return file.get(key, default)

        server = str(pick("server", "LABKIT_SERVER", "auto")).lower()
        if server not in SERVER_CHOICES:
            raise ConfigError(
                f"Unknown server choice {server!r}.",
                f"Use one of: {', '.join(SERVER_CHOICES)} (flag --server, env LABKIT_SERVER or {CONFIG_FILE}).",
            )
        database_url = pick("database_url", "LABKIT_DATABASE_URL") or env.get("DATABASE_URL") or None
        port = parse_port(pick("port", "LABKIT_PORT"))
        try:
            scale = float(pick("scale", "LABKIT_SCALE", 1.0))
        except ValueError as exc:
            raise ConfigError(f"Invalid number in settings: {exc}", "LABKIT_PORT is an integer, LABKIT_SCALE a number.") from exc
        if scale <= 0:
            raise ConfigError(f"Scale must be positive, got {scale}.", "Use e.g. --scale 1 (default) or 10.")
        allow = overrides.get("allow_other_major")
        if allow is None:
            allow = _env_bool("LABKIT_ALLOW_OTHER_MAJOR")
        if allow is None:
            allow = bool(file.get("allow_other_major", False))
        data_dir = pick("data_dir", "LABKIT_DATA_DIR")
        state_dir = Path(data_dir).expanduser().resolve() if data_dir else project_dir / ".labkit"
        cache = pick("cache_dir", "LABKIT_CACHE_DIR")
        state_dir, fallback = _writable_state_dir(state_dir, project_dir, explicit=bool(data_dir))
        return cls(
            project_dir=project_dir,
            state_dir=state_dir,
            server=server,
            database_url=database_url,
            pg_bin=check_pg_bin(pick("pg_bin", "LABKIT_PG_BIN")),
            allow_other_major=bool(allow),
            port=port,
            scale=scale,
            run_as=pick("run_as", "LABKIT_RUN_AS"),
            cache_dir=Path(cache).expanduser() if cache else default_cache_dir(),
            state_dir_is_fallback=fallback,
        )

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


MIN_PORT = 1024  # below: privileged ports, which an unprivileged server cannot listen on


def parse_port(value: Any) -> int | None:
    """LABKIT_PORT (or ``port`` in labkit.toml) as a usable TCP port, or a ConfigError that says which are."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    hint = f"Set LABKIT_PORT to a whole number from {MIN_PORT} to 65535 (e.g. 54316), or unset it and labkit picks a free port."
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ConfigError(f"Invalid number in settings: LABKIT_PORT={text!r} is not a port number.", hint)
    port = int(text)
    if not MIN_PORT <= port <= 65535:
        why = "a privileged port, which the lab server (an unprivileged process) cannot use" if 0 < port < MIN_PORT else "not a TCP port"
        raise ConfigError(f"Port {port} is out of range: {why}.", hint)
    return port


def check_pg_bin(value: Any) -> str | None:
    """LABKIT_PG_BIN must name a folder holding PostgreSQL's server programs."""
    if value in (None, ""):
        return None
    folder = Path(str(value)).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"LABKIT_PG_BIN={value} is not a folder.",
            "Point it at the bin folder of a PostgreSQL 16 install (the one with pg_ctl), or unset it.",
        )
    missing = [name for name in ("postgres", "pg_ctl", "initdb") if not (folder / name).exists() and not (folder / f"{name}.exe").exists()]
    if missing:
        raise ConfigError(
            f"LABKIT_PG_BIN={value} has no {', '.join(missing)}: it is not a PostgreSQL server bin folder.",
            "Point it at the bin folder of a PostgreSQL 16 install (e.g. /usr/lib/postgresql/16/bin), or unset it.",
        )
    return str(value)


def default_cache_dir() -> Path:
    """Per-user cache; as root a system path the unprivileged server user can read."""
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/cache/labkit")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labkit"


def _is_writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def _writable_state_dir(state_dir: Path, project_dir: Path, *, explicit: bool) -> tuple[Path, bool]:
    """Keep state in the project unless it is read-only; then use a per-user state folder."""
    if _is_writable(state_dir):
        return state_dir, False
    if explicit:
        raise ConfigError(
            f"The data directory {state_dir} is not writable.",
            "Point LABKIT_DATA_DIR at a folder you can write to.",
        )
    digest = hashlib.sha256(str(project_dir).encode()).hexdigest()[:10]
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    fallback = base / "labkit" / f"{project_dir.name}-{digest}"
    if not _is_writable(fallback):
        raise ConfigError(
            f"The project folder {project_dir} is read-only, and the per-user state folder {fallback} cannot be created "
            f"either ({_nearest_existing(fallback)} is not writable for you).",
            "Set LABKIT_DATA_DIR to a folder you can write to (e.g. LABKIT_DATA_DIR=/tmp/$USER-labkit), or set HOME/XDG_STATE_HOME.",
        )
    return fallback, True


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path
