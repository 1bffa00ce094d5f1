"""Commands for the course: JupyterLab on the notebooks, student releases."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from labkit.cli.common import AddCommand, settings_from
from labkit.cli.server import cmd_up


def cmd_lab(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cmd_up(argparse.Namespace(**{**vars(args), "no_data": False}))
    jupyter = shutil.which("jupyter") or os.path.join(os.path.dirname(sys.executable), "jupyter")
    argv = [jupyter, "lab", f"--notebook-dir={settings.project_dir / 'notebooks'}", "--ServerApp.ip=127.0.0.1"]
    if args.no_browser:
        argv.append("--no-browser")
    if args.port:
        argv.append(f"--port={args.port}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    print("Starting JupyterLab; open notebooks/00-welcome.ipynb first. Stop with Ctrl-C.")
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_release(args: argparse.Namespace) -> int:
    from labkit.exercises.release import release

    report = release(Path(args.source), Path(args.out))
    for name, removed in report.items():
        print(f"  {name}: {removed} solution(s) replaced by stubs")
    print(f"Student notebooks written to {args.out}")
    return 0


def register(add: AddCommand) -> None:
    lab = add("lab", cmd_lab, "start the lab server and JupyterLab on notebooks/")
    lab.add_argument("--scale", type=float, help="data scale factor for a first load")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--port", type=int, help="JupyterLab port")
    release = add("release", cmd_release, "write student notebooks: solutions replaced by stubs, exercise outputs cleared")
    release.add_argument("source", nargs="?", default="notebooks", help="instructor notebooks folder (default: notebooks)")
    release.add_argument("--out", default="release", help="where the student notebooks go (default: release/)")
