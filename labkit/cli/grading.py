"""Commands for grading a class: grade submissions into a gradebook."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.cli import classroom
from labkit.cli.common import AddCommand, ensure_shop, hidden_specs, settings_from
from labkit.errors import ConfigError
from labkit.servers import lifecycle


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _points(values: list[str]) -> dict[str, float]:
    points = {}
    for value in values:
        exercise, _, number = value.partition("=")
        try:
            points[exercise.strip()] = float(number)
        except ValueError:
            raise ConfigError(f"--points {value!r} is not EXERCISE=POINTS.", "For example: --points 03.2=3") from None
    return points


def cmd_grade(args: argparse.Namespace) -> int:
    from labkit.exercises import checker
    from labkit.grading import gradebook, grader, shards, submission
    from labkit.shop import database

    if args.submissions == "merge":
        return cmd_merge(args)
    if args.submissions == "gradescope":
        return cmd_gradescope(args)
    if args.parts:
        raise ConfigError(f"Unexpected arguments: {' '.join(args.parts)}.", "Grade one folder, or: labkit grade merge PARTS… --out FILE")
    folder, out = Path(args.submissions), Path(args.out)
    if not folder.is_dir():
        raise ConfigError(f"There is no submissions folder at {folder}.", "Give the folder holding one sub-folder or notebook per student.")
    submissions = submission.collect(folder)
    if not submissions:
        raise ConfigError(
            f"{folder} holds no submissions.", "Put each student's notebooks in a sub-folder named after them, or STUDENT.ipynb files."
        )
    try:
        exercises = grader.exercises_for(submissions, [e for e in (args.exercises or "").split(",") if e] or None)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), "Name exercises like 03.2 or whole notebooks like 03.") from None
    points = _points(args.points or [])
    total, places = len(submissions), None
    if args.shard:  # after choosing the exercises from every submission, so all parts have the same columns
        chosen = shards.select(submissions, [s.student for s in submissions], *shards.parse(args.shard))
        places, submissions = [p for p, _ in chosen], [s for _, s in chosen]
    roster = classroom.lms_roster(args.roster) if args.roster else None
    if unknown := sorted(set(points) - set(checker.specs())):
        raise ConfigError(f"--points names unknown exercise(s): {', '.join(unknown)}.", "Use ids like 03.2.")
    options = grader.Options(statement_timeout=args.statement_timeout, time_limit=args.time_limit, points=points)
    if args.workers:
        options.workers = args.workers
    settings = settings_from(args)
    info = lifecycle.ensure_server(settings)
    with lifecycle.locked(settings):
        ensure_shop(info, settings)
    if args.hidden_seed is not None:
        options.hidden_specs = hidden_specs(info, settings, args.hidden_seed, args.hidden_scale, args.solutions, exercises)
    print(f"Grading {len(submissions)} submission(s) on {len(exercises)} exercise(s) against the {database.TEMPLATE_DB} copy"
          + (f" and a hidden dataset (scale {args.hidden_scale:g})" if options.hidden_specs is not None else "") + ".")  # fmt: skip
    results = grader.grade_all(info, submissions, exercises, options, progress=not args.quiet)
    if places is None:
        gradebook.write_csv(out, results, exercises)
    else:
        shards.write_part(out, results, places, total, exercises)
    if roster is not None:
        classroom.write_lms_files(roster, out, results, exercises)
    feedback_dir = Path(args.feedback) if args.feedback else out.with_name(out.stem + "-feedback")
    gradebook.write_feedback(feedback_dir, results, exercises)
    summary = gradebook.summarise(results, exercises)
    summary_path = out.with_name(out.stem + "-summary.csv")
    gradebook.write_summary(summary_path, summary)
    print(gradebook.summary_table(summary))
    print(f"Gradebook: {out}  ·  per-exercise summary: {summary_path}  ·  feedback for each student: {feedback_dir}/")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from labkit.grading import shards

    count = shards.merge([Path(p) for p in args.parts], Path(args.out))
    print(f"Merged {len(args.parts)} part(s): {count} student(s) in {args.out}.")
    return 0


def cmd_gradescope(args: argparse.Namespace) -> int:
    from labkit.exercises import checker
    from labkit.grading import grader, gradescope

    out = Path("autograder.zip" if args.out == "gradebook.csv" else args.out)
    if out.suffix != ".zip":
        raise ConfigError(f"--out {out} should name the autograder's .zip.", "For example: labkit grade gradescope --out autograder.zip")
    only = [e for e in (args.exercises or "").split(",") if e]
    try:
        exercises = grader.exercises_for([], only) if only else sorted(checker.specs(), key=lambda e: tuple(map(int, e.split("."))))
    except KeyError as exc:
        raise ConfigError(str(exc.args[0]), "Name exercises like 03.2 or whole notebooks like 03.") from None
    config = gradescope.AutograderConfig(exercises, _points(args.points or []), args.statement_timeout, args.time_limit,
                                         args.hidden_seed, args.hidden_scale)  # fmt: skip
    files = gradescope.build(out, config)
    print(f"Wrote {out} ({files} files, {len(exercises)} exercises): upload it as the assignment's autograder on Gradescope.")
    return 0


def register(add: AddCommand) -> None:
    grade = add("grade", cmd_grade, "grade a class's submitted notebooks into a CSV gradebook, with feedback per student")
    grade.add_argument("submissions", help="folder with one sub-folder (or STUDENT.ipynb) per student; or 'merge' PARTS…; or 'gradescope'")
    grade.add_argument("parts", nargs="*", help=argparse.SUPPRESS)
    grade.add_argument("--out", default="gradebook.csv", help="the CSV gradebook to write (default: gradebook.csv)")
    grade.add_argument("--feedback", help="folder for the per-student feedback files (default: next to the gradebook)")
    grade.add_argument("--exercises", help="comma-separated exercises or notebooks, e.g. 03,04.2 (default: those answered)")
    grade.add_argument("--points", action="append", metavar="EXERCISE=POINTS", help="points for an exercise (repeatable)")
    grade.add_argument("--statement-timeout", type=float, default=10.0, metavar="SECONDS", help="per SQL statement (default 10)")
    grade.add_argument("--time-limit", type=float, default=120.0, metavar="SECONDS", help="per submission (default 120)")
    grade.add_argument("--workers", type=_positive_int, help="submissions graded at once (default: one per core, at least 2)")
    grade.add_argument("--hidden-seed", type=int, help="also check every answer on a second dataset made with this secret seed")
    grade.add_argument("--hidden-scale", type=float, default=0.5, help="scale of the hidden dataset (default 0.5)")
    grade.add_argument("--solutions", default="notebooks", help="instructor notebooks with the reference solutions (for --hidden-seed)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.add_argument("--shard", metavar="I/N", help="grade only the I-th of N stable parts (join them with: grade merge PARTS… --out)")
    grade.add_argument("--roster", help="the LMS roster (CSV): also write Canvas and Moodle import files next to the gradebook")
