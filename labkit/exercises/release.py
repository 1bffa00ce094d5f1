"""Student copies of the instructor notebooks: solutions replaced by stubs, nothing else lost."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from labkit.exercises.refresh import exercise_id

STUB = '"""\n-- Write your query here.\n"""'


def _stub(source: str) -> str:
    """Keep each ``answer_NN_K = ...`` assignment, with an empty query."""
    lines = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and exercise_id(target.id):
                    lines.append(f"{target.id} = {STUB}")
    return "\n".join(lines) or "# Your answer here."


def release_notebook(source: Path, target: Path) -> int:
    """Write the student version of one notebook; returns how many solutions were removed."""
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
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return removed


def release(source_dir: Path, out_dir: Path) -> dict[str, int]:
    """Student versions of every numbered notebook in ``source_dir`` (plus non-notebook files kept as they are)."""
    report = {}
    for path in sorted(source_dir.glob("[0-9][0-9]-*.ipynb")):
        report[path.name] = release_notebook(path, out_dir / path.name)
    for extra in ("README.md", "sanitize.cfg"):
        if (source_dir / extra).exists():
            (out_dir / extra).write_text((source_dir / extra).read_text())
    return report
