"""Commands for the course: JupyterLab on the student workspace (or the instructor notebooks), student releases."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from labkit.cli.common import AddCommand, settings_from
from labkit.cli.server import cmd_up
from labkit.config import NOTEBOOKS_DIR
from labkit.errors import LabkitError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cmd_lab(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.instructor:
        folder = settings.project_dir / "notebooks"
    else:
        from labkit.notebook import workspace

        report = workspace.prepare(settings)
        folder = report.folder
        for line in report.lines():
            print(line)
    cmd_up(argparse.Namespace(**{**vars(args), "no_data": False}))
    jupyter = shutil.which("jupyter") or os.path.join(os.path.dirname(sys.executable), "jupyter")
    if not os.access(jupyter, os.X_OK):
        raise LabkitError("JupyterLab is not installed in this environment.", "Install the project into it: pip install -e . (see README).")
    argv = [jupyter, "lab", f"--notebook-dir={folder}", f"--ServerApp.ip={args.ip}"]
    if args.no_browser:
        argv.append("--no-browser")
    if args.port:
        argv.append(f"--port={args.port}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    where = "the instructor notebooks (with solutions)" if args.instructor else "your workspace"
    print(f"Starting JupyterLab on {where}, {folder}; open 00-welcome.ipynb first. Stop with Ctrl-C.")
    code = run_in_foreground(argv)
    print("JupyterLab stopped. PostgreSQL keeps running (your data stays): 'labkit down' stops it, 'labkit status' shows it.")
    return code


def run_in_foreground(argv: list[str]) -> int:
    """Run ``argv`` as a child and wait for it, passing on the signals meant for it.

    Ctrl-C in a terminal reaches the whole foreground process group, the child included (JupyterLab
    then asks whether to stop): it is not sent a second time. A SIGINT from elsewhere, SIGTERM and
    SIGHUP are forwarded."""
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sends_to_child():
            return
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover  (Python retries wait() itself)
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT) else code


def _terminal_sends_to_child() -> bool:
    """Whether we run in the terminal's foreground process group (so its Ctrl-C reached the child too)."""
    try:
        return os.isatty(sys.stdin.fileno()) and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def cmd_release(args: argparse.Namespace) -> int:
    from labkit.exercises.release import release

    source = Path(args.source) if args.source else NOTEBOOKS_DIR
    out = Path(args.out)
    report = release(source, out, force=args.force)
    for name in report.written:
        removed = report.solutions.get(name)
        print(f"  wrote      {out / name}" + (f" ({removed} solution(s) replaced by stubs)" if removed is not None else ""))
    for name in report.unchanged:
        print(f"  unchanged  {out / name}")
    for name in report.skipped:
        print(f"  skipped    {out / name}: it differs from the release (edited, or an older release); --force overwrites it")
    print(f"Student notebooks from {source} in {out}: {len(report.written)} written, {len(report.unchanged)} unchanged, "
          f"{len(report.skipped)} skipped.")  # fmt: skip
    return 1 if report.skipped else 0


def register(add: AddCommand) -> None:
    lab = add("lab", cmd_lab, "start the lab server and JupyterLab on your student workspace (--instructor: on notebooks/)")
    lab.add_argument("--scale", type=float, help="data scale factor for a first load")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--port", type=int, help="JupyterLab port")
    lab.add_argument("--ip", default="127.0.0.1", help="address JupyterLab listens on (default 127.0.0.1; 0.0.0.0 only inside a container)")
    lab.add_argument("--instructor", action="store_true", help="open the instructor notebooks (with solutions) instead of the workspace")
    release = add("release", cmd_release, "write student notebooks: solutions replaced by stubs, exercise outputs cleared")
    release.add_argument("source", nargs="?", help="instructor notebooks folder (default: this course's notebooks/)")
    release.add_argument("--out", default="release", help="where the student notebooks go (default: release/)")
    release.add_argument("--force", action="store_true", help="overwrite files that differ from the release (e.g. edited copies)")
