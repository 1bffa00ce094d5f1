"""Conveniences for the operations lessons (replication, backups, pooling): extra clusters from a notebook,
and a one-sentence skip where the lab's provider cannot run them."""

from __future__ import annotations

from typing import Any

from labkit.config import Settings
from labkit.errors import LabkitError
from labkit.servers import extra

SKIPPED_CELL = ["pass\n"]


def extra_clusters_unavailable(settings: Settings | None = None) -> str | None:
    """Why this machine cannot start extra clusters for the lab (a sentence), or None if it can."""
    settings = settings or Settings.load()
    try:
        extra.lab_install(settings)
        extra.lab_server(settings)
    except LabkitError as exc:
        return f"{exc.message} {exc.hint or ''}".strip()
    return None


RESUME_CALL = "ops.resume_cells()"


def _skip_every_later_cell(shell: Any) -> None:
    """Make each cell run after this one do nothing (the lesson cannot run here), up to a cell that
    calls ``ops.resume_cells()`` (e.g. where the exercises begin: they need only the shop)."""

    def skip(lines: list[str]) -> list[str]:
        return lines if any(RESUME_CALL in line for line in lines) else SKIPPED_CELL

    if not any(getattr(t, "__name__", "") == "skip" for t in shell.input_transformers_post):
        shell.input_transformers_post.append(skip)


def resume_cells(shell: Any = None) -> None:
    """Run the cells after this one again, if ``require_extra_clusters`` skipped the lesson's cells."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None:
        shell.input_transformers_post[:] = [t for t in shell.input_transformers_post if getattr(t, "__name__", "") != "skip"]


def require_extra_clusters(lesson: str, settings: Settings | None = None, shell: Any = None) -> bool:
    """True if ``lesson`` can start extra clusters here; else print one sentence saying why not and skip the
    notebook's next cells (in IPython) up to ``resume_cells()``, so the lesson ends quietly instead of failing."""
    reason = extra_clusters_unavailable(settings)
    if reason is None:
        return True
    print(f"{lesson} is skipped here, its cells do nothing: {reason}")
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
    if shell is not None:
        _skip_every_later_cell(shell)
    return False


def cluster(name: str, **options: Any) -> extra.ExtraCluster:
    """An extra cluster for a lesson (``extra.extra_cluster`` with the notebook's settings)."""
    return extra.extra_cluster(name, Settings.load(), **options)


def remove_leftover_clusters() -> list[str]:
    """Remove extra clusters left by an earlier kernel that is gone (an interrupted run); their names."""
    return extra.cleanup_leftovers(Settings.load())
