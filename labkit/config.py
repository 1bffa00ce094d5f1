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
        port = pick("port", "LABKIT_PORT")
        try:
            port = int(port) if port not in (None, "") else None
            scale = float(pick("scale", "LABKIT_SCALE", 1.0))
        except ValueError as exc:
            raise ConfigError(f"Invalid number in settings: {exc}", "LABKIT_PORT is an integer, LABKIT_SCALE a number.") from exc
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"Port {port} is out of range.", "Choose a port between 1024 and 65535.")
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
            pg_bin=pick("pg_bin", "LABKIT_PG_BIN"),
            allow_other_major=bool(allow),
            port=port,
            scale=scale,
            run_as=pick("run_as", "LABKIT_RUN_AS"),
            cache_dir=Path(cache).expanduser() if cache else default_cache_dir(),
            state_dir_is_fallback=fallback,
        )

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


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
    return base / "labkit" / f"{project_dir.name}-{digest}", True
