"""Commands for exercise authors: refresh and verify fingerprints, mutation-test the checks."""

from __future__ import annotations

import argparse
import contextlib

from labkit.cli.common import SHOP_DB, AddCommand, hidden_specs, running, settings_from
from labkit.config import Settings
from labkit.servers.base import ConnectionInfo


def cmd_exercises(args: argparse.Namespace) -> int:
    from labkit.exercises import refresh

    info = running(settings_from(args))
    if args.action == "mutants":
        return _mutants(info, settings_from(args), args)
    with info.connect(SHOP_DB) as conn:
        if args.action == "refresh":
            from labkit.exercises import shuffled

            with contextlib.ExitStack() as stack:
                there = stack.enter_context(info.connect(shuffled.SHUFFLED_DB)) if shuffled.ensure(info) else None
                written = refresh.refresh(conn, shuffled_conn=there)
            print(f"Fingerprints written for {len(written)} exercise(s).")
            return 0
        problems = refresh.stale(conn)
    for problem in problems:
        print(f"  {problem}")
    print("All exercise specs are current." if not problems else f"{len(problems)} stale exercise spec(s).")
    return 0 if not problems else 1


def _mutants(info: ConnectionInfo, settings: Settings, args: argparse.Namespace) -> int:
    from labkit.exercises import checker, mutants, refresh, shuffled
    from labkit.grading import hidden

    wanted = [o for o in (args.only or "").split(",") if o]
    chosen = [s for s in refresh.all_solutions() if not wanted or checker.selected(s.exercise, wanted)]
    expected_there: dict[str, dict] = {}
    if args.hidden_seed is not None:
        exercises = [s.exercise for s in chosen]
        expected_there = hidden_specs(info, settings, args.hidden_seed, args.hidden_scale, str(refresh.NOTEBOOKS), exercises)
    reports = []
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(info.connect(SHOP_DB))
        hidden_conn = stack.enter_context(info.connect(hidden.HIDDEN_DB)) if expected_there else None
        shuffled_conn = stack.enter_context(info.connect(shuffled.SHUFFLED_DB)) if shuffled.ensure(info) else None
        for solution in chosen:
            spec = expected_there.get(solution.exercise)
            there = (hidden_conn, spec) if hidden_conn is not None and spec else None
            reports.append(mutants.try_mutants(conn, solution.exercise, solution.sql, hidden=there, shuffled=shuffled_conn))
            print(mutants.report_text(reports[-1:]).splitlines()[0], flush=True)
    print(mutants.report_text(reports))
    return 0


def register(add: AddCommand) -> None:
    ex = add("exercises", cmd_exercises, "refresh or verify exercise fingerprints; mutation-test the checks")
    ex.add_argument("action", choices=("refresh", "verify", "mutants"), help="mutants: report plausible wrong answers a check would accept")
    ex.add_argument("--only", help="mutants: comma-separated exercises or notebooks, e.g. 03,04.2")
    ex.add_argument("--hidden-seed", type=int, help="mutants: count a mutant as accepted only if a hidden dataset accepts it too")
    ex.add_argument("--hidden-scale", type=float, default=0.5, help="mutants: scale of the hidden dataset (default 0.5)")
