"""The student workspace and student releases: made from the course with stubs, and no student's work ever lost.

Real files, real processes and signals: ``labkit lab`` runs JupyterLab and is stopped with SIGINT;
an interrupted release is a write the kernel refuses half-way (a file size limit, as a full disk would)."""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from helpers_servers import LABKIT, PROJECT_ROOT, free_port

from labkit.config import NOTEBOOKS_DIR
from labkit.exercises import checker, hints, refresh
from labkit.exercises.release import ReleaseError, release, student_text
from labkit.notebook import workspace
from labkit.notebook.lab import Lab, make_engine
from labkit.servers.base import ConnectionInfo

SOLUTIONS = refresh.all_solutions()
NOTEBOOK = "03-window-functions.ipynb"


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _solutions_in(folder: Path) -> list[str]:
    """The exercises whose reference SQL (whitespace aside) appears in any file of ``folder``."""
    texts = []
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            if path.suffix == ".ipynb":  # the cells' text, as a student would read it
                text = "\n".join(cell.source for cell in nbformat.reads(text, as_version=4).cells)
            texts.append(_squeeze(text))
    everything = "\n".join(texts)
    return [s.exercise for s in SOLUTIONS if _squeeze(s.sql.strip()) in everything]


def _shown_by_lessons() -> set[str]:
    """Exercises whose reference SQL a teaching cell of the instructor notebook already shows (not a solution cell)."""
    shown = set()
    for solution in SOLUTIONS:
        cells = nbformat.read(NOTEBOOKS_DIR / f"{solution.notebook}.ipynb", as_version=4).cells
        lessons = [c.source for c in cells if "solution" not in c.metadata.get("tags", [])]
        if _squeeze(solution.sql.strip()) in _squeeze("\n".join(lessons)):
            shown.add(solution.exercise)
    return shown


def _course(tmp_path: Path, *names: str) -> Path:
    """A course folder of its own (a copy of some of the course's notebooks), to change as a pull would."""
    course = tmp_path / "course"
    course.mkdir()
    for name in (*names, "README.md"):
        shutil.copy(NOTEBOOKS_DIR / name, course / name)
    return course


def _change_course(notebook: Path, words: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[0].source += f"\n\n{words}"
    nbformat.write(nb, notebook)


def _student_edits(notebook: Path) -> bytes:
    nb = nbformat.read(notebook, as_version=4)
    stub = next(c for c in nb.cells if "answer_03_1 =" in c.source)
    stub.source = 'answer_03_1 = """SELECT 1 -- my first try"""'
    nbformat.write(nb, notebook)
    return notebook.read_bytes()


# -- the workspace ---------------------------------------------------------------------------
def test_the_workspace_is_made_once_from_the_course_and_holds_no_solution(tmp_path: Path) -> None:
    folder = tmp_path / "workspace"
    first = workspace.update(folder)
    notebooks = sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]-*.ipynb"))
    assert first.created == [*notebooks, "README.md"]
    assert set(_solutions_in(folder)) == _shown_by_lessons() == set()  # no answer, and no lesson cell shows one either
    assert len(SOLUTIONS) >= 40 and _solutions_in(NOTEBOOKS_DIR) == [s.exercise for s in SOLUTIONS]  # the comparison can fail
    assert not (folder / "sanitize.cfg").exists()  # test settings stay out of the student's folder
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"  # never tracked by git, wherever it is
    assert (folder / NOTEBOOK).read_text() == student_text(NOTEBOOKS_DIR / NOTEBOOK)[0]  # the release's own stubs
    again = workspace.update(folder)
    assert again.lines() == []  # made once: a second start changes nothing


def test_the_checkout_ignores_its_workspace() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "workspace/03-window-functions.ipynb"], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0


def test_a_course_update_is_offered_beside_an_edited_copy(tmp_path: Path) -> None:
    course, folder = _course(tmp_path, NOTEBOOK), tmp_path / "workspace"
    workspace.update(folder, course)
    mine = _student_edits(folder / NOTEBOOK)
    _change_course(course / NOTEBOOK, "A new paragraph of the course.")
    shutil.copy(NOTEBOOKS_DIR / "04-jsonb.ipynb", course)  # and a new notebook comes with the pull
    report = workspace.update(folder, course)
    assert (folder / NOTEBOOK).read_bytes() == mine  # the student's file is exactly as it was
    offered = folder / "03-window-functions.new.ipynb"
    assert report.offered == {NOTEBOOK: offered.name} and report.created == ["04-jsonb.ipynb"]
    assert offered.read_text() == student_text(course / NOTEBOOK)[0] and "A new paragraph" in offered.read_text()
    assert any("your copy stays as it is" in line and offered.name in line for line in report.lines())
    assert workspace.update(folder, course).lines() == []  # offered once; nothing more to say
    assert (folder / NOTEBOOK).read_bytes() == mine
    offered.unlink()  # the student took what they wanted from it: it is not offered again
    assert workspace.update(folder, course).lines() == [] and not offered.exists()
    workspace.update(folder, course)
    _change_course(course / NOTEBOOK, "A paragraph the student has not seen.")
    assert workspace.update(folder, course).offered == {NOTEBOOK: offered.name}  # a newer version is
    # The student edits the offered copy too; the course changes again: the edited offer is not written over.
    offered.write_text(offered.read_text().replace("A new paragraph", "My notes on a new paragraph"))
    kept = offered.read_bytes()
    _change_course(course / NOTEBOOK, "Another paragraph.")
    report = workspace.update(folder, course)
    assert report.kept_offer == [offered.name] and offered.read_bytes() == kept and (folder / NOTEBOOK).read_bytes() == mine


def test_an_unedited_copy_follows_the_course_and_a_deleted_one_comes_back(tmp_path: Path) -> None:
    course, folder = _course(tmp_path, NOTEBOOK), tmp_path / "workspace"
    workspace.update(folder, course)
    _change_course(course / NOTEBOOK, "A correction.")
    report = workspace.update(folder, course)
    assert report.updated == [NOTEBOOK] and report.offered == {}  # nothing of the student's is lost by updating it
    assert (folder / NOTEBOOK).read_text() == student_text(course / NOTEBOOK)[0]
    assert not (folder / "03-window-functions.new.ipynb").exists()
    (folder / NOTEBOOK).unlink()  # "start this notebook again"
    assert workspace.update(folder, course).created == [NOTEBOOK]


def test_the_workspace_is_never_the_instructor_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    course = _course(tmp_path, NOTEBOOK)
    (tmp_path / "link").symlink_to(course)
    for folder in (course, course / "sub", tmp_path / "link"):
        with pytest.raises(ReleaseError, match="Refusing"):
            workspace.update(folder, course)
    monkeypatch.setenv(workspace.WORKSPACE_ENV, str(tmp_path))  # a home folder that holds the course: allowed
    assert workspace.workspace_dir() == tmp_path
    assert NOTEBOOK in workspace.prepare().created and (tmp_path / NOTEBOOK).is_file()


# -- self-study: hints and the reference solution ---------------------------------------------
@pytest.fixture
def lab(shop: ConnectionInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """A learner's ``shop`` object with fresh attempt and hint counters."""
    monkeypatch.setattr(checker, "_attempts", Counter())
    monkeypatch.setattr(checker, "_failures", Counter())
    monkeypatch.setattr(hints, "shown", Counter())
    engine = make_engine(shop)
    yield Lab(info=shop, engine=engine)
    engine.dispose()


WRONG_03_1 = "SELECT o.order_number, 1 AS n FROM orders o JOIN users u ON u.id = o.user_id WHERE u.username = 'aisha.hall4018' ORDER BY n"


def test_the_solution_shows_only_after_a_checked_attempt(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _squeeze(next(s.sql for s in SOLUTIONS if s.exercise == "03.1").strip())
    before = lab.solution("03.1")
    assert "Try it first" in before and reference not in _squeeze(before)
    with pytest.raises(checker.ExerciseFailed):
        lab.check("03.1", WRONG_03_1)
    after = lab.solution("03.1")
    assert reference in _squeeze(after) and repr(after) == str(after)  # shown as text, not a quoted string
    monkeypatch.setenv(workspace.SOLUTIONS_ENV, "off")  # an instructor may switch them off for a class
    assert reference not in _squeeze(lab.solution("03.1"))
    with pytest.raises(KeyError, match="No exercise"):
        lab.solution("99.9")


def test_hints_come_level_by_level_and_the_automatic_one_continues_them(lab: Lab) -> None:
    levels = checker.spec("03.1")["hints"]
    assert len(levels) == 3
    first = lab.hint("03.1")
    assert repr(first) == str(first) and not repr(first).startswith(("'", '"'))
    assert first.startswith("Hint 1 of 3 for 03.1 (the concept): ") and _squeeze(levels[0]) in _squeeze(first) and "2 more" in first
    with pytest.raises(checker.ExerciseFailed) as failed:
        for _ in range(checker.HINT_AFTER_FAILURES):
            try:
                lab.check("03.1", WRONG_03_1)
            except checker.ExerciseFailed as exc:
                last = exc
        raise last
    assert failed.value.feedback[-1].startswith("Hint 2 of 3 for 03.1 (the approach): ")  # the next level, not the first again
    third = lab.hint("03.1")
    assert third.startswith("Hint 3 of 3 for 03.1 (nearly the answer): ") and "last hint" in third and "shop.solution" in third
    assert lab.hint("03.1").startswith("Hint 3 of 3")  # asked again: the last one again
    assert "All 3 hints were shown" in checker.evaluate(lab.connect(), "03.1", WRONG_03_1).feedback[-1]


# -- labkit lab ---------------------------------------------------------------------------------
def test_labkit_lab_opens_the_workspace_and_says_postgresql_keeps_running(shop: ConnectionInfo, tmp_path: Path) -> None:
    folder, port = tmp_path / "workspace", free_port()
    env = {**os.environ, workspace.WORKSPACE_ENV: str(folder), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    lab = subprocess.Popen([*LABKIT, "lab", "--no-browser", "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and lab.poll() is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.25)
        else:
            pytest.fail(f"JupyterLab did not start: {lab.communicate(timeout=30)[0][-3000:]}")
        lab.send_signal(signal.SIGINT)  # as Ctrl-C would, sent to labkit only: it passes it on
        output = lab.communicate(timeout=60)[0]
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
    assert lab.returncode == 0, output[-3000:]
    assert f"JupyterLab on your workspace, {folder}" in output
    assert "PostgreSQL keeps running" in output and "labkit down" in output
    assert output.rstrip().endswith("'labkit status' shows it.")  # said after JupyterLab ended
    assert (folder / NOTEBOOK).is_file() and set(_solutions_in(folder)) == _shown_by_lessons()


# -- labkit release -----------------------------------------------------------------------------
def _run(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABKIT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


def test_release_never_overwrites_a_changed_file_without_force(tmp_path: Path) -> None:
    first = _run("release", "--out", "class", cwd=tmp_path)  # from another working directory: the course's notebooks
    files = len([p for p in NOTEBOOKS_DIR.iterdir() if p.is_file() and p.suffix in {".ipynb", ".md"}])
    assert first.returncode == 0 and f"{files} written" in first.stdout, first.stdout + first.stderr
    out = tmp_path / "class"
    assert set(_solutions_in(out)) == _shown_by_lessons()
    edited = _student_edits(out / NOTEBOOK)
    again = _run("release", "--out", "class", cwd=tmp_path)
    assert again.returncode == 1 and (out / NOTEBOOK).read_bytes() == edited
    assert re.search(rf"skipped +class/{NOTEBOOK}: .*--force", again.stdout) and f"{files - 1} unchanged, 1 skipped" in again.stdout
    forced = _run("release", "--out", "class", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and f"wrote      class/{NOTEBOOK}" in forced.stdout
    assert (out / NOTEBOOK).read_text() == student_text(NOTEBOOKS_DIR / NOTEBOOK)[0]


def test_release_refuses_its_source_folder(tmp_path: Path) -> None:
    course = _course(tmp_path, NOTEBOOK)
    before = (course / NOTEBOOK).read_bytes()
    (tmp_path / "link").symlink_to(course)
    cases = [("course", "course", tmp_path), (".", ".", course), ("course", "link", tmp_path), ("course", "course/release", tmp_path),
             ("course", ".", tmp_path), ("link", "course/x/..", tmp_path)]  # fmt: skip
    for source, out, cwd in cases:
        refused = _run("release", source, "--out", out, cwd=cwd)
        assert refused.returncode == 2 and "Refusing to write student copies" in refused.stderr, (source, out, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert (course / NOTEBOOK).read_bytes() == before and sorted(p.name for p in course.iterdir()) == [NOTEBOOK, "README.md"]
    with pytest.raises(ReleaseError):
        release(NOTEBOOKS_DIR, NOTEBOOKS_DIR, force=True)


def test_release_of_a_missing_or_empty_folder_fails_clearly(tmp_path: Path) -> None:
    for source in ("/nonexistent", str(tmp_path)):
        failed = _run("release", source, "--out", "class", cwd=tmp_path)
        assert failed.returncode == 2 and "Traceback" not in failed.stderr
        assert ("No course folder at /nonexistent" if source == "/nonexistent" else "holds no course notebooks") in failed.stderr
    assert not (tmp_path / "class").exists()


def test_release_into_a_read_only_folder_says_so(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="labkit-readonly-"))  # under /tmp: another user can reach it
    try:
        course = _course(folder, NOTEBOOK)
        release(course, folder / "warm-up")  # every module the release needs is loaded before privileges drop
        folder.chmod(0o555)
        if os.geteuid() == 0:  # root may write anywhere: release as an unprivileged user instead
            os.seteuid(pwd.getpwnam("nobody").pw_uid)
        try:
            with pytest.raises(ReleaseError) as failed:
                release(course, folder / "class")
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
        assert f"Cannot write into {folder / 'class'}: Permission denied" in str(failed.value)
        assert failed.value.hint == "Choose a folder you can write to."
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    cli = _run("release", "--out", "/proc/labkit-class", cwd=tmp_path)  # and the command says it in one message
    assert cli.returncode == 2 and "Cannot write into /proc/labkit-class" in cli.stderr and "Traceback" not in cli.stderr


def test_an_interrupted_release_leaves_the_old_files_intact(tmp_path: Path) -> None:
    out = tmp_path / "class"
    release(NOTEBOOKS_DIR, out)
    edited = {path.name: path.read_bytes() for path in out.glob("*.ipynb")}
    for name in edited:
        edited[name] = _student_edits(out / name) if name == NOTEBOOK else edited[name] + b" "
    limit = 16 * 1024  # every notebook is larger: the kernel refuses the rest of the first write (EFBIG), as a full disk would

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    interrupted = _run("release", "--out", str(out), "--force", cwd=tmp_path, preexec_fn=small_files)
    assert interrupted.returncode == 2 and "Traceback" not in interrupted.stderr, interrupted.stderr
    stopped = re.search(r"Could not write .*/(\S+\.ipynb): File too large; it is unchanged", interrupted.stderr)
    assert stopped, interrupted.stderr
    now = {path.name: path.read_bytes() for path in out.glob("*.ipynb")}
    assert now[stopped[1]] == edited[stopped[1]]
    for name, data in now.items():  # the old file or the whole new one, never half a file
        assert data in (edited[name], student_text(NOTEBOOKS_DIR / name)[0].encode()), name
    assert not list(out.glob(".*.tmp"))  # and no half-written temporary file left behind
