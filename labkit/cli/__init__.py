"""The ``labkit`` command: one module per command group, each thin (parse, call, print)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from labkit.cli import classroom, course, exercises, grading, server, shop
from labkit.cli.common import Command, add_server_options
from labkit.errors import LabkitError

GROUPS = (server, course, shop, exercises, grading, classroom)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="A live PostgreSQL 16 lab for the pg-labkit notebooks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_server_options(p)
        p.set_defaults(func=func)
        return p

    for group in GROUPS:
        group.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("labkit: interrupted; nothing was half-changed.", file=sys.stderr)
        return 130

