"""The Gradescope autograder: build the zip, run its run_autograder in a folder laid out as Gradescope's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from labkit.exercises import refresh
from labkit.servers.base import ConnectionInfo
from tests.helpers_servers import clean_env, reachable, stopped_afterwards

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# Gradescope's documented results.json fields (https://gradescope-autograders.readthedocs.io/en/latest/specs/)
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format", "visibility",
             "stdout_visibility", "extra_data", "tests", "leaderboard"}  # fmt: skip
TEST_FIELDS = {
    "score",
    "max_score",
    "status",
    "name",
    "name_format",
    "number",
    "output",
    "output_format",
    "tags",
    "visibility",
    "extra_data",
}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def test_run_autograder_grades_a_submission_into_gradescope_results(shop: ConnectionInfo, tmp_path: Path) -> None:
    autograder = reachable(tmp_path / "autograder")
    build = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", "gradescope", "--out", str(tmp_path / "autograder.zip"),
                            "--exercises", "00", "--points", "00.2=2", "--hidden-seed", "4242", "--hidden-scale", "0.2"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert build.returncode == 0, build.stderr
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        names = archive.namelist()
        assert {"setup.sh", "run_autograder", "source/labkit-gradescope.json", "source/pyproject.toml"} <= set(names)
        assert not any(".venv" in n or ".labkit" in n or "__pycache__" in n for n in names)
        archive.extractall(autograder)
    (autograder / "run_autograder").chmod(0o755)
    refs = {s.exercise: s.sql for s in refresh.all_solutions(ROOT / "notebooks")}
    with shop.connect("shop") as conn:
        active = conn.execute(refs["00.1"]).fetchone()[0]  # type: ignore[index]
    answers = {"00.1": f"SELECT {active} AS active_users", "00.2": refs["00.2"], "00.3": "SELECT 1 AS wrong"}  # 00.1 hard-coded
    cells = [nbformat.v4.new_code_cell(f'answer_{e.replace(".", "_")} = """\n{sql}\n"""') for e, sql in answers.items()]
    (autograder / "submission").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=cells), autograder / "submission" / "00-welcome.ipynb")
    env = clean_env(AUTOGRADER_ROOT=str(autograder), LABKIT_PYTHON=sys.executable, PYTHONPATH=str(autograder / "source"))
    state = autograder / "labkit-server"
    with stopped_afterwards(state, env={**env, "LABKIT_DATA_DIR": str(state)}):
        run = subprocess.run([str(autograder / "run_autograder")], env=env, capture_output=True, text=True, timeout=900, cwd="/")
        assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((autograder / "results" / "results.json").read_text())
    assert set(results) <= TOP_LEVEL and all(set(t) <= TEST_FIELDS for t in results["tests"])
    assert all(t["visibility"] in VISIBILITY for t in results["tests"]) and results["visibility"] in VISIBILITY
    tests = {t["name"].split(" — ")[0] + (" (second)" if "second dataset" in t["name"] else ""): t for t in results["tests"]}
    assert (tests["Exercise 00.1"]["score"], tests["Exercise 00.1"]["max_score"], tests["Exercise 00.1"]["visibility"]) == (1, 1, "visible")
    assert tests["Exercise 00.1 (second)"]["visibility"] == "after_published"
    assert "not on a second dataset" in tests["Exercise 00.1 (second)"]["output"]
    assert (tests["Exercise 00.2"]["score"], tests["Exercise 00.2"]["max_score"]) == (2, 2)
    assert tests["Exercise 00.2 (second)"]["output"] == "Also correct on a second dataset."
    assert tests["Exercise 00.3"]["score"] == 0 and tests["Exercise 00.3"]["output"] not in ("", "Correct.")
    assert tests["Exercise 00.4"]["score"] == 0 and "No answer found" in tests["Exercise 00.4"]["output"]
    assert results["score"] == 2  # the hard-coded 00.1 loses its point once the second dataset counts
    assert os.stat(autograder / "run_autograder").st_mode & 0o111


def test_setup_sh_builds_the_image_and_its_run_autograder_grades(shop: ConnectionInfo, tmp_path: Path) -> None:
    """setup.sh as Gradescope runs it (as root; the apt step is skipped where python3 ≥ 3.11 and npm exist):
    a virtualenv with labkit, PostgreSQL 16 fetched by package name, the shop built; then run_autograder
    with that virtualenv's Python, as on Gradescope."""
    autograder = reachable(tmp_path / "autograder")
    build = subprocess.run([sys.executable, "-m", "labkit.cli", "grade", "gradescope", "--out", str(tmp_path / "autograder.zip"),
                            "--exercises", "00"], capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert build.returncode == 0, build.stderr
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        archive.extractall(autograder)
        setup_text = archive.read("setup.sh").decode()
    assert "http" not in setup_text, "setup.sh names packages, never a registry's address"
    for name in ("setup.sh", "run_autograder"):
        (autograder / name).chmod(0o755)
    env = clean_env(AUTOGRADER_ROOT=str(autograder))
    state = autograder / "labkit-server"
    with stopped_afterwards(state, env={**env, "LABKIT_DATA_DIR": str(state)}):
        setup = subprocess.run(["bash", str(autograder / "setup.sh")], env=env, capture_output=True, text=True, timeout=1800, cwd="/")
        assert setup.returncode == 0, (setup.stdout + setup.stderr)[-3000:]
        assert (autograder / "venv" / "bin" / "labkit").exists() and (state / "state.json").exists()
        refs = {s.exercise: s.sql for s in refresh.all_solutions(ROOT / "notebooks")}
        cell = nbformat.v4.new_code_cell(f'answer_00_1 = """\n{refs["00.1"]}\n"""')
        (autograder / "submission").mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), autograder / "submission" / "00-welcome.ipynb")
        run = subprocess.run([str(autograder / "run_autograder")], env=env, capture_output=True, text=True, timeout=900, cwd="/")
        assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((autograder / "results" / "results.json").read_text())
    scores = {t["name"].split(" — ")[0]: t["score"] for t in results["tests"]}
    assert scores["Exercise 00.1"] == 1 and results["score"] == 1, results
