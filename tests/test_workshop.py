"""Workshop room (docker-compose), Binder and the url provider, tested as far as runs here.

No Docker engine runs on our machines: the compose file is validated by docker-compose itself
and its JupyterLab side is exercised against a real server through DATABASE_URL. The Binder
scripts run for real, as an unprivileged user, with PostgreSQL 16 binaries on PATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from labkit.config import Settings
from labkit.servers.base import ConnectionInfo
from labkit.servers.portable import PortableProvider

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is missing: scripts/system-packages installs it in CI")
        pytest.skip(f"{tool} not installed (LABKIT_TEST_TOOLS=1 scripts/system-packages)")
    return path


@pytest.fixture(scope="module")
def compose() -> dict:
    result = subprocess.run([_need("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "POSTGRES_PASSWORD": "s3cret"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_safe(compose: dict) -> None:
    db, jupyter = compose["services"]["db"], compose["services"]["jupyter"]
    assert db["image"] == "postgres:16.14"  # pinned minor
    assert db["environment"]["POSTGRES_INITDB_ARGS"] == "--encoding=UTF8 --locale=C"
    assert "shared_preload_libraries=pg_stat_statements" in db["command"]
    check = " ".join(db["healthcheck"]["test"])
    assert "-h 127.0.0.1" in check and "SELECT 1" in check  # really over TCP
    volumes = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in db["volumes"]]
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in volumes)  # a named volume
    assert "pgdata" in compose["volumes"]
    for service in (db, jupyter):
        for port in service["ports"]:
            host_ip = port.split(":")[0] if isinstance(port, str) else port.get("host_ip")
            assert host_ip == "127.0.0.1", port
    assert jupyter["environment"]["DATABASE_URL"] == "postgresql://postgres:s3cret@db:5432/postgres"
    assert jupyter["depends_on"]["db"]["condition"] == "service_healthy"
    assert "--NotebookApp.token=''" not in " ".join(jupyter["command"]) and "token=''" not in " ".join(jupyter["command"])
    assert (ROOT / jupyter["build"]["dockerfile"]).is_file() or (ROOT / "docker" / "jupyter.Dockerfile").is_file()
    # learners work in their workspace, never in the instructor notebooks (with solutions) of the checkout
    mounts = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in jupyter.get("volumes", [])]
    assert not [m for m in mounts if m.rstrip("/").split(":")[0].endswith("/notebooks")], mounts
    assert "labkit lab" in " ".join(jupyter["command"]) and jupyter["environment"]["LABKIT_WORKSPACE"] == "/lab/workspace"


def test_jupyter_side_through_database_url(server: ConnectionInfo, tmp_path: Path) -> None:
    """What the jupyter service runs: `labkit up` on DATABASE_URL, then a notebook's lab()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env |= {"DATABASE_URL": server.url(), "LABKIT_SERVER": "url", "LABKIT_DATA_DIR": str(tmp_path / "state")}
    up = subprocess.run([sys.executable, "-m", "labkit.cli", "up"], env=env, capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stderr
    assert "url provider" in up.stdout
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import labkit\nshop = labkit.lab()\nprint(shop.info.provider)"),
                nbformat.v4.new_code_cell("%sql SELECT count(*) AS users FROM users")]  # fmt: skip
    old = dict(os.environ)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "LABKIT_SERVER", "LABKIT_DATA_DIR")})
    try:
        NotebookClient(nb, kernel_name="python3", timeout=300).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert nb.cells[0].outputs[0]["text"].strip().splitlines()[-1] == "url"  # after lab()'s one-line greeting
    assert "users" in nb.cells[1].outputs[0]["data"]["text/plain"]


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the scripts as another, unprivileged user")
def test_binder_scripts_as_an_unprivileged_user(tmp_path: Path) -> None:
    user = next((p for p in pwd.getpwall() if p.pw_name in ("postgres", "labkit")), None)
    system_python = Path("/usr/bin/python3")
    if user is None or not system_python.exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("needs an unprivileged user and a system Python 3.11")
    install = PortableProvider(Settings.load()).install()  # PostgreSQL 16 binaries, as conda would put on PATH
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    for parent in [tmp_path, *tmp_path.parents]:
        if parent != Path("/"):
            parent.chmod(parent.stat().st_mode | 0o011)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(system_python)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    env = {
        "HOME": str(home),
        "PATH": f"{bindir}:{install.bindir}:/usr/bin:/bin",
        "LD_LIBRARY_PATH": str(install.libdir or ""),
        "PYTHONPATH": f"{ROOT}:{site}",
        "LABKIT_PROJECT_DIR": str(ROOT),
        "LABKIT_SKIP_PIP": "1",
        "LABKIT_CACHE_DIR": str(tmp_path / "no-cache"),
        "LABKIT_WORKSPACE": str(home / "workspace"),  # on Binder the checkout is the home; here it is not the user's
    }
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": str(home), "env": env}
    post_build = subprocess.run([str(ROOT / "binder" / "postBuild")], capture_output=True, text=True, timeout=900, **as_user)
    assert post_build.returncode == 0, post_build.stderr[-2000:]
    data = home / ".labkit" / "pg16" / "data"
    assert (data / "PG_VERSION").read_text().strip() == "16"
    assert not (data / "postmaster.pid").exists()  # stopped cleanly: nothing stale in the image
    marker = home / "started"
    start = subprocess.run([str(ROOT / "binder" / "start"), "sh", "-c", f"echo ok > {marker}"],
                           capture_output=True, text=True, timeout=300, **as_user)  # fmt: skip
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        assert marker.read_text().strip() == "ok"  # `exec "$@"` ran the command
        assert (home / "workspace" / "03-window-functions.ipynb").is_file()  # the learner's copy, made at launch
        port = int((data / "postmaster.pid").read_text().splitlines()[3])
        info = ConnectionInfo("127.0.0.1", port, "postgres", password=(data.parent / "password").read_text().strip())
        nb = nbformat.v4.new_notebook()
        setup = f"import labkit, os\nos.environ['LABKIT_DATABASE_URL'] = {info.url()!r}\nshop = labkit.lab()"
        nb.cells = [nbformat.v4.new_code_cell(setup),
                    nbformat.v4.new_code_cell("%sql SELECT labkit_today() AS today, count(*) AS orders FROM orders")]  # fmt: skip
        NotebookClient(nb, kernel_name="python3", timeout=300).execute()
        assert "2025-07-01" in nb.cells[1].outputs[0]["data"]["text/plain"]
    finally:
        subprocess.run([str(system_python), "-m", "labkit.cli", "down"], capture_output=True, text=True, timeout=120,
                       **{**as_user, "env": {**env, "LABKIT_SERVER": "local", "LABKIT_DATA_DIR": str(home / ".labkit")}})  # fmt: skip
