"""Self-checking exercises: result fingerprints, structural requirements, plan and state checks."""

from labkit.exercises.checker import CheckResult, ExerciseFailed, check, evaluate, hint, spec, specs

__all__ = ["CheckResult", "ExerciseFailed", "check", "evaluate", "hint", "spec", "specs"]
