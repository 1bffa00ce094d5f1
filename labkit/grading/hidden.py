"""A second dataset with a seed only the instructor knows, and the expected results on it.

A query that hard-codes the course data's answer (ids, dates, counts) passes on the public
shop but not here; nor does a date bound off by one (this dataset has rows on month
boundaries). The expected results come from the instructor's reference solutions, run on
this dataset; plan exercises are left out (they check how, not what).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.config import SQL_DIR
from labkit.exercises import checker, refresh
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

HIDDEN_DB = "shop_hidden"
VARIATION_SQL = SQL_DIR / "grading" / "hidden.sql"


def prepare(info: ConnectionInfo, seed: int, *, scale: float = 0.5, progress: bool = True) -> None:
    """Load (once per seed and scale) the hidden dataset as a template database, with rows on
    month boundaries so that an off-by-one date bound (``>`` for ``>=``) gives another result,
    and with the variations of sql/grading/hidden.sql (categories, table sizes)."""
    database.load(info, seed=seed, scale=scale, target=HIDDEN_DB, progress=progress, boundaries=True)
    with info.connect(HIDDEN_DB) as conn:
        if conn.execute("SELECT 1 FROM labkit_meta WHERE key = 'hidden_variation'").fetchone():
            return
        with conn.transaction():
            conn.execute(VARIATION_SQL.read_text())  # type: ignore[arg-type]
        conn.execute("VACUUM (FULL, ANALYZE) logs")
        conn.execute("ANALYZE categories")


def expected_specs(info: ConnectionInfo, solutions_dir: Path, exercises: list[str]) -> dict[str, dict[str, Any]]:
    """Each exercise's spec with the expected fingerprint computed on the hidden dataset."""
    references = {s.exercise: s for s in refresh.all_solutions(solutions_dir)}
    missing = [e for e in exercises if e not in references and checker.spec(e).get("kind", "result") != "plan"]
    if missing:
        raise FileNotFoundError(
            f"No reference solution for {', '.join(missing)} in {solutions_dir}: the hidden dataset needs the instructor notebooks."
        )
    specs: dict[str, dict[str, Any]] = {}
    with info.connect(HIDDEN_DB) as conn:
        for exercise in exercises:
            spec = checker.spec(exercise)
            if spec.get("kind", "result") == "plan":
                continue
            specs[exercise] = {**spec, "expected": refresh.expected_for(conn, spec, references[exercise].sql)}
    return specs
