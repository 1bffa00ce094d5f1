"""The operations lessons' notebook helpers: extra clusters where the provider allows them, and one
sentence plus quietly skipped cells where it does not (a lab reached by URL, Docker, Binder)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from labkit.config import Settings
from labkit.notebook import ops
from labkit.servers.base import ConnectionInfo


@pytest.fixture
def lab(shop: ConnectionInfo) -> ConnectionInfo:
    if os.environ.get("LABKIT_TEST_URL"):
        pytest.skip("extra clusters need the lab server labkit runs itself; LABKIT_TEST_URL points at another server")
    return shop


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    before = list(shell.input_transformers_post)
    yield shell
    shell.input_transformers_post[:] = before


def test_the_lab_server_can_run_the_lessons_and_later_cells_run(
    lab: ConnectionInfo, shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops.extra_clusters_unavailable() is None
    assert ops.require_extra_clusters("Lesson 14", shell=shell) is True
    assert capsys.readouterr().out == ""
    shell.run_cell("ran_here = 14")
    assert shell.user_ns.get("ran_here") == 14


def test_a_lab_reached_by_url_skips_the_rest_of_the_notebook_in_one_sentence(
    lab: ConnectionInfo, shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    by_url = Settings.load(server="url", database_url=lab.url())
    reason = ops.extra_clusters_unavailable(by_url)
    assert reason is not None and "url provider" in reason
    assert ops.require_extra_clusters("Lesson 14", by_url, shell=shell) is False
    out = capsys.readouterr().out
    assert out.startswith("Lesson 14 is skipped here: it starts extra PostgreSQL clusters, and extra clusters") and out.count("\n") == 1
    shell.user_ns.pop("skipped_here", None)
    result = shell.run_cell("skipped_here = 1\n1 / 0")
    assert result.success and "skipped_here" not in shell.user_ns, "a later cell ran"
    ops.require_extra_clusters("Lesson 14", by_url, shell=shell)  # a second call adds no second skipper
    assert sum(getattr(t, "__name__", "") == "skip" for t in shell.input_transformers_post) == 1
    shell.run_cell("from labkit.notebook import ops\nops.resume_cells()\nresumed_here = 1")
    shell.run_cell("after_resume = 2")
    assert shell.user_ns.get("resumed_here") == 1 and shell.user_ns.get("after_resume") == 2, (
        "the exercises after resume_cells() were skipped"
    )
