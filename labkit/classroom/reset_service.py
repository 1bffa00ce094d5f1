"""A JupyterHub service through which each student resets their own class database.

A student's role may not create databases, so ``shop.reset()`` in a class notebook asks this service,
which runs beside the hub with the instructor's URL. The hub tells it who asks (the user's own API
token, ``JUPYTERHUB_API_TOKEN`` in their server); a user may reset only their own database, at most once
every ``MIN_INTERVAL`` seconds. In ``jupyterhub_config.py``::

    from labkit.classroom import hub, reset_service
    settings = hub.HubSettings(url="postgresql://instructor:PASSWORD@db.example.org:5432/postgres",
                               credentials="/srv/jupyterhub/class-credentials.csv")
    service = reset_service.service(settings, port=10101)
    c.JupyterHub.services = [service]
    c.Spawner.pre_spawn_hook = hub.make_pre_spawn_hook(settings, reset_url=service["url"])

Run by the hub as ``python -m labkit.classroom.reset_service``; it reads the hub's usual service
variables (``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL``) and the class
settings (``LABKIT_CLASS_URL``, …) from its environment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from labkit.classroom import provision
from labkit.classroom.credentials import Store
from labkit.classroom.hub import HubSettings, student_for
from labkit.errors import LabkitError
from labkit.servers.url import parse_url

SERVICE_NAME = "labkit-reset"
MIN_INTERVAL = 10.0  # seconds between two resets of one student's database
log = logging.getLogger("labkit.reset_service")


def service(settings: HubSettings, *, port: int, host: str = "127.0.0.1", bind: str | None = None) -> dict[str, Any]:
    """The entry for ``c.JupyterHub.services``: the hub starts, proxies and stops it.

    ``host``: the name the proxy and the students' servers reach it by; ``bind``: the address it listens
    on, when that differs (``0.0.0.0`` in a Kubernetes hub pod reached as ``hub``)."""
    environment = {
        "LABKIT_CLASS_URL": settings.url,
        "LABKIT_CLASS_CREDENTIALS": str(settings.credentials),
        "LABKIT_CLASS_PREFIX": settings.prefix,
    }
    if settings.student_host:
        environment["LABKIT_CLASS_STUDENT_HOST"] = settings.student_host
    if bind:
        environment["LABKIT_RESET_BIND"] = bind
    return {
        "name": SERVICE_NAME,
        "url": f"http://{host}:{port}",
        "command": [sys.executable, "-m", "labkit.classroom.reset_service"],
        "environment": environment,
    }


def reset_for(settings: HubSettings, username: str) -> tuple[str, float]:
    """Reset the database of hub user ``username``; returns (database, seconds)."""
    student = student_for(username, Store(settings.credentials).read())
    info = parse_url(settings.url)
    with info.connect() as conn:
        role, _key = provision.find(conn, student.key, settings.prefix)
    return role, provision.reset(info, role, prefix=settings.prefix)


def make_app(settings: HubSettings) -> Any:
    """The tornado application: ``POST <prefix>`` with ``Authorization: token <the user's hub token>``."""
    from jupyterhub.services.auth import HubAuth
    from tornado import web

    auth = HubAuth()
    last_reset: dict[str, float] = {}
    busy: set[str] = set()

    class ResetHandler(web.RequestHandler):
        def check_xsrf_cookie(self) -> None:  # token-only API: no cookies are read
            return None

        def answer(self, status: int, **body: Any) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))

        async def post(self) -> None:
            match = auth.auth_header_pat.match(self.request.headers.get("Authorization", ""))
            model = await auth.user_for_token(match[1], use_cache=False, sync=False) if match else None
            if not model or model.get("kind", "user") != "user":
                return self.answer(403, error="Not a hub user: send your own JUPYTERHUB_API_TOKEN as 'Authorization: token …'.")
            name = model["name"]
            wait = last_reset.get(name, 0.0) + MIN_INTERVAL - time.monotonic()
            if name in busy or wait > 0:
                return self.answer(429, error=f"Your database was reset a moment ago; try again in {max(wait, 1):.0f} s.")
            busy.add(name)
            try:
                database, seconds = await asyncio.to_thread(reset_for, settings, name)
            except LabkitError as exc:
                return self.answer(409, error=str(exc))
            except Exception as exc:  # the student gets one sentence; the hub's log gets the details
                log.exception("labkit reset of %s failed", name)
                return self.answer(500, error=f"The reset failed on the class server ({type(exc).__name__}); tell your instructor.")
            finally:
                busy.discard(name)
                last_reset[name] = time.monotonic()
            log.info("labkit: reset %s's database %s in %.2f s", name, database, seconds)
            return self.answer(200, database=database, seconds=round(seconds, 3))

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    return web.Application([(prefix.rstrip("/") + "/?", ResetHandler), ("/", ResetHandler)])


def main() -> None:
    from tornado import ioloop

    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s labkit-reset] %(message)s")
    settings = HubSettings.from_env()
    address = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    make_app(settings).listen(address.port or 80, os.environ.get("LABKIT_RESET_BIND") or address.hostname or "127.0.0.1")
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
