"""Grading in parts: `--shard I/N` runs merged with `grade merge` give exactly the unsharded gradebook."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat

from labkit.exercises import refresh
from labkit.grading import shards
from labkit.servers.base import ConnectionInfo

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = ["ada", "ada-x", "alan", "brian", "grace", "zoe", "edsger"]


def _notebook(path: Path, answers: dict[str, str]) -> None:
    cells = [nbformat.v4.new_code_cell(f'answer_{e.replace(".", "_")} = """\n{sql}\n"""') for e, sql in answers.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def grade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit.cli", "grade", *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_merged_parts_are_the_unsharded_gradebook_byte_for_byte(shop: ConnectionInfo, tmp_path: Path) -> None:
    refs = {s.exercise: s.sql for s in refresh.all_solutions(ROOT / "notebooks")}
    subs = tmp_path / "submissions"
    for number, student in enumerate(STUDENTS):
        answers = {e: (refs[e] if (number + k) % 3 else "SELECT 1 AS wrong") for k, e in enumerate(("00.1", "00.2", "00.3", "02.1"))}
        if number % 2:
            _notebook(subs / f"{student}.ipynb", answers)  # a file per student and folders, mixed
        else:
            _notebook(subs / student / "work.ipynb", answers)
    (subs / "empty").mkdir()  # a submission with no notebook: a row with its problem
    options = ["--hidden-seed", "4242", "--hidden-scale", "0.2", "--quiet"]
    whole = grade(str(subs), "--out", str(tmp_path / "whole" / "gradebook.csv"), *options)
    assert whole.returncode == 0, whole.stderr
    parts = []
    for index in (1, 2, 3):
        part = tmp_path / f"part{index}" / "gradebook.csv"
        run = grade(str(subs), "--out", str(part), "--shard", f"{index}/3", *options)
        assert run.returncode == 0, run.stderr
        parts.append(part)
    with_rows = [sum(1 for _ in csv.reader(p.open())) - 1 for p in parts]
    assert sum(with_rows) == len(STUDENTS) + 1 and all(with_rows)  # disjoint, complete, none empty here
    merged = grade("merge", *map(str, parts), "--out", str(tmp_path / "merged.csv"))
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "whole" / "gradebook.csv").read_bytes()

    missing = grade("merge", str(parts[0]), str(parts[1]), "--out", str(tmp_path / "short.csv"))
    assert missing.returncode == 2 and "missing" in missing.stderr and not (tmp_path / "short.csv").exists()
    twice = grade("merge", str(parts[0]), str(parts[0]), str(parts[1]), str(parts[2]), "--out", str(tmp_path / "twice.csv"))
    assert twice.returncode == 2 and "repeats a student" in twice.stderr
    not_a_part = grade("merge", str(tmp_path / "whole" / "gradebook.csv"), "--out", str(tmp_path / "x.csv"))
    assert not_a_part.returncode == 2 and "not a part" in not_a_part.stderr
    bad = grade(str(subs), "--shard", "4/3")
    assert bad.returncode == 2 and "between 1 and 3" in bad.stderr and "Traceback" not in bad.stderr


def test_a_students_part_is_stable_and_parts_are_disjoint() -> None:
    names = [f"student{n}" for n in range(200)]
    for count in (1, 2, 5):
        chosen = [shards.select(names, names, i, count) for i in range(1, count + 1)]
        places = sorted(p for part in chosen for p, _ in part)
        assert places == list(range(200))
    # pinned: a student's part depends on nothing but their name (not on the machine, the run or the others)
    assert [shards.part_of(n, 7) for n in ("ada", "grace", "alan", "s-001")] == [6, 5, 1, 6]
