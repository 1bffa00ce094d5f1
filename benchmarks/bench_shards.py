"""Grading throughput with and without shards: submissions per minute, unsharded vs 1 and 2 parts.

Each run is the real command (`labkit grade`, `--shard I/N`, then `labkit grade merge`), so start-up
costs count. The N parts run at the same time on this machine, each with a PostgreSQL of its own
(started and loaded before the clock starts), as they would on N machines; the merged gradebook is
checked to be the unsharded one byte for byte.
Usage: python benchmarks/bench_shards.py [--submissions N]   (the unsharded run uses the lab server)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_grading import EXERCISES, make_submissions

from labkit.config import Settings
from labkit.servers import lifecycle
from labkit.shop import database

LABKIT = [sys.executable, "-m", "labkit.cli", "grade"]


def _env(state: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LABKIT_DATABASE_URL", "DATABASE_URL")}
    return {**env, "LABKIT_DATA_DIR": str(state)} if state else env


def run_parts(folder: Path, out: Path, count: int, states: list[Path]) -> float:
    """Wall time of ``count`` parts run at once, plus the merge (count 0: one unsharded run)."""
    exercises = ["--exercises", ",".join(EXERCISES), "--quiet"]
    started = time.perf_counter()
    if count == 0:
        subprocess.run([*LABKIT, str(folder), "--out", str(out), *exercises], check=True, capture_output=True, env=_env(None))
        return time.perf_counter() - started
    parts = [out.with_name(f"part{i}.csv") for i in range(1, count + 1)]
    running = [
        subprocess.Popen(
            [*LABKIT, str(folder), "--out", str(p), "--shard", f"{i}/{count}", *exercises],
            stdout=subprocess.DEVNULL,
            env=_env(states[i - 1]),
        )
        for i, p in enumerate(parts, start=1)
    ]
    for process in running:
        if process.wait() != 0:
            raise SystemExit("a shard failed")
    subprocess.run([*LABKIT, "merge", *map(str, parts), "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=40)
    args = parser.parse_args()
    info = lifecycle.ensure_server(Settings.load())
    database.ensure_shop(info, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        make_submissions(folder, args.submissions)
        states = [Path(tmp) / f"server{i}" for i in (1, 2)]
        figures = {}
        try:
            for state in states:  # one server per part, as one per machine
                subprocess.run([sys.executable, "-m", "labkit.cli", "up"], check=True, capture_output=True, env=_env(state))
            for label, count in (("unsharded", 0), ("1 shard", 1), ("2 shards", 2)):
                out = Path(tmp) / label.replace(" ", "_") / "gradebook.csv"
                out.parent.mkdir()
                figures[label] = (run_parts(folder, out, count, states), out.read_bytes())
        finally:
            for state in states:
                with contextlib.suppress(subprocess.SubprocessError):
                    down = [sys.executable, "-m", "labkit.cli", "down", "--delete-data"]
                    subprocess.run(down, capture_output=True, env=_env(state), timeout=120)
    reference = figures["unsharded"][1]
    print(f"{args.submissions} submissions × {len(EXERCISES)} exercises, parts run at once on this machine")
    for label, (seconds, gradebook) in figures.items():
        same = "same gradebook" if gradebook == reference else "DIFFERENT gradebook"
        print(f"{label:<10} {seconds:6.1f} s  {args.submissions / seconds * 60:5.0f} submissions/min  ({same})")


if __name__ == "__main__":
    main()
