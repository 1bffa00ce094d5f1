"""The package tree names the architecture: each concern imports only the floors below it."""

from __future__ import annotations

import ast
from pathlib import Path

import labkit

PACKAGE = Path(labkit.__file__).resolve().parent

# What each package may import from the others (besides itself). Lower floors never import higher ones.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "servers": {"config", "errors"},
    "shop": {"config", "errors", "servers"},
    "exercises": {"config", "errors", "servers", "shop"},
    "classroom": {"config", "errors", "servers", "shop"},
    "grading": {"config", "errors", "servers", "shop", "exercises", "classroom"},  # the LMS exports read the class roster
    "notebook": {"config", "errors", "servers", "shop", "exercises"},
    "cli": {"config", "errors", "servers", "shop", "exercises", "grading", "classroom", "notebook"},
    "__init__": {"errors", "notebook"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "labkit":
            names = [node.module] if node.module != "labkit" else [f"labkit.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "labkit"]
        found.update(n.split(".")[1] for n in names if "." in n)
    return found


def test_every_module_imports_only_the_floors_below_its_package() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        package = parts[0]
        assert package in ALLOWED, f"{path}: a new top-level module or package needs its place in ALLOWED"
        for other in sorted(_imported_packages(path) - {package} - ALLOWED[package]):
            wrong.append(f"{path.relative_to(PACKAGE)} imports labkit.{other}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_only_the_ground_floor_lives_at_the_top() -> None:
    top_modules = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top_modules == ["__init__", "config", "errors"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    for name in packages:
        assert ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())), f"labkit/{name}/ says what it is for"


def test_notebook_names_stay_importable_from_labkit() -> None:
    from labkit import Lab, LabkitError, erd, explain, lab, sessions

    assert callable(lab) and Lab.__name__ == "Lab" and issubclass(LabkitError, Exception)
    assert callable(erd.draw) and callable(explain.plan) and callable(explain.draw) and hasattr(sessions, "Sessions")
