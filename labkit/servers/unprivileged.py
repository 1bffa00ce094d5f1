"""Running PostgreSQL as root is refused by the server: find or create a user to run it as."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import ServerStartError

SERVICE_USER = "labkit"
CANDIDATES = ("postgres", SERVICE_USER)


@dataclass(frozen=True)
class RunAs:
    """The account the server runs under (None fields: the current user)."""

    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, object]:
        """Keyword arguments for subprocess to run a command as this user."""
        if self.is_current:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "env": self.env()}

    def env(self) -> dict[str, str]:
        home = pwd.getpwuid(self.uid).pw_dir
        keep = {k: v for k, v in os.environ.items() if k in {"PATH", "LANG", "LC_ALL", "TZ"}}
        return {**keep, "HOME": home if Path(home).is_dir() else "/", "USER": self.name, "LOGNAME": self.name}

    def can_use(self, path: Path) -> bool:
        """Whether this user can create files in ``path`` (or its nearest existing parent)."""
        probe = path
        while not probe.exists():
            probe = probe.parent
        if self.is_current:
            return os.access(probe, os.W_OK | os.X_OK)
        result = subprocess.run(["test", "-w", str(probe), "-a", "-x", str(probe)], **self.popen_kwargs())  # type: ignore[call-overload]
        return result.returncode == 0

    def can_traverse(self, path: Path) -> bool:
        """Whether this user can reach files inside ``path`` (execute permission all the way down)."""
        if self.is_current:
            return os.access(path, os.X_OK)
        result = subprocess.run(["test", "-x", str(path)], **self.popen_kwargs())  # type: ignore[call-overload]
        return result.returncode == 0

    def can_read(self, path: Path) -> bool:
        if self.is_current:
            return os.access(path, os.R_OK)
        result = subprocess.run(["test", "-r", str(path)], **self.popen_kwargs())  # type: ignore[call-overload]
        return result.returncode == 0

    def own(self, path: Path) -> None:
        """Give ``path`` (a folder labkit created) to this user, recursively."""
        if self.is_current:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)


def current_user() -> RunAs:
    uid = os.geteuid()
    return RunAs(pwd.getpwuid(uid).pw_name, uid, os.getegid())


def server_user(requested: str | None = None) -> RunAs:
    """The current user, unless we are root: then ``requested``, postgres, or a created ``labkit`` user."""
    if os.geteuid() != 0:
        return current_user()
    names = (requested,) if requested else CANDIDATES
    for name in names:
        try:
            entry = pwd.getpwnam(name)  # type: ignore[arg-type]
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
    if requested:
        raise ServerStartError(
            f"LABKIT_RUN_AS names {requested!r}, which is not an unprivileged user on this machine.",
            "Create it (useradd --system) or unset LABKIT_RUN_AS so labkit picks one.",
        )
    return _create_service_user()


def _create_service_user() -> RunAs:
    useradd = shutil.which("useradd") or shutil.which("adduser")
    if not useradd:
        raise ServerStartError(
            "PostgreSQL refuses to run as root and no unprivileged user exists to run it.",
            f"Create one (e.g. 'useradd --system {SERVICE_USER}') or run labkit as a normal user.",
        )
    nologin = shutil.which("nologin") or "/bin/false"
    if Path(useradd).name == "useradd":
        cmd = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", nologin, SERVICE_USER]
    else:  # busybox adduser
        cmd = [useradd, "-S", "-D", "-H", "-s", nologin, SERVICE_USER]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ServerStartError(
            f"Could not create the unprivileged user {SERVICE_USER!r}: {result.stderr.strip()}",
            "Create a user yourself and set LABKIT_RUN_AS to its name.",
        )
    entry = pwd.getpwnam(SERVICE_USER)
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
