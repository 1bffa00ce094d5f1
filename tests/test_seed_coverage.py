"""Every SQL block of the course design runs somewhere in the course (sql/seed_coverage.toml).

Each entry names a file CI executes and a probe that file must contain; the files' own tests
(load, tests/test_examples.py, tests/test_schema.py, nbval) make sure they run.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOML = tomllib.loads((ROOT / "sql" / "seed_coverage.toml").read_text())
MANIFEST = TOML["block"]
TOOLING = TOML.get("tooling", [])
EXECUTED = ("sql/schema/", "sql/finish/", "sql/examples/", "sql/seed_originals/", "notebooks/")
DESIGN_SQL_BLOCKS = 10  # the course design's SQL code blocks


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    return path.read_text()


def test_every_design_block_is_mapped() -> None:
    assert len(MANIFEST) == DESIGN_SQL_BLOCKS
    assert all(block["runs"] and block["title"] for block in MANIFEST)
    for block in MANIFEST:
        kinds = {run["file"].split("/")[0] for run in block["runs"]}
        assert kinds & {"sql"}, f"{block['title']}: no runnable SQL file"


@pytest.mark.parametrize("block", MANIFEST, ids=[b["title"].split(":")[0] for b in MANIFEST])
def test_block_runs_where_the_manifest_says(block: dict) -> None:  # type: ignore[type-arg]
    for run in block["runs"]:
        assert run["file"].startswith(EXECUTED), f"{run['file']} is not among the files CI executes"
        path = ROOT / run["file"]
        assert path.exists(), f"{block['title']}: {run['file']} does not exist"
        assert run["probe"] in _text(path), f"{block['title']}: {run['probe']!r} not found in {run['file']}"


def test_the_designs_tools_and_topics_beyond_its_sql_are_taught() -> None:
    """Replication, pooling, postgres_fdw's neighbours pgvector, pg_cron and pgBadger: each points at text that exists."""
    assert {"pgvector", "pg_cron", "pgBadger", "replication", "connection pooling"} <= {entry["name"] for entry in TOOLING}
    for entry in TOOLING:
        for run in entry["runs"]:
            assert run["file"].startswith(EXECUTED), f"{run['file']} is not among the files CI executes"
            assert run["probe"] in _text(ROOT / run["file"]), f"{entry['name']}: {run['probe']!r} not found in {run['file']}"
