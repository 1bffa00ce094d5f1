"""Grading throughput: submissions graded per minute, each a notebook of 10 exercises.

Each submission gets its own sandbox database (a FILE_COPY clone of the shop template) and an
unprivileged role; a third of the answers are wrong, so feedback paths are exercised too.
Reference for the sandbox cost: a bare CREATE DATABASE … TEMPLATE shop_template + DROP.

Target (issue): ≥ 60 submissions per minute on a 2-core machine. Prints figures, with the peak
memory of the grader and of its checker processes (each answer is checked in a child process).
``--full-course``: every exercise of the course, the reference answers (a full-course submission);
``--hidden-seed N``: also on the hidden dataset, as ``labkit grade --hidden-seed``.
Usage: python benchmarks/bench_grading.py [--submissions N] [--workers W] [--full-course] [--hidden-seed N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from labkit.config import Settings
from labkit.exercises import checker, refresh
from labkit.grading import grader, hidden, submission
from labkit.servers import lifecycle
from labkit.shop import database

EXERCISES = ["00.1", "00.2", "00.3", "00.4", "02.1", "02.2", "02.3", "02.4", "03.1", "03.2"]
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def make_submissions(folder: Path, count: int, exercises: list[str], *, all_right: bool = False) -> None:
    references = {s.exercise: s.sql for s in refresh.all_solutions(NOTEBOOKS)}
    for index in range(count):
        cells = []
        for number, exercise in enumerate(exercises):
            sql = references[exercise] if all_right or (index + number) % 3 else "SELECT 1 AS wrong"
            cells.append(nbformat.v4.new_code_cell(f'answer_{exercise.replace(".", "_")} = """{sql}"""'))
        path = folder / f"student{index:03d}" / "work.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--workers", type=int, default=grader.Options().workers)
    parser.add_argument("--full-course", action="store_true", help="every exercise, reference answers")
    parser.add_argument("--hidden-seed", type=int, help="also check on the hidden dataset of this seed (scale 0.5)")
    args = parser.parse_args()
    info = lifecycle.ensure_server(Settings.load())
    database.ensure_shop(info, progress=False)
    exercises = sorted(checker.specs(), key=lambda e: tuple(int(p) for p in e.split("."))) if args.full_course else EXERCISES
    options = grader.Options(workers=args.workers)
    if args.hidden_seed is not None:
        hidden.prepare(info, args.hidden_seed, scale=0.5, progress=False)
        options.hidden_specs = hidden.expected_specs(info, NOTEBOOKS, exercises)

    clone = []
    with info.connect() as conn:
        for _ in range(5):
            started = time.perf_counter()
            conn.execute("CREATE DATABASE bench_clone TEMPLATE shop_template STRATEGY FILE_COPY")
            conn.execute("DROP DATABASE bench_clone")
            clone.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        make_submissions(Path(tmp), args.submissions, exercises, all_right=args.full_course)
        collected = submission.collect(Path(tmp))
        started = time.perf_counter()
        results = grader.grade_all(info, collected, exercises, options, progress=False)
        elapsed = time.perf_counter() - started

    per_submission = statistics.median(r.seconds for r in results)
    rate = len(results) / elapsed * 60
    grader_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    checker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"submissions:          {len(results)} × {len(exercises)} exercises, {args.workers} workers"
          + (", hidden dataset too" if args.hidden_seed is not None else ""))  # fmt: skip
    print(f"wall time:            {elapsed:.1f} s")
    print(f"throughput:           {rate:.0f} submissions/min  (target ≥ 60: {'met' if rate >= 60 else 'NOT met'})")
    print(f"per submission:       {per_submission * 1000:.0f} ms median (one worker)")
    print(f"bare clone + drop:    {statistics.median(clone) * 1000:.0f} ms median (sandbox reference)")
    print(f"points awarded:       {sum(r.total for r in results):g} of {sum(r.max_points for r in results):g}")
    print(f"peak memory:          grader {grader_peak:.0f} MB, largest checker process {checker_peak:.0f} MB")


if __name__ == "__main__":
    main()
