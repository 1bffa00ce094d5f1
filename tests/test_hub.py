"""A real JupyterHub (PyPI) with its proxy (npm), a dummy authenticator and local-process spawners, three users.

The labkit pre_spawn_hook provisions each user's database on first spawn; a cell run in each user's
kernel (through the hub's proxy and the Jupyter server's kernel API) sees that user's database only.
The test installs configurable-http-proxy itself (npm, into labkit's cache folder) when it is missing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from labkit.classroom import provision
from labkit.config import Settings
from labkit.servers.base import ConnectionInfo
from tests.helpers_servers import LABKIT, clean_env, free_port

pytestmark = pytest.mark.slow

INSTRUCTOR = "labkit_test_hub_instructor"
PREFIX = "thub_"
USERS = ("ada", "alan", "grace")
BIN = Path(sys.executable).parent
TOKEN = uuid.uuid4().hex


def proxy_command() -> str:
    """configurable-http-proxy, installed with npm into the cache folder on first use."""
    folder = Settings.load().cache_dir / "hub-proxy"
    command = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if not command.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for JupyterHub's proxy (scripts/system-packages installs it)"
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), "configurable-http-proxy"],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
    return str(command)


@pytest.fixture(scope="module")
def instructor(shop: ConnectionInfo) -> Iterator[ConnectionInfo]:
    with shop.connect() as admin:
        _drop_class(admin)
        admin.execute(f"CREATE ROLE {INSTRUCTOR} LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD 'hub-teach'")
    provision.make_template(shop, INSTRUCTOR, force=True)
    yield dataclasses.replace(shop, user=INSTRUCTOR, password="hub-teach")
    with shop.connect() as admin:
        _drop_class(admin)


def _drop_class(admin: psycopg.Connection) -> None:
    for (role,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'thub\\_%'").fetchall():
        admin.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
        admin.execute(f'DROP ROLE "{role}"')
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [INSTRUCTOR]).fetchone():
        admin.execute(f"DROP DATABASE IF EXISTS {provision.CLASS_TEMPLATE} WITH (FORCE)")
        admin.execute(f"DROP OWNED BY {INSTRUCTOR}")
        admin.execute(f"DROP ROLE {INSTRUCTOR}")


CONFIG = """
from labkit.classroom import hub
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{folder}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--ServerApp.allow_root=True"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
from labkit.classroom import reset_service
settings = hub.HubSettings(url={url!r}, credentials={credentials!r}, prefix="{prefix}")
reset = reset_service.service(settings, port={reset_port})
c.Spawner.pre_spawn_hook = hub.make_pre_spawn_hook(settings, reset_url=reset["url"])
c.JupyterHub.services = [{{"name": "tester", "api_token": "{token}"}}, reset]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                             "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
"""


@contextlib.contextmanager
def running_hub(folder: Path, instructor: ConnectionInfo, credentials: Path) -> Iterator[str]:
    port, hub_port, proxy_api_port, reset_port = free_port(), free_port(), free_port(), free_port()
    config = folder / "jupyterhub_config.py"
    config.write_text(CONFIG.format(
        port=port, hub_port=hub_port, proxy_api_port=proxy_api_port, proxy=proxy_command(), folder=folder,
        singleuser=str(BIN / "jupyterhub-singleuser"), url=instructor.url(), reset_port=reset_port,
        credentials=str(credentials), prefix=PREFIX, token=TOKEN,
    ))  # fmt: skip
    env = clean_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    log = (folder / "hub.log").open("w")
    hub = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(config)], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert hub.poll() is None, "JupyterHub exited:\n" + (folder / "hub.log").read_text()[-3000:]
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/hub/api/", timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "JupyterHub did not answer:\n" + (folder / "hub.log").read_text()[-3000:]
            time.sleep(0.5)
        yield base
    finally:
        hub.send_signal(signal.SIGTERM)  # the hub stops the users' servers and its proxy
        try:
            hub.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hub.pid, signal.SIGKILL)  # anything of the hub's session left behind
        log.close()


def api(base: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{base}{path}", headers={"Authorization": f"token {TOKEN}"}, timeout=60, **kwargs)


def spawn(base: str, user: str, folder: Path) -> None:
    api(base, "POST", f"/hub/api/users/{user}")
    started = api(base, "POST", f"/hub/api/users/{user}/server")
    assert started.status_code in (201, 202), started.text
    deadline = time.monotonic() + 180
    while True:
        model = api(base, "GET", f"/hub/api/users/{user}").json()
        server = (model.get("servers") or {}).get("", {})
        if server.get("ready"):
            return
        assert time.monotonic() < deadline, f"{user}'s server did not start:\n" + (folder / "hub.log").read_text()[-4000:]
        time.sleep(0.5)


def stop(base: str, user: str) -> None:
    api(base, "DELETE", f"/hub/api/users/{user}/server")
    deadline = time.monotonic() + 60
    while (api(base, "GET", f"/hub/api/users/{user}").json().get("servers") or {}) and time.monotonic() < deadline:
        time.sleep(0.5)


def run_cell(base: str, user: str, code: str) -> str:
    """Run ``code`` in a new kernel of ``user``'s server (kernel REST API + websocket) and return its stdout."""
    from tornado import httpclient, ioloop, websocket

    kernel = api(base, "POST", f"/user/{user}/api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False},
    }  # fmt: skip

    async def execute() -> str:
        url = f"{base.replace('http', 'ws')}/user/{user}/api/kernels/{kernel_id}/channels"
        conn = await websocket.websocket_connect(httpclient.HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"}))
        await conn.write_message(json.dumps(request))
        out, errors = [], []
        while True:
            raw = await conn.read_message()
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                conn.close()
                assert not errors, "\n".join(errors)
                return "".join(out)

    try:
        return ioloop.IOLoop.current().run_sync(execute, timeout=180)
    finally:
        api(base, "DELETE", f"/user/{user}/api/kernels/{kernel_id}")


CELL = """
import json, os, psycopg, labkit
lab = labkit.lab()
mine = lab.df("SELECT current_user AS who, current_database() AS db, count(*) AS n FROM users")
via_magic = %sql SELECT current_database() AS db
others = {{}}
for other in {others!r}:
    try:
        psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + other, connect_timeout=5).close()
        others[other] = "connected"
    except psycopg.OperationalError as exc:
        others[other] = " ".join(str(exc).split())
print(json.dumps({{"who": mine.who[0], "db": mine.db[0], "users": int(mine.n[0]), "magic": str(via_magic),
                  "others": others, "url_db": os.environ["LABKIT_DATABASE_URL"].rsplit("/", 1)[1],
                  "workspace": os.environ.get("LABKIT_WORKSPACE"), "home": os.environ.get("HOME")}}))
"""


def test_each_hub_user_gets_their_own_database(instructor: ConnectionInfo, tmp_path: Path) -> None:
    credentials = tmp_path / "secrets" / "class.csv"
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID\nAda Lovelace,1,s-001,ada\n")
    provisioned = subprocess.run(
        [*LABKIT, "class", "provision", str(roster), "--url", instructor.url(), "--prefix", PREFIX, "--credentials", str(credentials)],
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    expected = {"ada": "thub_s_001", "alan": "thub_alan", "grace": "thub_grace"}  # ada matched to the roster by login
    with running_hub(tmp_path, instructor, credentials) as base:
        for user in USERS:
            spawn(base, user, tmp_path)
        with credentials.open() as f:
            rows = {row["role"]: row for row in csv.DictReader(f)}
        assert sorted(rows) == sorted(expected.values())
        seen = {}
        for user in USERS:
            others = [db for u, db in expected.items() if u != user]
            seen[user] = json.loads(run_cell(base, user, CELL.format(others=others)).strip().splitlines()[-1])
        for user, result in seen.items():
            db = expected[user]
            assert (result["who"], result["db"], result["url_db"]) == (db, db, db), result
            assert result["users"] > 0 and db in result["magic"], result
            assert all("permission denied for database" in why for why in result["others"].values()), result["others"]
            assert result["home"] == str(tmp_path / "home" / user)
            assert result["workspace"] == str(tmp_path / "home" / user / "pg-labkit")
        # a later spawn: same database, same password, nothing provisioned again
        before = credentials.read_text()
        stop(base, "ada")
        started = time.perf_counter()
        spawn(base, "ada", tmp_path)
        respawn = time.perf_counter() - started
        again = json.loads(run_cell(base, "ada", CELL.format(others=[])).strip().splitlines()[-1])
        assert again["db"] == "thub_s_001" and credentials.read_text() == before
        print(f"respawn of a provisioned user: {respawn:.1f} s")


RESET_CELL = """
import json, os, urllib.request, urllib.error, labkit
from labkit.errors import LabkitError
lab = labkit.lab()
with lab.connect() as conn:
    conn.execute("DELETE FROM logs")
emptied = int(lab.df("SELECT count(*) AS n FROM logs").n[0])
done = lab.reset()
restored = int(lab.df("SELECT count(*) AS n FROM logs").n[0])
try:
    lab.reset()
    again = "reset twice"
except LabkitError as exc:
    again = str(exc)
def status(headers):
    request = urllib.request.Request(os.environ["LABKIT_RESET_URL"], data=b"", method="POST", headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code
print(json.dumps({"emptied": emptied, "restored": restored, "said": repr(done), "again": again,
                  "no_token": status({}), "forged": status({"Authorization": "token not-a-hub-token"})}))
"""


def test_a_student_resets_their_own_class_database_through_the_hubs_service(instructor: ConnectionInfo, tmp_path: Path) -> None:
    credentials = tmp_path / "secrets" / "class.csv"
    with running_hub(tmp_path, instructor, credentials) as base:
        for user in ("ada", "alan"):
            spawn(base, user, tmp_path)
        with instructor.connect("thub_alan") as alan:
            alans_logs = alan.execute("SELECT count(*) FROM logs").fetchone()[0]
            alan.execute("DELETE FROM logs WHERE id IN (SELECT id FROM logs ORDER BY id LIMIT 1)")
        result = json.loads(run_cell(base, "ada", RESET_CELL).strip().splitlines()[-1])
        assert result["emptied"] == 0 and result["restored"] > 0, result
        assert result["said"].startswith("The shop database is pristine again"), result
        assert "reset a moment ago" in result["again"] and "labkit class reset" in result["again"], result
        assert (result["no_token"], result["forged"]) == (403, 403), result
        with instructor.connect("thub_alan") as alan:  # ada's reset left alan's work alone
            assert alan.execute("SELECT count(*) FROM logs").fetchone()[0] == alans_logs - 1
