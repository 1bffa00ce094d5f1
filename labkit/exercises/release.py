"""Student copies of the instructor notebooks: solutions replaced by stubs, nothing else lost.

One implementation serves both ``labkit release`` (a class's copies) and the student workspace
that ``labkit lab`` opens. Writing never loses work: a file that differs from what would be written
is skipped unless forced, every write is atomic (a temporary file renamed into place), and the
instructor folder itself is never a target.
"""

from __future__ import annotations

import ast
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from labkit.errors import LabkitError
from labkit.exercises.refresh import exercise_id

STUB = '"""\n-- Write your query here.\n"""'
NOTEBOOK_GLOB = "[0-9][0-9]-*.ipynb"
EXTRAS = ("README.md", "sanitize.cfg")


class ReleaseError(LabkitError):
    """A release (or a student workspace) cannot be written as asked."""

    exit_code = 2


@dataclass
class ReleaseReport:
    """What a release did, file by file."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    solutions: dict[str, int] = field(default_factory=dict)


def _stub(source: str) -> str:
    """Keep each ``answer_NN_K = ...`` assignment, with an empty query."""
    lines = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and exercise_id(target.id):
                    lines.append(f"{target.id} = {STUB}")
    return "\n".join(lines) or "# Your answer here."


def student_text(source: Path) -> tuple[str, int]:
    """The student version of one notebook as file text, and how many solutions it lost."""
    nb = nbformat.read(source, as_version=4)
    kept = []
    removed = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "instructor" in tags:
            continue
        if "solution" in tags:
            cell.source = _stub(cell.source)
            cell.metadata.pop("labkit", None)
            removed += 1
        if cell.cell_type == "code" and ("solution" in tags or "check" in tags):
            cell.outputs = []
            cell.execution_count = None
        kept.append(cell)
    nb.cells = kept
    text = nbformat.writes(nb)
    return (text if text.endswith("\n") else text + "\n"), removed


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def refuse_source_folder(source_dir: Path, out_dir: Path, *, may_hold_it: bool = False) -> None:
    """Raise if ``out_dir`` is ``source_dir``, inside it, or holds it (unless ``may_hold_it``); symlinks and ``.`` resolved."""
    source, out = source_dir.resolve(), out_dir.resolve()
    if out.is_relative_to(source) or (source.is_relative_to(out) and not may_hold_it):
        raise ReleaseError(
            f"Refusing to write student copies to {out_dir}: it is, holds or lies inside the instructor folder {source}, "
            "whose solutions would be replaced by stubs.",
            "Choose a folder outside it, e.g. --out release/.",
        )


def course_files(source_dir: Path) -> list[Path]:
    """The numbered notebooks of ``source_dir`` and the extras beside them; a clear error when there are none."""
    if not source_dir.is_dir():
        raise ReleaseError(f"No course folder at {source_dir}.", "Name the instructor notebooks folder, e.g. labkit release notebooks.")
    notebooks = sorted(source_dir.glob(NOTEBOOK_GLOB))
    if not notebooks:
        raise ReleaseError(f"{source_dir} holds no course notebooks (NN-topic.ipynb).", "Name the instructor notebooks folder.")
    return notebooks + [source_dir / name for name in EXTRAS if (source_dir / name).is_file()]


def released_text(path: Path) -> tuple[str, int]:
    """What a release writes for one course file: a notebook's student version, any other file as it is."""
    if path.suffix == ".ipynb":
        return student_text(path)
    return path.read_text(), 0


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder: a reader (or a crash) sees the old file or the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # read-only folder or file system, no space, a file where the folder should be
        raise ReleaseError(f"Cannot write into {path.parent}: {exc.strerror or exc}.", "Choose a folder you can write to.") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # no space left, a file size limit, …
            message = f"Could not write {path}: {exc.strerror or exc}; it is unchanged."
            raise ReleaseError(message, "Free some space and run it again.") from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def release(source_dir: Path, out_dir: Path, *, force: bool = False) -> ReleaseReport:
    """Student versions of every numbered notebook in ``source_dir`` (plus its README and nbval settings) in ``out_dir``.

    A file already in ``out_dir`` that differs from what would be written is skipped (a student's
    edits, an older release) unless ``force``."""
    files = course_files(source_dir)
    refuse_source_folder(source_dir, out_dir)
    report = ReleaseReport()
    for path in files:
        text, removed = released_text(path)
        if path.suffix == ".ipynb":
            report.solutions[path.name] = removed
        target = out_dir / path.name
        if target.is_file() and target.read_bytes() == text.encode():
            report.unchanged.append(path.name)
        elif target.exists() and not force:
            report.skipped.append(path.name)
        else:
            atomic_write(target, text)
            report.written.append(path.name)
    return report
