"""A database per student on a shared server: rosters, provisioning as a non-superuser instructor, isolation."""

from __future__ import annotations

import csv
import dataclasses
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from labkit.classroom import provision
from labkit.classroom.credentials import Store
from labkit.classroom.provision import ClassroomError, Limits
from labkit.classroom.roster import RosterError, Student, read_roster, role_name
from labkit.errors import ConfigError
from labkit.servers.base import ConnectionInfo
from tests.helpers_servers import LABKIT, PROJECT_ROOT, clean_env

INSTRUCTOR = "labkit_test_instructor"
PREFIX = "tcls_"
CANVAS = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Lab 1 (123)\n"
    "    Points Possible,,,,,10\n"
    '"Lovelace, Ada",9001,s-001,ada,A,\n'
    "Alan Turing,9002,s-002,alan,A,\n"
    '"Brian O\'Neil",9003,"o\'neil""; DROP ROLE x; --",brian,B,\n'
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- rosters and names (no server) ---


def test_canvas_moodle_and_plain_rosters_are_read(tmp_path: Path) -> None:
    canvas = read_roster(write(tmp_path / "canvas.csv", "\ufeff" + CANVAS))
    assert [(s.key, s.name, s.login) for s in canvas] == [
        ("s-001", "Lovelace, Ada", "ada"), ("s-002", "Alan Turing", "alan"), ("o'neil\"; DROP ROLE x; --", "Brian O'Neil", "brian"),
    ]  # fmt: skip
    moodle = read_roster(write(tmp_path / "moodle.csv", "First name;Surname;ID number;Email address\nAda;Lovelace;m1;ada@uni.example\n"))
    assert moodle == [Student(key="m1", name="Ada Lovelace", email="ada@uni.example", line=2)]
    plain = read_roster(write(tmp_path / "plain.csv", "name,email\nGrace Hopper,grace@uni.example\n"))
    assert plain[0].key == "grace@uni.example"
    canvas_no_sis = read_roster(write(tmp_path / "nosis.csv", "Student,ID,SIS User ID,SIS Login ID\nTest Student,77,,\n"))
    assert canvas_no_sis[0].key == "77"


def test_bad_rows_get_one_message_each(tmp_path: Path) -> None:
    roster = write(
        tmp_path / "bad.csv",
        "name,email,id\nNo Id,,\nBad Mail,not-an-address,x1\nFirst,a@x.example,a.b\nSecond,b@x.example,a-b\n"
        "Twin,c@x.example,a.b\nSymbols,d@x.example,!!!\n",
    )
    with pytest.raises(RosterError) as caught:
        read_roster(roster)
    text = str(caught.value)
    for line in ("line 2: no student id", "line 3: 'not-an-address' is not an email", "line 5: 'a-b' has the id 'a.b'",
                 "line 6: 'a.b' has the same id", "line 7: The student id '!!!'"):  # fmt: skip
        assert line in text, text
    result = subprocess.run([*LABKIT, "class", "provision", str(roster), "--url", "postgresql://nobody@127.0.0.1:1/postgres"],
                            env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr and "line 5" in result.stderr
    missing = subprocess.run([*LABKIT, "class", "provision", str(tmp_path / "none.csv"), "--url", "postgresql://x@127.0.0.1:1/postgres"],
                             env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "There is no roster" in missing.stderr and "Traceback" not in missing.stderr


def test_an_unreachable_server_is_one_message(tmp_path: Path) -> None:
    result = subprocess.run([*LABKIT, "class", "list", "--url", "postgresql://instructor@127.0.0.1:1/postgres"],
                            env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 5 and "Nothing answers at 127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_names_are_safe_identifiers_and_distinct() -> None:
    names = [role_name(k, PREFIX) for k in ("Ada", "o'neil\"; DROP ROLE x; --", "Zoë", "x" * 200, "x" * 199 + "y")]
    assert names[:3] == ["tcls_ada", "tcls_o_neil_drop_role_x", "tcls_zoe"]
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() for n in names)
    assert len(set(names)) == len(names)
    with pytest.raises(RosterError):
        role_name("ok", "Bad-Prefix")


# --- on a real server, as an instructor role without superuser ---


@pytest.fixture(scope="module")
def instructor(shop: ConnectionInfo) -> Iterator[ConnectionInfo]:
    """A CREATEDB CREATEROLE (not superuser) role with the class template, made once by the superuser."""
    with shop.connect() as admin:
        _drop_class(admin)
        admin.execute(f"CREATE ROLE {INSTRUCTOR} LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD 'teach-sql'")
    provision.make_template(shop, INSTRUCTOR, force=True)
    yield dataclasses.replace(shop, user=INSTRUCTOR, password="teach-sql")
    with shop.connect() as admin:
        _drop_class(admin)


def _drop_class(admin: psycopg.Connection) -> None:
    for (role,) in admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tcls\\_%'").fetchall():
        admin.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
        admin.execute(f'DROP ROLE "{role}"')
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [INSTRUCTOR]).fetchone():
        admin.execute(f"DROP DATABASE IF EXISTS {provision.CLASS_TEMPLATE} WITH (FORCE)")
        for (db,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'labkit\\_reset\\_%'").fetchall():
            admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        admin.execute(f"DROP OWNED BY {INSTRUCTOR}")
        admin.execute(f"DROP ROLE {INSTRUCTOR}")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "private" / "class.csv")


def credentials(store: Store) -> dict[str, dict[str, str]]:
    with store.path.open() as f:
        return {row["key"]: row for row in csv.DictReader(f)}


def as_student(cred: dict[str, str], dbname: str | None = None) -> psycopg.Connection:
    url = cred["database_url"] if dbname is None else cred["database_url"].rsplit("/", 1)[0] + "/" + dbname
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def provision_roster(instructor: ConnectionInfo, tmp_path: Path, store: Store, text: str = CANVAS) -> provision.Report:
    students = read_roster(write(tmp_path / "roster.csv", text))
    return provision.provision(instructor, students, store, limits=Limits(connection_limit=3, statement_timeout="7s"), prefix=PREFIX)


def test_instructor_is_not_superuser_and_a_plain_role_is_refused(instructor: ConnectionInfo, shop: ConnectionInfo, store: Store) -> None:
    with instructor.connect() as conn:
        assert conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False, True, True,
        )  # fmt: skip
    with shop.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS tcls_plain")
        admin.execute("CREATE ROLE tcls_plain LOGIN PASSWORD 'p'")
    plain = dataclasses.replace(shop, user="tcls_plain", password="p")
    with pytest.raises(ClassroomError, match="may not create roles and databases"):
        provision.provision(plain, [Student(key="x")], store, prefix=PREFIX)
    assert not store.path.exists() or not credentials(store)


def test_students_are_isolated_from_each_other(instructor: ConnectionInfo, tmp_path: Path, store: Store) -> None:
    report = provision_roster(instructor, tmp_path, store)
    assert [o.credential.role for o in report.outcomes] == ["tcls_s_001", "tcls_s_002", "tcls_o_neil_drop_role_x"]
    assert report.not_set == ["temp_file_limit"]  # superuser-only unless granted: reported, not silently skipped
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    creds = credentials(store)
    a, b = creds["s-001"], creds["s-002"]

    with as_student(a) as conn:
        assert conn.execute("SELECT current_user, current_database(), count(*) > 0 FROM users").fetchone() == (
            "tcls_s_001",
            "tcls_s_001",
            True,
        )
        conn.execute("CREATE INDEX ON orders (created_at)")  # the student owns the shop's tables
        conn.execute("CREATE TABLE mine AS SELECT 42 AS answer")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("7s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("10min",)
        for statement in ("CREATE DATABASE tcls_evil", "CREATE ROLE tcls_evil", "ALTER ROLE tcls_s_002 PASSWORD 'x'",
                          "GRANT tcls_s_002 TO tcls_s_001", "SET temp_file_limit = -1"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    for other in (b["database"], provision.CLASS_TEMPLATE):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            as_student(a, other)

    with as_student(
        b,
    ) as b_conn:
        b_conn.execute("BEGIN")
        b_conn.execute("SELECT 'b-secret-query' AS marker").fetchall()
        with as_student(a) as a_conn:
            seen = a_conn.execute("SELECT query FROM pg_stat_activity WHERE usename = 'tcls_s_002'").fetchall()
            assert seen == [("<insufficient privilege>",)]
        with instructor.connect() as teacher:
            assert teacher.execute("SELECT query FROM pg_stat_activity WHERE usename = 'tcls_s_002'").fetchall() == [
                ("SELECT 'b-secret-query' AS marker",)
            ]
        b_conn.execute("ROLLBACK")

    held = [as_student(a) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            as_student(a)
        with instructor.connect(), as_student(b):
            pass  # the others still get in
    finally:
        for conn in held:
            conn.close()

    for cred in creds.values():
        with instructor.connect(cred["database"]) as teacher:
            assert teacher.execute("SELECT count(*) > 0 FROM users").fetchone() == (True,)
    with instructor.connect(a["database"]) as teacher:
        assert teacher.execute("SELECT answer FROM mine").fetchone() == (42,)


def test_provisioning_again_changes_nothing_and_adds_new_students(instructor: ConnectionInfo, tmp_path: Path, store: Store) -> None:
    provision_roster(instructor, tmp_path, store)
    before = store.path.read_text()
    with as_student(credentials(store)["s-001"]) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    again = provision_roster(instructor, tmp_path, store)
    assert not any(o.changed for o in again.outcomes)
    assert store.path.read_text() == before
    more = provision_roster(instructor, tmp_path, store, CANVAS + "Grace Hopper,9004,s-004,grace,B,\n")
    assert [o.credential.key for o in more.outcomes if o.changed] == ["s-004"]
    creds = credentials(store)
    with as_student(creds["s-001"]) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    with as_student(creds["s-004"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("tcls_s_004",)
    # a lost credentials file: the role keeps its database, and gets a new password that is recorded
    store.path.unlink()
    lost = provision_roster(instructor, tmp_path, store)
    assert all(o.new_password and not o.created_database for o in lost.outcomes)
    fresh = credentials(store)["s-001"]
    assert fresh["password"] != creds["s-001"]["password"]
    with as_student(fresh) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_a_role_or_database_labkit_did_not_make_is_never_touched(instructor: ConnectionInfo, shop: ConnectionInfo, store: Store) -> None:
    with shop.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS tcls_someone")
        admin.execute("CREATE ROLE tcls_someone LOGIN")
    with pytest.raises(ClassroomError, match="was not made by labkit class"):
        provision.provision(instructor, [Student(key="someone")], store, prefix=PREFIX)
    with pytest.raises(ClassroomError, match="not a student role made by labkit"):
        provision.drop(instructor, ["tcls_someone"])
    with shop.connect() as admin:
        assert admin.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tcls_someone'").fetchone() == (True,)
        admin.execute("DROP ROLE tcls_someone")


def test_reset_restores_one_student_and_keeps_their_password(instructor: ConnectionInfo, tmp_path: Path, store: Store) -> None:
    provision_roster(instructor, tmp_path, store)
    a, b = credentials(store)["s-001"], credentials(store)["s-002"]
    for cred in (a, b):
        with as_student(cred) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS scratch (x int)")
    refused = run_cli("reset", "s-001", url=instructor)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = run_cli("reset", "s-001", "--yes", url=instructor)
    assert done.returncode == 0, done.stderr
    with as_student(a) as conn:
        assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
        conn.execute("CREATE INDEX ON users (created_at)")  # owns the fresh copy too
    with as_student(b) as conn:
        assert conn.execute("SELECT to_regclass('scratch')").fetchone() == ("scratch",)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        as_student(b, a["database"])


def run_cli(*args: str, url: ConnectionInfo, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LABKIT, "class", args[0], *args[1:], "--url", url.url(), "--prefix", PREFIX],
        env=clean_env(**env), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_cli_lists_and_drops(instructor: ConnectionInfo, tmp_path: Path, store: Store) -> None:
    provision_roster(instructor, tmp_path, store)
    a = credentials(store)["s-001"]
    with as_student(a) as conn:
        conn.execute("SELECT count(*) FROM orders").fetchall()
        listed = run_cli("list", url=instructor)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("s-001 "))
    size_mb, connections = row.split()[2], row.split()[4]
    assert int(size_mb) > 50 and connections == "1", listed.stdout
    assert row.split()[5] != "-"  # last activity is known
    refused = run_cli("drop", "--all", "--credentials", str(store.path), url=instructor)
    assert refused.returncode == 2 and "refusing without confirmation" in refused.stderr
    dropped = run_cli("drop", "s-002", "--yes", "--credentials", str(store.path), url=instructor)
    assert dropped.returncode == 0, dropped.stderr
    assert "s-002" not in credentials(store) and "s-001" in credentials(store)
    with instructor.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'tcls_s_002'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'tcls_s_002'").fetchone() == (0,)
    everything = run_cli("drop", "--all", "--yes", "--credentials", str(store.path), url=instructor)
    assert everything.returncode == 0 and not credentials(store)
    assert run_cli("list", url=instructor).stdout.startswith("No students")


def test_credentials_stay_out_of_the_repository(instructor: ConnectionInfo, tmp_path: Path) -> None:
    inside = Store(PROJECT_ROOT / "class-credentials.csv")
    with pytest.raises(ConfigError, match="inside the repository"):
        provision.provision(instructor, [Student(key="x")], inside, prefix=PREFIX)
    assert not inside.path.exists()
    ignored = Store(PROJECT_ROOT / ".labkit" / "test-class-credentials.json")
    try:
        provision.provision(instructor, [Student(key="json-1")], ignored, prefix=PREFIX)
        assert stat.S_IMODE(ignored.path.stat().st_mode) == 0o600
        assert ignored.read()["tcls_json_1"].database_url.endswith("/tcls_json_1")
    finally:
        provision.drop(instructor, ["tcls_json_1"], ignored)
        ignored.path.unlink(missing_ok=True)


def test_a_notebook_lab_uses_the_students_own_database(instructor: ConnectionInfo, tmp_path: Path, store: Store) -> None:
    provision_roster(instructor, tmp_path, store)
    a = credentials(store)["s-001"]
    code = "import labkit; lab = labkit.lab(); print(lab.dbname, lab.df('SELECT current_user AS u FROM users LIMIT 1').u[0])"
    env = clean_env(LABKIT_DATABASE_URL=a["database_url"], LABKIT_DATA_DIR=str(tmp_path / "state"), PYTHONPATH=str(PROJECT_ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["tcls_s_001", "tcls_s_001"]  # after lab()'s one-line greeting
    assert os.environ.get("LABKIT_DATABASE_URL") != a["database_url"]


def test_temp_file_limit_applies_once_a_superuser_grants_it(instructor: ConnectionInfo, shop: ConnectionInfo, store: Store) -> None:
    with shop.connect() as admin:
        admin.execute(f"GRANT SET ON PARAMETER temp_file_limit TO {INSTRUCTOR}")
    try:
        report = provision.provision(instructor, [Student(key="limited")], store, limits=Limits(temp_file_limit="5MB"), prefix=PREFIX)
    finally:
        with shop.connect() as admin:
            admin.execute(f"REVOKE SET ON PARAMETER temp_file_limit FROM {INSTRUCTOR}")
    assert report.not_set == []
    with as_student(credentials(store)["limited"]) as conn:
        assert conn.execute("SHOW temp_file_limit").fetchone() == ("5MB",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET temp_file_limit = -1")
        conn.execute("SET work_mem = '64kB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit"):
            conn.execute("SELECT count(*) FROM (SELECT g, md5(g::text) FROM generate_series(1, 400000) g ORDER BY 2) s")


def test_a_students_reset_without_a_reachable_service_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.classroom import hub
    from labkit.errors import LabkitError
    from labkit.notebook import class_reset
    from tests.helpers_servers import free_port

    assert class_reset.RESET_URL_ENV == hub.RESET_URL_ENV  # the hook sets the name the notebook reads
    monkeypatch.delenv(class_reset.RESET_URL_ENV, raising=False)
    with pytest.raises(LabkitError, match="no reset service") as no_service:
        class_reset.request_reset()
    assert "labkit class reset" in str(no_service.value)
    monkeypatch.setenv(class_reset.RESET_URL_ENV, f"http://127.0.0.1:{free_port()}/")
    monkeypatch.setenv(class_reset.TOKEN_ENV, "some-token")
    with pytest.raises(LabkitError, match="did not answer") as closed:
        class_reset.request_reset(timeout=5)
    assert "labkit class reset" in str(closed.value)
