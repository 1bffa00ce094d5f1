"""Every notebook runs top to bottom the way a learner runs it (nbclient, like `jupyter execute`).

nbval (run on notebooks/ by pytest) compares stored outputs; it does not notice a JupySQL
UsageError printed to stderr, nor a cell tagged ``raises-exception`` that did not raise.
This module checks exactly those: no unexpected error anywhere, and every expected error is
the PostgreSQL error the lesson promises (``metadata.labkit.expect_error``, a substring).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from labkit.servers.base import ConnectionInfo

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))
CELL_TIMEOUT_S = 300


def _errors(cell: nbformat.NotebookNode) -> list[str]:
    """Error texts a cell produced: exceptions and UsageError-style messages on stderr."""
    found = []
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            found.append(f"{output.ename}: {output.evalue}")
        elif output.output_type == "stream" and output.name == "stderr":
            text = output.text
            if "UsageError" in text or "Traceback" in text or "(psycopg.errors." in text:
                found.append(text)
    return found


def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})  # fmt: skip
    client.execute()
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, shop: ConnectionInfo) -> None:
    nb = execute(path)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = _errors(cell)
        tags = cell.metadata.get("tags", [])
        if "raises-exception" in tags:
            expected = cell.metadata.get("labkit", {}).get("expect_error")
            if not expected:
                problems.append(f"cell {index}: tagged raises-exception without metadata.labkit.expect_error")
            elif not any(expected in e for e in errors):
                problems.append(f"cell {index}: expected an error containing {expected!r}, got {errors or 'no error'}")
        elif errors:
            problems.append(f"cell {index}: unexpected error: {errors[0][:500]}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, "the course has no notebooks"


def test_navigation_is_consistent() -> None:
    """Each notebook is in the index, starts with its number and the lab call, and links to its neighbours."""
    index = (NOTEBOOKS[0].parent / "README.md").read_text()
    for position, path in enumerate(NOTEBOOKS):
        nb = nbformat.read(path, as_version=4)
        assert f"]({path.name})" in index, f"{path.name} is missing from notebooks/README.md"
        assert nb.cells[0].source.startswith(f"# {path.name[:2]} · "), f"{path.name}: the title cell must start with '# {path.name[:2]} · '"
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "labkit.lab()" in first_code.source, f"{path.name}: the first code cell must call labkit.lab()"
        footer = nb.cells[-1].source
        assert "(README.md)" in footer, f"{path.name}: the last cell must link to the index"
        if position > 0:
            previous = NOTEBOOKS[position - 1].name
            assert f"Previous: [{previous[:2]} · " in footer and f"({previous})" in footer, f"{path.name}: no link to {previous}"
        if position < len(NOTEBOOKS) - 1:
            assert f"({NOTEBOOKS[position + 1].name})" in footer, f"{path.name}: no link to the next notebook"


OPERATIONS = [p for p in NOTEBOOKS if p.name[:2] in ("13", "14", "15", "16")]
SKIPS = {"13": "This lesson needs PostgreSQL programs on this machine and skips here", "14": "Lesson 14 is skipped here"}


@pytest.mark.slow
@pytest.mark.parametrize("path", OPERATIONS, ids=[p.stem for p in OPERATIONS])
def test_operations_lessons_on_a_server_reached_by_url(path: Path, shop: ConnectionInfo, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:  # fmt: skip
    """As on a hub or a managed server (the url provider): lessons that need PostgreSQL programs or extra
    clusters next to the server say so in one sentence and run no later cell; the others run. No cell fails."""
    monkeypatch.setenv("LABKIT_SERVER", "url")
    monkeypatch.setenv("LABKIT_DATABASE_URL", shop.url("shop"))
    monkeypatch.setenv("LABKIT_DATA_DIR", str(tmp_path))
    nb = execute(path)
    problems = [f"cell {i}: {e[0][:300]}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
                if (e := _errors(c)) and "raises-exception" not in c.metadata.get("tags", [])]  # fmt: skip
    assert not problems, f"{path.name} by url:\n" + "\n".join(problems)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    if skip := SKIPS.get(path.name[:2]):
        assert printed.count(skip) == 1, printed[:2000]
        at = next(i for i, c in enumerate(nb.cells) if skip in str(c.get("outputs", "")))
        resumed = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "ops.resume_cells()" in c.source), len(nb.cells))
        ran = [i for i, c in enumerate(nb.cells[at + 1 : resumed], at + 1) if c.cell_type == "code" and c.get("outputs")]
        assert not ran, f"cells after the skip (before any resume_cells) printed something: {ran}"
    else:
        assert "skipped here" not in printed and "skips here" not in printed
