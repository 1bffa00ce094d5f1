"""The ``docker`` provider: the official postgres:16 image through testcontainers.

The container outlives the ``labkit up`` process (Ryuk, testcontainers' reaper, is
disabled for it) and is removed by ``labkit down``. Data lives in a named volume.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
from typing import Any

from labkit.config import Settings
from labkit.errors import ProviderUnavailable, ServerStartError
from labkit.servers.base import Availability, ConnectionInfo, Provider
from labkit.servers.cluster import LISTEN, SERVER_SETTINGS, choose_port, wait_until_ready

IMAGE = "postgres:16.14"
CONTAINER_PORT = 5432
LABEL = "org.pg-labkit.project"
DOCKER_HINT = (
    "Start Docker Desktop (or 'colima start' / 'podman machine start'); for Colima or Podman set DOCKER_HOST, "
    "e.g. unix://$HOME/.colima/default/docker.sock or unix://$XDG_RUNTIME_DIR/podman/podman.sock. "
    "Or use another provider: --server portable / local / url."
)


def engine_client(timeout: int = 3) -> Any:
    """A docker SDK client that has answered a ping, or ProviderUnavailable saying why not."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise ProviderUnavailable("The docker Python package is not installed.", "pip install docker testcontainers") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket (/var/run/docker.sock)")
        raise ProviderUnavailable(f"No Docker engine answers at {where}: {_short(exc)}", DOCKER_HINT) from exc
    return client


def _short(exc: Exception) -> str:
    text = str(exc)
    if "FileNotFoundError" in text or "No such file" in text:
        return "the socket does not exist (is the engine running?)"
    if "Permission denied" in text:
        return "permission denied on the socket (add yourself to the 'docker' group)"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def postgres_command() -> list[str]:
    """Server settings equal to the other providers' (the image listens on all container interfaces)."""
    args: list[str] = ["postgres"]
    for key, value in SERVER_SETTINGS.items():
        if key != "listen_addresses":
            args += ["-c", f"{key}={value.strip(chr(39))}"]
    return args


class DockerProvider(Provider):
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        digest = hashlib.sha256(str(settings.project_dir).encode()).hexdigest()[:10]
        self.container_name = f"labkit-{digest}"
        self.volume_name = f"labkit-{digest}-pgdata"

    def availability(self) -> Availability:
        try:
            client = engine_client()
        except ProviderUnavailable as exc:
            return Availability(False, exc.message)
        version = client.version().get("Version", "?")
        return Availability(True, f"Docker engine {version}; image {IMAGE}")

    def _container(self, client: Any) -> Any | None:
        from docker.errors import NotFound

        try:
            return client.containers.get(self.container_name)
        except NotFound:
            return None

    def _info(self, container: Any) -> ConnectionInfo | None:
        container.reload()
        if container.status != "running":
            return None
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{CONTAINER_PORT}/tcp")
        if not bindings:
            return None
        return ConnectionInfo(
            host=LISTEN,
            port=int(bindings[0]["HostPort"]),
            user="postgres",
            password=self._password(),
            provider=self.name,
        )

    def start(self) -> ConnectionInfo:
        client = engine_client()
        container = self._container(client)
        if container is not None:
            if (info := self._info(container)) is not None:
                return info
            container.start()
            for _ in range(50):
                if (info := self._info(container)) is not None:
                    wait_until_ready(info, timeout=60)
                    return info
                time.sleep(0.2)
            raise ServerStartError(f"The container {self.container_name} did not start.", f"See 'docker logs {self.container_name}'.")
        return self._create()

    def _create(self) -> ConnectionInfo:
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the lab outlives this process
        from testcontainers.postgres import PostgresContainer

        password = self._password()
        port = choose_port(self.settings.port, None)
        print(
            f"labkit: starting {IMAGE} in Docker (the first run downloads the image; this can take a minute)…", file=sys.stderr, flush=True
        )
        container = (
            PostgresContainer(IMAGE, username="postgres", password=password, dbname="postgres", driver=None)
            .with_name(self.container_name)
            .with_env("POSTGRES_INITDB_ARGS", "--encoding=UTF8 --locale=C")
            .with_command(postgres_command())
            .with_volume_mapping(self.volume_name, "/var/lib/postgresql/data", "rw")
            .with_kwargs(labels={LABEL: str(self.settings.project_dir)})
        )
        # Publish on the loopback interface only (Docker's default is every interface).
        container.ports = {f"{CONTAINER_PORT}/tcp": (LISTEN, port)}  # type: ignore[dict-item]
        try:
            container.start()
        except Exception as exc:  # the engine's errors are many; all mean "did not start"
            raise ServerStartError(
                f"Docker could not start {IMAGE}: {exc}", f"Check 'docker logs {self.container_name}'; {DOCKER_HINT}"
            ) from exc
        info = ConnectionInfo(host=LISTEN, port=port, user="postgres", password=password, provider=self.name)
        wait_until_ready(info, timeout=60)
        return info

    def _password(self) -> str:
        """One password per project, kept in the state folder: the volume remembers it across containers."""
        path = self.settings.state_dir / "docker-password"
        if path.is_file():
            return path.read_text().strip()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(16)
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password

    def stop(self, *, delete_data: bool = False) -> bool:
        """Stop and remove the container (the data volume stays unless ``delete_data``)."""
        try:
            client = engine_client()
        except ProviderUnavailable:
            return False
        container = self._container(client)
        if container is not None:
            container.stop(timeout=20)
            container.remove()
        if delete_data:
            from docker.errors import NotFound

            try:
                client.volumes.get(self.volume_name).remove()
            except NotFound:
                pass
        return container is not None

    def status(self) -> ConnectionInfo | None:
        try:
            client = engine_client()
        except ProviderUnavailable:
            return None
        container = self._container(client)
        return self._info(container) if container is not None else None
