"""What goes wrong with the shop database on a learner's machine, against a real PostgreSQL 16:
each fault gives one clear message with a next step, and nothing of the learner's is lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_servers import clean_env, free_port, labkit, reachable, state_env, stopped_afterwards

from labkit.config import Settings
from labkit.errors import ConfigError, LabkitError
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo
from labkit.shop import bulkload, capacity, database, schema
from labkit.shop.generator import generate

SMALL = 0.05


def _project_env(**extra: str) -> dict[str, str]:
    """The CLI's environment for this project's own lab server (the one the ``shop`` fixture uses)."""
    return clean_env(**extra)


def _no_traceback(run: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in run.stderr + run.stdout, run.stderr


def _databases(info: ConnectionInfo, pattern: str) -> list[str]:
    with info.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", [pattern])]


@pytest.fixture
def pristine_shop(shop: ConnectionInfo) -> Iterator[ConnectionInfo]:
    """The project's shop, reset afterwards (and any copy a test set aside dropped)."""
    before = set(_databases(shop, "shop\\_before\\_%"))
    yield shop
    with shop.connect() as conn:
        conn.execute("ALTER DATABASE shop RESET search_path")
        for name in set(_databases(shop, "shop\\_before\\_%")) - before:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    database.reset(shop)


def _learner_work(info: ConnectionInfo, dbname: str = "shop") -> None:
    with info.connect(dbname) as conn:
        conn.execute("CREATE SCHEMA mywork")
        conn.execute("CREATE TABLE mywork.notes AS SELECT 1 AS note")
        conn.execute(f'ALTER DATABASE "{dbname}" SET search_path = mywork')


def _has_notes(info: ConnectionInfo, dbname: str) -> bool:
    with info.connect(dbname) as conn:
        return conn.execute("SELECT to_regclass('mywork.notes') IS NOT NULL").fetchone() == (True,)


@pytest.fixture
def server_tmp() -> Iterator[Path]:
    """A folder for a test's own lab server, outside pytest's temporary root: another pytest run
    starting meanwhile makes that root mode 0700 again, and the server user loses its way in."""
    folder = Path(tempfile.mkdtemp(prefix="labkit-shop-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- 2: nothing of the learner's is dropped --------------------------------------------------------


def test_the_first_up_on_a_new_server_loads_the_shop(server_tmp: Path) -> None:
    state = reachable(server_tmp / "state")
    env = state_env(state, LABKIT_SERVER="portable")
    with stopped_afterwards(state, env):
        up = labkit("up", env=env, timeout=600)
        log = next(state.rglob("server.log"), None)
        assert up.returncode == 0, up.stderr + (log.read_text()[-3000:] if log else "")
        assert "rebuilt" not in up.stderr and "kept" not in up.stderr
        check = labkit("check", env=env)
        assert check.returncode == 0 and "shop: ok" in check.stdout and "shop_template: ok" in check.stdout, check.stdout


def test_up_keeps_a_learners_schema_and_search_path(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    up = labkit("up", env=_project_env())
    assert up.returncode == 0, up.stderr
    assert _has_notes(pristine_shop, "shop"), "labkit up dropped the learner's mywork.notes"
    assert "rebuilt" not in up.stderr


def test_a_stale_shop_is_rebuilt_and_kept_under_another_name(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    with pristine_shop.connect("shop") as conn:
        conn.execute("UPDATE public.labkit_meta SET value = 'an-old-one' WHERE key = 'schema_version'")
    notes = database.ensure_shop(pristine_shop, progress=False)
    kept = [n for n in _databases(pristine_shop, "shop\\_before\\_%") if n in " ".join(notes)]
    assert len(kept) == 1, notes
    assert any("another version of the schema" in n and f"labkit drop-kept {kept[0]}" in n for n in notes), notes
    assert _has_notes(pristine_shop, kept[0])
    assert not _has_notes(pristine_shop, "shop")
    with pristine_shop.connect("shop") as conn:
        assert conn.execute("SELECT value FROM public.labkit_meta WHERE key = 'schema_version'").fetchone() == (schema.schema_version(),)


def test_an_unreadable_meta_is_reported_not_taken_for_stale(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    with pristine_shop.connect("shop", autocommit=False) as holder:
        holder.execute("LOCK TABLE public.labkit_meta IN ACCESS EXCLUSIVE MODE")  # a learner's open transaction
        with pytest.raises(database.ShopError, match=r"cannot read the 'shop' database's labkit_meta: .*lock timeout"):
            database.ensure_shop(pristine_shop, progress=False)
        holder.rollback()
    assert _has_notes(pristine_shop, "shop")


def test_load_force_keeps_the_shop_it_replaces(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    run = labkit("load", "--force", env=_project_env())
    assert run.returncode == 0, run.stderr
    kept = _databases(pristine_shop, "shop\\_before\\_%")
    assert any(name in run.stderr for name in kept), run.stderr
    assert any(_has_notes(pristine_shop, name) for name in kept)
    assert not _has_notes(pristine_shop, "shop")
    dropped = labkit("drop-kept", *[n for n in kept if n in run.stderr], env=_project_env())
    assert dropped.returncode == 0 and "Dropped" in dropped.stdout


def test_load_drops_the_old_shop_only_when_asked(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    before = _databases(pristine_shop, "shop\\_before\\_%")
    run = labkit("load", "--force", "--drop-old-shop", env=_project_env())
    assert run.returncode == 0, run.stderr
    assert _databases(pristine_shop, "shop\\_before\\_%") == before
    assert "kept" not in run.stderr
    assert not _has_notes(pristine_shop, "shop")


def test_labkits_functions_and_triggers_ignore_the_learners_search_path(pristine_shop: ConnectionInfo) -> None:
    _learner_work(pristine_shop)
    with pristine_shop.connect("shop") as conn:
        conn.execute("CREATE TABLE mywork.labkit_meta (key text, value text)")
        conn.execute("INSERT INTO mywork.labkit_meta VALUES ('as_of', '1999-01-01')")
        conn.execute("CREATE TABLE mywork.audit_log (x int)")
    with pristine_shop.connect("shop") as conn, conn.transaction(force_rollback=True):
        assert conn.execute("SHOW search_path").fetchone() == ("mywork",)
        assert str(conn.execute("SELECT public.labkit_today()").fetchone()[0]) == "2025-07-01"  # type: ignore[index]
        before = conn.execute("SELECT count(*) FROM public.audit_log").fetchone()
        conn.execute("UPDATE public.orders SET status = status WHERE id = (SELECT id FROM public.orders LIMIT 1)")
        assert conn.execute("SELECT count(*) FROM public.audit_log").fetchone() != before
    assert database.checksum(pristine_shop)  # reads every table whatever the search_path
    assert database.status(pristine_shop)["loaded"] is True


# -- 3: thread helpers never read a name before it is bound -----------------------------------------


@pytest.fixture
def slow_thread_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine, made deterministic: each thread runs 0.3 s before its starter goes on."""
    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        original(self)
        time.sleep(0.3)

    monkeypatch.setattr(threading.Thread, "start", start)


def test_parallel_vacuum_and_copy_survive_slow_thread_starts(server: ConnectionInfo, shop_tables_db: str, slow_thread_start: None) -> None:
    tables = generate.generate(scale=SMALL)
    result = bulkload.load_tables(server, shop_tables_db, iter(tables))
    assert result.checksum == generate.checksum(tables)
    bulkload.vacuum_analyze(server, shop_tables_db)
    with server.connect(shop_tables_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NULL AND n_live_tup > 0").fetchone() == (0,)


# -- 7: disk full: checked before, cleaned up after -------------------------------------------------


def test_an_unfinished_load_is_removed_at_the_next_start(shop: ConnectionInfo) -> None:
    with shop.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS shop_loading WITH (FORCE)")
        conn.execute("CREATE DATABASE shop_loading")  # what a killed load leaves
    up = labkit("up", env=_project_env())
    assert up.returncode == 0, up.stderr
    assert "removed shop_loading" in up.stderr
    assert _databases(shop, "shop\\_loading") == []


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 300 MB tmpfs for a lab server's data (root only), outside pytest's shared temporary folders."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = Path(tempfile.mkdtemp(prefix="labkit-small-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m,mode=0755", "tmpfs", str(mount)], capture_output=True).returncode:
        mount.rmdir()
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield reachable(mount / "state")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


def test_a_load_the_disk_cannot_hold_is_refused_and_leaves_nothing(small_disk: Path) -> None:
    env = state_env(small_disk, LABKIT_SERVER="portable")
    with stopped_afterwards(small_disk, env):
        up = labkit("up", "--no-data", env=env)
        assert up.returncode == 0, up.stderr
        load = labkit("load", "--scale", "2", env=env)
        _no_traceback(load)
        assert shutil.disk_usage(small_disk).total < 400 * capacity.MB
        assert load.returncode == database.ShopError.exit_code, load.stderr
        assert "of free disk" in load.stderr and "--yes" in load.stderr
        # forced past the check, the load runs out of space: one message, and no shop_loading left
        forced = labkit("load", "--scale", "2", "--yes", env=env, timeout=600)
        _no_traceback(forced)
        assert forced.returncode == database.ShopError.exit_code, forced.stderr
        assert "nearly full" in forced.stderr and "Nothing was replaced" in forced.stderr, forced.stderr
        again = labkit("up", env=env)  # the next start cleans up whatever the failure left
        _no_traceback(again)
        info = lifecycle.current_server(Settings.load(server="portable", data_dir=str(small_disk)))
        assert info is not None, again.stderr
        assert _databases(info, "shop\\_loading") == []


# -- 8: big loads say what they take; bad scales give one message -------------------------------


def test_a_load_too_big_for_this_machine_says_what_it_takes_and_is_refused(shop: ConnectionInfo) -> None:
    run = labkit("load", "--scale", "1000", env=_project_env())
    _no_traceback(run)
    assert run.returncode == database.ShopError.exit_code, run.stderr
    assert "about 794,000,000 rows" in run.stderr
    assert "of memory" in run.stderr and "--yes" in run.stderr
    assert _databases(shop, "shop\\_loading") == []


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "abc", "1e9"])
def test_a_bad_scale_gives_one_message(shop: ConnectionInfo, value: str, tmp_path: Path) -> None:
    flag = labkit("load", f"--scale={value}", env=_project_env())
    env_var = labkit("load", env=_project_env(LABKIT_SCALE=value))
    up = labkit("up", f"--scale={value}", env=_project_env())
    for run in (flag, env_var, up):
        _no_traceback(run)
        assert run.returncode == ConfigError.exit_code, run.stderr  # argparse's usage errors exit 2 too
        assert "scale" in run.stderr.lower(), run.stderr
    project = tmp_path / "project"
    project.mkdir()
    toml_value = {"abc": '"abc"', "nan": "nan", "inf": "inf"}.get(value, value)
    (project / "labkit.toml").write_text(f"scale = {toml_value}\n")
    from_file = labkit("load", env=_project_env(LABKIT_PROJECT_DIR=str(project), LABKIT_DATA_DIR=str(tmp_path / "state")))
    _no_traceback(from_file)
    assert from_file.returncode == ConfigError.exit_code, from_file.stderr
    assert not list((tmp_path / "state").rglob("PG_VERSION")), "a server was set up for a bad scale"


def test_up_with_another_scale_says_what_it_does(shop: ConnectionInfo) -> None:
    up = labkit("up", "--scale", "5", env=_project_env())
    assert up.returncode == 0, up.stderr
    assert "loaded at scale 1, not 5" in up.stderr and "labkit load --scale 5" in up.stderr
    with shop.connect("shop") as conn:
        assert conn.execute("SELECT value FROM public.labkit_meta WHERE key = 'scale'").fetchone() == ("1",)


def test_check_scale_accepts_numbers_only() -> None:
    assert capacity.check_scale("2.5") == 2.5
    for bad in ("nan", "inf", "-inf", -1, 0, "abc", None, [1]):
        with pytest.raises(ConfigError, match="positive number"):
            capacity.check_scale(bad)


def test_grade_with_a_negative_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    run = labkit("grade", str(tmp_path), "--workers", "-3", env=_project_env())
    _no_traceback(run)
    assert run.returncode == 2
    assert "--workers" in run.stderr and "at least 1" in run.stderr


# -- 10: a damaged shop or template is found, and a reset does not copy the damage -------------------


def _remove_file_of(info: ConnectionInfo, dbname: str, table: str) -> Path:
    with info.connect(dbname) as conn:
        conn.execute("CHECKPOINT")  # no dirty page of it left for the checkpointer to write
        data = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        path = data / conn.execute("SELECT pg_relation_filepath(%s)", [table]).fetchone()[0]  # type: ignore[index]
    path.unlink()
    return path


def test_check_and_up_find_a_table_file_removed_from_the_shop(pristine_shop: ConnectionInfo) -> None:
    _remove_file_of(pristine_shop, "shop", "public.categories")
    check = labkit("check", env=_project_env())
    assert check.returncode == database.ShopError.exit_code, check.stdout
    assert "shop: DAMAGED" in check.stdout and "public.categories" in check.stdout and "labkit reset" in check.stdout
    assert "shop_template: ok" in check.stdout
    up = labkit("up", env=_project_env())
    assert up.returncode == 0 and "damaged" in up.stderr and "labkit reset" in up.stderr
    reset = labkit("reset", env=_project_env())
    assert reset.returncode == 0, reset.stderr
    assert labkit("check", env=_project_env()).returncode == 0


def test_up_says_when_the_pristine_copy_is_missing(pristine_shop: ConnectionInfo) -> None:
    with pristine_shop.connect() as conn:
        conn.execute("ALTER DATABASE shop_template RENAME TO t_shop_template_aside")
    try:
        up = labkit("up", env=_project_env())
        assert up.returncode == 0, up.stderr
        assert "pristine copy (shop_template) is missing" in up.stderr and "labkit load --force" in up.stderr
        reset = labkit("reset", env=_project_env())
        _no_traceback(reset)
        assert reset.returncode == database.ShopError.exit_code and "no pristine copy" in reset.stderr
    finally:
        with pristine_shop.connect() as conn:
            conn.execute("ALTER DATABASE t_shop_template_aside RENAME TO shop_template")


def test_reset_refuses_a_damaged_template(server: ConnectionInfo) -> None:
    template, target = "t_shop_faults_template", "t_shop_faults_target"
    database.load(server, scale=SMALL, progress=False, force=True, target=template)
    try:
        database.reset(server, target=target, template=template)
        _remove_file_of(server, template, "public.orders")
        with pytest.raises(database.ShopError, match="is damaged") as raised:
            database.reset(server, target=target, template=template)
        assert "public.orders" in str(raised.value) and "labkit load --force" in str(raised.value)
    finally:
        with server.connect() as conn:
            for name in (template, target):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- 11: shop commands print one message, not a traceback --------------------------------------------


def test_reset_while_someone_uses_the_template_is_one_message(shop: ConnectionInfo) -> None:
    with shop.connect("shop_template") as held:
        held.execute("SELECT 1")
        reset = labkit("reset", env=_project_env())
    _no_traceback(reset)
    assert reset.returncode == database.ShopError.exit_code, reset.stderr
    assert "shop_template" in reset.stderr and "try again" in reset.stderr
    assert labkit("reset", env=_project_env()).returncode == 0


def test_a_server_that_does_not_answer_is_one_message() -> None:
    nobody = ConnectionInfo(host="127.0.0.1", port=free_port(), user="postgres")
    for operation in (lambda: database.verify(nobody, "shop"), lambda: database.reset(nobody), lambda: database.load(nobody)):
        with pytest.raises(LabkitError, match="does not answer"):
            operation()


def test_reset_and_load_refuse_a_server_that_is_not_this_projects_own(shop: ConnectionInfo) -> None:
    """Another clone's server on the lab's port (after a restart) answers with another system identifier:
    nothing is reset or rebuilt there."""
    import dataclasses

    from labkit.errors import ForeignServer

    if shop.system_identifier is None:
        pytest.skip("only labkit's own clusters know their system identifier")
    with shop.connect("shop") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.t_foreign_guard AS SELECT 1 AS x")
    try:
        other = dataclasses.replace(shop, system_identifier=shop.system_identifier + 1)
        with pytest.raises(ForeignServer, match="not this project's lab server"):
            database.reset(other)
        with pytest.raises(ForeignServer):
            database.load(other, scale=SMALL, force=True, progress=False)
        with shop.connect("shop") as conn:
            assert conn.execute("SELECT x FROM public.t_foreign_guard").fetchone() == (1,)
    finally:
        database.reset(shop)
