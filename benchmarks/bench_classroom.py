"""Cost of a class: provisioning seconds per student and disk per student, as a non-superuser instructor.

Makes an instructor role (CREATEDB CREATEROLE, no superuser) on the lab server, the class template,
then provisions N students from a roster, provisions them again (the idempotent path a hub takes on
every later spawn), and drops them all. Prints figures.
Usage: python benchmarks/bench_classroom.py [--students N]   (uses the lab server and its shop scale)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from labkit.classroom import provision
from labkit.classroom.credentials import Store
from labkit.classroom.roster import Student
from labkit.config import Settings
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.shop import database

INSTRUCTOR = "labkit_bench_instructor"
PREFIX = "bench_"


def _cleanup(admin: ConnectionInfo) -> None:
    with admin.connect() as conn:
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'bench\\_%'").fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
            conn.execute(f'DROP ROLE "{role}"')
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [INSTRUCTOR]).fetchone():
            conn.execute(f"DROP DATABASE IF EXISTS {provision.CLASS_TEMPLATE} WITH (FORCE)")
            conn.execute(f"DROP OWNED BY {INSTRUCTOR}")
            conn.execute(f"DROP ROLE {INSTRUCTOR}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    args = parser.parse_args()
    settings = Settings.load()
    admin = lifecycle.ensure_server(settings)
    database.ensure_shop(admin, progress=False)
    _cleanup(admin)
    with admin.connect() as conn:
        conn.execute(f"CREATE ROLE {INSTRUCTOR} LOGIN CREATEDB CREATEROLE PASSWORD 'bench'")
    scale = database.status(admin).get("scale", "?")
    instructor = ConnectionInfo(admin.host, admin.port, INSTRUCTOR, "bench", provider="url")
    students = [Student(key=f"s{n:04d}", name=f"Student {n}", line=n + 2) for n in range(args.students)]
    try:
        started = time.perf_counter()
        provision.make_template(admin, INSTRUCTOR)
        template_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "class.csv")
            started = time.perf_counter()
            report = provision.provision(instructor, students, store, prefix=PREFIX)
            first = time.perf_counter() - started
            started = time.perf_counter()
            provision.provision(instructor, students, store, prefix=PREFIX)
            again = time.perf_counter() - started
        sizes = [r.size_bytes or 0 for r in provision.listing(instructor, PREFIX)]
        with admin.connect() as conn:
            template_size = conn.execute("SELECT pg_database_size(%s)", [provision.CLASS_TEMPLATE]).fetchone()[0]  # type: ignore[index]
        per_student = [o.seconds for o in report.outcomes]
        started = time.perf_counter()
        provision.drop(instructor, [o.credential.role for o in report.outcomes])
        dropped = time.perf_counter() - started
    finally:
        _cleanup(admin)
    mean_size = statistics.mean(sizes)
    print(f"shop scale {scale}, {args.students} students, instructor without superuser")
    print(f"class template (once, as superuser):  {template_seconds:.1f} s, {template_size / 1e6:.0f} MB")
    print(f"provisioning:      {first / len(students):.2f} s per student (median {statistics.median(per_student):.2f} s, "
          f"max {max(per_student):.2f} s; {first:.1f} s in all)")  # fmt: skip
    print(f"again (no change): {again / len(students) * 1000:.1f} ms per student (what a hub pays on later spawns)")
    print(f"disk per student:  {mean_size / 1e6:.0f} MB  → 200 students ≈ {mean_size * 200 / 1e9:.1f} GB")
    print(f"drop:              {dropped / len(students):.2f} s per student")


if __name__ == "__main__":
    main()
