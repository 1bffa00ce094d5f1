"""The student workspace: the course's notebooks with solutions replaced by stubs, in a folder git never tracks.

``labkit lab`` opens it. It is made from the instructor notebooks once, as ``labkit release``
makes a class's copies (the same code), and kept in step with the course without losing a
student's work: a small manifest records what was released (a hash per file), so an update can
tell "the student edited it" from "the course changed it".

- a new course notebook appears in the workspace;
- a changed one replaces the student's copy only if the student never changed that copy;
  otherwise it is offered beside it (``03-window-functions.new.ipynb``), the student's file untouched;
- a deleted copy comes back fresh (delete a notebook to start it again).

``reference_solution`` serves ``shop.solution()``: a reference answer read from the instructor
notebooks (never written into the workspace), shown only after a checked attempt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from labkit.config import NOTEBOOKS_DIR, WORKSPACE_ENV, Settings
from labkit.exercises.release import ReleaseError, atomic_write, course_files, digest, refuse_source_folder, student_text

SOLUTIONS_ENV = "LABKIT_SOLUTIONS"
MANIFEST = ".labkit-course.json"
WORKSPACE_FILES = ("README.md",)  # besides the notebooks; nbval's sanitize.cfg is not for students


@dataclass
class WorkspaceReport:
    """What one update of the workspace did."""

    folder: Path
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    offered: dict[str, str] = field(default_factory=dict)  # the student's file -> the new version beside it
    kept_offer: list[str] = field(default_factory=list)  # an offer the student edited: not replaced

    def lines(self) -> list[str]:
        """Short messages for the terminal; nothing when the workspace was already in step."""
        out = []
        if self.created:
            out.append(f"New in your workspace {self.folder}: {', '.join(self.created)}")
        if self.updated:
            out.append(f"Updated to the course's new version (you had not changed them): {', '.join(self.updated)}")
        for mine, new in self.offered.items():
            out.append(f"The course changed {mine}; your copy stays as it is, the new version is beside it: {new}")
        for new in self.kept_offer:
            out.append(f"{new} was edited, so the course's newest version was not written over it.")
        return out


def workspace_dir(settings: Settings | None = None) -> Path:
    """``LABKIT_WORKSPACE`` (e.g. the home folder on a hub), else ``workspace/`` in the project folder."""
    if env := os.environ.get(WORKSPACE_ENV):
        return Path(env).expanduser().resolve()
    return (settings or Settings.load()).project_dir / "workspace"


def offer_name(name: str) -> str:
    """Where a changed course file is offered: ``03-x.ipynb`` -> ``03-x.new.ipynb``."""
    path = Path(name)
    return f"{path.stem}.new{path.suffix}"


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if isinstance(data, dict) else {}


def _write_manifest(path: Path, files: dict[str, dict[str, str]]) -> None:
    atomic_write(path, json.dumps({"about": "what labkit released into this workspace (sha256 per file)", "files": files},
                                  indent=1, sort_keys=True) + "\n")  # fmt: skip


def _hash_of(path: Path) -> str | None:
    return digest(path.read_bytes()) if path.is_file() else None


def update(folder: Path, course_dir: Path = NOTEBOOKS_DIR) -> WorkspaceReport:
    """Make or update the workspace ``folder`` from the instructor notebooks in ``course_dir``; never loses a student's edit."""
    files = [p for p in course_files(course_dir) if p.suffix == ".ipynb" or p.name in WORKSPACE_FILES]
    refuse_source_folder(course_dir, folder, may_hold_it=True)  # e.g. a home folder that holds the checkout
    report = WorkspaceReport(folder)
    if not folder.exists():
        atomic_write(folder / ".gitignore", "# the student's own copies: never tracked by git\n*\n")
    manifest_path = folder / MANIFEST
    manifest = _read_manifest(manifest_path)
    for path in files:
        text = student_text(path)[0] if path.suffix == ".ipynb" else path.read_text()
        course = digest(text)
        entry = manifest.setdefault(path.name, {})
        target = folder / path.name
        mine = _hash_of(target)
        if mine is None:  # new, or deleted by the student: a fresh copy loses nothing
            atomic_write(target, text)
            report.created.append(path.name)
            entry["released"] = course
        elif mine == course:
            entry["released"] = course
        elif entry.get("released") == course:
            pass  # the course did not change; the student did
        elif mine == entry.get("released"):  # the student never changed the copy: update it in place
            atomic_write(target, text)
            report.updated.append(path.name)
            entry["released"] = course
        else:
            offer = folder / offer_name(path.name)
            theirs = _hash_of(offer)
            if theirs == course or (theirs is None and entry.get("offered") == course):
                pass  # already offered, as it is (or the student took what they wanted and deleted it)
            elif theirs is not None and theirs != entry.get("offered"):
                report.kept_offer.append(offer.name)
            else:
                atomic_write(offer, text)
                report.offered[path.name] = offer.name
                entry["offered"] = course
    _write_manifest(manifest_path, manifest)
    return report


def prepare(settings: Settings | None = None) -> WorkspaceReport:
    """The workspace of this project (made on first use), in step with the course."""
    folder = workspace_dir(settings)
    try:
        return update(folder)
    except ReleaseError:
        raise
    except OSError as exc:
        raise ReleaseError(f"Cannot prepare the student workspace {folder}: {exc.strerror or exc}.",
                           f"Set {WORKSPACE_ENV} to a folder you can write to.") from exc  # fmt: skip


class Shown(str):
    """Text that a notebook shows as it is (no quotes), and that prints the same."""

    def __repr__(self) -> str:
        return str(self)


def reference_solution(exercise: str, attempts: int, course_dir: Path = NOTEBOOKS_DIR) -> Shown:
    """The reference answer to ``exercise`` from the instructor notebooks, once the learner has checked an attempt."""
    variable = f"answer_{exercise.replace('.', '_')}"
    if os.environ.get(SOLUTIONS_ENV, "").strip().lower() in {"0", "off", "no", "false"}:
        return Shown(f"Reference solutions are switched off here ({SOLUTIONS_ENV}); ask your instructor.")
    if attempts < 1:
        return Shown(f"Try it first: write your answer in {variable} and run its check cell, shop.check(\"{exercise}\", {variable}). "
                     f"After one checked attempt, shop.solution(\"{exercise}\") shows a reference solution "
                     f"(and shop.hint(\"{exercise}\") helps before that).")  # fmt: skip
    from labkit.exercises.refresh import all_solutions

    try:
        found = {s.exercise: s for s in all_solutions(course_dir)}
    except OSError:
        found = {}
    if exercise not in found:
        return Shown(f"No reference solution for {exercise} is available here (the instructor notebooks are not installed).")
    solution = found[exercise]
    return Shown(f"A reference solution for {exercise} (yours may differ and still be right):\n\n"
                 f"{solution.sql.strip()}")  # fmt: skip
