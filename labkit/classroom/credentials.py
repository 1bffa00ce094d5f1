"""The students' credentials in one private file (mode 0600, CSV or JSON), never inside a repository."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from labkit.config import CHECKOUT_DIR
from labkit.errors import ConfigError

DEFAULT_PATH = Path("~/.config/labkit/class-credentials.csv")


@dataclass(frozen=True)
class Credential:
    """How one student reaches their database."""

    key: str
    role: str
    database: str
    password: str
    database_url: str
    name: str = ""
    login: str = ""
    email: str = ""


FIELDS = [f.name for f in fields(Credential)]


def _git_root(folder: Path) -> Path | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _git_ignored(path: Path, root: Path) -> bool:
    try:
        out = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(path)], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def check_location(path: Path) -> None:
    """Refuse a credentials path inside a git checkout (this course's or any other) unless git ignores it."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    root = _git_root(folder)
    if root is None and path.resolve().is_relative_to(CHECKOUT_DIR.resolve()):
        root = CHECKOUT_DIR
    if root is not None and not _git_ignored(path, root):
        raise ConfigError(
            f"{path} lies inside the repository {root}, where passwords could be committed.",
            f"Write the credentials outside it (default {DEFAULT_PATH}) or to a git-ignored path.",
        )


class Store:
    """The credentials file: read, merge, write atomically with mode 0600."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self.is_json = self.path.suffix.lower() == ".json"

    def check(self) -> None:
        check_location(self.path)
        if self.path.exists() and self.path.stat().st_mode & 0o077:
            raise ConfigError(
                f"The credentials file {self.path} is readable by other users (mode {self.path.stat().st_mode & 0o777:o}).",
                f"chmod 600 {self.path}",
            )

    def read(self) -> dict[str, Credential]:
        """Credentials by role name (empty if there is no file yet)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            rows = json.loads(text) if self.is_json else list(csv.DictReader(io.StringIO(text)))
            found = [Credential(**{k: str(row.get(k) or "") for k in FIELDS}) for row in rows]
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"The credentials file {self.path} cannot be read: {exc}.", "Restore it, or move it away to issue new passwords."
            ) from None
        return {c.role: c for c in found if c.role}

    def write(self, credentials: dict[str, Credential]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows = [asdict(credentials[role]) for role in sorted(credentials)]
        if self.is_json:
            text = json.dumps(rows, indent=1) + "\n"
        else:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            text = buffer.getvalue()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock while reading and rewriting (the hub and the CLI may both write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
