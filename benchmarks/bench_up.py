"""Cold and warm `labkit up`, as a learner experiences them (whole processes, wall clock).

cold: a fresh data directory — initdb, start, schema, data load at the default scale, template.
warm: the server is already running and the shop loaded — attach and check.

Targets (issue): warm ≤ 2 s; cold at default scale ≤ 15 s. Prints figures; asserts nothing.
Usage: python benchmarks/bench_up.py [--runs N] [--server portable|local]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABKIT = [sys.executable, "-m", "labkit.cli"]


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(LABKIT + args, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"labkit {' '.join(args)} failed:\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server", default="portable")
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.runs):
        state = Path(tempfile.mkdtemp(prefix="labkit-bench-", dir="/var/tmp" if os.geteuid() == 0 else None))
        os.chmod(state, 0o755)
        env = {**os.environ, "LABKIT_DATA_DIR": str(state), "LABKIT_SERVER": args.server, "LABKIT_PORT": ""}
        env.pop("LABKIT_DATABASE_URL", None)
        env.pop("DATABASE_URL", None)
        try:
            cold.append(timed(["up"], env))
            warm.extend(timed(["up"], env) for _ in range(3))
        finally:
            subprocess.run([*LABKIT, "down", "--delete-data"], env=env, capture_output=True)
            shutil.rmtree(state, ignore_errors=True)
    print(f"labkit up, {args.server} provider, default scale; {args.runs} cold runs, {len(warm)} warm runs")
    print(f"  cold up: median {statistics.median(cold):6.2f} s  (min {min(cold):.2f}, max {max(cold):.2f})   target ≤ 15 s")
    print(f"  warm up: median {statistics.median(warm):6.2f} s  (min {min(warm):.2f}, max {max(warm):.2f})   target ≤ 2 s")


if __name__ == "__main__":
    main()
