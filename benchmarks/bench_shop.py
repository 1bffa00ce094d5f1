"""Loading and resetting the shop, side by side with PostgreSQL's own references.

- load: rows per second of `labkit load` (generate, COPY, keys, indexes, VACUUM ANALYZE) vs
  `pgbench -i` (generate, COPY, VACUUM, primary keys) at a similar row count, plus two floors for
  the same rows (generating them; a bare COPY FREEZE into tables without keys or indexes) that show
  how much of the gap is the data itself (wide rows, JSONB, composites, full-text columns) rather
  than the loader;
- reset: `labkit reset` (drop + clone from the template) vs a bare
  `CREATE DATABASE … TEMPLATE shop_template STRATEGY FILE_COPY`.

Targets (issue): load ≥ 1.0× pgbench's rows/s; reset ≤ 2× the bare clone. Prints figures.
Usage: python benchmarks/bench_shop.py [--runs N] [--scale S]   (uses the running lab server)
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import time

from labkit.config import Settings
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.shop import bulkload, database
from labkit.shop.generator import generate

PGBENCH_ROWS_PER_SCALE = 100_000 + 10 + 1


def pgbench_binary() -> str:
    found = shutil.which("pgbench") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None)
    if not found:
        raise SystemExit("pgbench not found (Debian: apt install postgresql-contrib or postgresql-16)")
    return found


def time_pgbench(info: ConnectionInfo, scale: int) -> float:
    with info.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_pgbench WITH (FORCE)")
        conn.execute("CREATE DATABASE bench_pgbench")
    env = {**os.environ, "PGPASSWORD": info.password or ""}
    cmd = [pgbench_binary(), "-i", "-q", "-s", str(scale), "-h", info.host, "-p", str(info.port), "-U", info.user, "bench_pgbench"]
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    with info.connect() as conn:
        conn.execute("DROP DATABASE bench_pgbench WITH (FORCE)")
    return elapsed


def time_load(info: ConnectionInfo, scale: float) -> tuple[float, int]:
    started = time.perf_counter()
    database.load(info, scale=scale, progress=False, force=True, target="bench_shop")
    elapsed = time.perf_counter() - started
    with info.connect("bench_shop") as conn:
        tables = [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")]
        rows = sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)  # type: ignore[index]
    with info.connect() as conn:
        conn.execute("DROP DATABASE bench_shop WITH (FORCE)")
    return elapsed, int(rows)


def time_floors(info: ConnectionInfo, scale: float) -> tuple[float, float]:
    """Two floors of any load of these rows: generating them (no database), and a bare COPY FREEZE of
    the generated text into column-for-column copies of the tables without keys, indexes,
    constraints or generated columns (one connection, generation excluded)."""
    started = time.perf_counter()
    tables = generate.generate(scale=scale)
    generating = time.perf_counter() - started
    with info.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_floor WITH (FORCE)")
        conn.execute("CREATE DATABASE bench_floor TEMPLATE shop_template")
    with info.connect("bench_floor") as conn:
        for t in tables:
            columns = ", ".join(f'"{c}"' for c in t.columns)
            conn.execute(f'CREATE TABLE IF NOT EXISTS "bare_{t.table}" AS SELECT {columns} FROM "{t.table}" WITH NO DATA')
        payloads = [(generate.TableData(f"bare_{t.table}", t.columns, t.lines), list(t.chunks())) for t in tables]
        started = time.perf_counter()
        for table, pieces in payloads:
            bulkload.copy_table(conn, table, pieces, freeze=True)
        copying = time.perf_counter() - started
    with info.connect() as conn:
        conn.execute("DROP DATABASE bench_floor WITH (FORCE)")
    return generating, copying


def time_bare_clone(info: ConnectionInfo) -> float:
    with info.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_clone WITH (FORCE)")
        started = time.perf_counter()
        conn.execute(f"CREATE DATABASE bench_clone TEMPLATE {database.TEMPLATE_DB} STRATEGY FILE_COPY")
        elapsed = time.perf_counter() - started
        conn.execute("DROP DATABASE bench_clone")
    return elapsed


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    settings = Settings.load()
    info = lifecycle.ensure_server(settings)
    database.ensure_shop(info, progress=False)

    loads, pgbenches = [], []
    rows = 0
    for _ in range(args.runs):
        seconds, rows = time_load(info, args.scale)
        loads.append(seconds)
        pg_scale = max(1, round(rows / PGBENCH_ROWS_PER_SCALE))
        pgbenches.append(time_pgbench(info, pg_scale))
    pg_rows = pg_scale * PGBENCH_ROWS_PER_SCALE
    ours, theirs = rows / median(loads), pg_rows / median(pgbenches)
    print(f"load   labkit scale {args.scale:g}: {rows:,} rows in {median(loads):.2f} s → {ours:,.0f} rows/s")
    print(f"       pgbench -i -s {pg_scale}: {pg_rows:,} rows in {median(pgbenches):.2f} s → {theirs:,.0f} rows/s")
    print(f"       ratio labkit/pgbench rows/s: {ours / theirs:.2f}×   (target ≥ 1.0×)")
    generating, copying = time_floors(info, args.scale)
    print(f"       floors for the same rows: generating them {generating:.2f} s; a bare COPY FREEZE into tables "
          f"without keys or indexes {copying:.2f} s → {rows / copying:,.0f} rows/s ({rows / copying / theirs:.2f}× pgbench)")

    resets, clones = [], []
    for _ in range(max(5, args.runs)):
        resets.append(database.reset(info))
        clones.append(time_bare_clone(info))
    print(f"reset  labkit reset: {median(resets) * 1000:.0f} ms   bare CREATE DATABASE … TEMPLATE: {median(clones) * 1000:.0f} ms")
    print(f"       ratio: {median(resets) / median(clones):.2f}×   (target ≤ 2×)")


if __name__ == "__main__":
    main()
