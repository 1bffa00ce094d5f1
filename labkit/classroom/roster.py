"""Rosters as LMS export them (Canvas, Moodle, plain CSV) and the safe names derived from a student's id."""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import LabkitError

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1 (bytes; our names are ASCII)
DEFAULT_PREFIX = "student_"

# Header spellings of the LMS exports, most specific first (compared lower-cased, spaces collapsed).
ID_HEADERS = ("sis user id", "id number", "idnumber", "student id", "student number", "student_id", "id", "user id", "userid")
LOGIN_HEADERS = ("sis login id", "login id", "login", "username", "user name", "user")
EMAIL_HEADERS = ("email address", "email", "e-mail", "e-mail address", "mail")
NAME_HEADERS = ("student", "name", "full name", "fullname", "student name")
FIRST_HEADERS = ("first name", "firstname", "given name")
LAST_HEADERS = ("last name", "lastname", "surname", "family name")
SECTION_HEADERS = ("section", "sections", "group", "groups")


class RosterError(LabkitError):
    """The roster cannot be read, or some of its rows are unusable (one line per problem)."""

    exit_code = 2


@dataclass(frozen=True)
class Student:
    """One row of a roster: ``key`` names the student's role and database."""

    key: str
    name: str = ""
    login: str = ""
    email: str = ""
    line: int = 0
    lms_id: str = ""
    """The LMS's own user id when the roster has a separate one (Canvas's ``ID`` beside ``SIS User ID``)."""
    section: str = ""

    def names(self) -> set[str]:
        """Every name a submission folder may carry for this student, lower-cased: id, login, email, its local part, LMS id."""
        found = {self.key, self.login, self.email, self.lms_id}
        if "@" in self.email:
            found.add(self.email.split("@", 1)[0])
        return {n.strip().lower() for n in found if n and n.strip()}


def role_name(key: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The role and database name for a student: ``prefix`` + the id folded to ``[a-z0-9_]``.

    Ids that do not fold cleanly (too long) keep a short hash of the original so they stay distinct;
    two ids folding to the same name are reported by :func:`check_names`.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise RosterError(f"The name prefix {prefix!r} is not a plain lower-case identifier.", "Use letters, digits and _, e.g. db101_.")
    ascii_key = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_key).strip("_")
    if not slug:
        raise RosterError(f"The student id {key!r} has no letters or digits to name a database after.", "Give every student a plain id.")
    room = MAX_IDENTIFIER - len(prefix)
    if len(slug) > room:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        slug = slug[: room - 9] + "_" + digest
    return prefix + slug


def _norm(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").strip().lower().split())


def _column(headers: list[str], choices: tuple[str, ...]) -> int | None:
    normed = [_norm(h) for h in headers]
    for choice in choices:
        if choice in normed:
            return normed.index(choice)
    return None


def read_roster(path: Path) -> list[Student]:
    """Every student of ``path``; all bad rows are reported together in one RosterError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"There is no roster at {path}.", "Export the class list from your LMS as CSV and give its path.") from None
    except UnicodeDecodeError:
        raise RosterError(f"{path} is not UTF-8 text.", "Export the roster as CSV in UTF-8 (Canvas and Moodle both offer it).") from None
    except OSError as exc:
        raise RosterError(f"Cannot read the roster {path}: {exc.strerror}.", "Check the path and its permissions.") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RosterError(f"The roster {path} is empty.", "Export the class list with its header row (name, login or email, id).")
    delimiter = max(",;\t", key=lines[0].count)  # Moodle may export with ; or tabs
    rows = list(csv.reader(lines, delimiter=delimiter))
    headers = rows[0]
    cols = {
        "id": _column(headers, ID_HEADERS),
        "login": _column(headers, LOGIN_HEADERS),
        "email": _column(headers, EMAIL_HEADERS),
        "name": _column(headers, NAME_HEADERS),
        "first": _column(headers, FIRST_HEADERS),
        "last": _column(headers, LAST_HEADERS),
        "section": _column(headers, SECTION_HEADERS),
    }
    fallback_id = _column(headers, ("id",)) if cols["id"] != _column(headers, ("id",)) else None  # Canvas: SIS id may be empty
    if cols["id"] is None and cols["login"] is None and cols["email"] is None:
        raise RosterError(
            f"The roster {path} has no id, login or email column (its header is: {', '.join(headers)}).",
            "Export it from the LMS with the student ids (Canvas: SIS User ID or ID; Moodle: ID number, Username or Email address).",
        )

    def cell(row: list[str], index: int | None) -> str:
        return row[index].strip() if index is not None and index < len(row) else ""

    students: list[Student] = []
    problems: list[str] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        name = cell(row, cols["name"]) or " ".join(p for p in (cell(row, cols["first"]), cell(row, cols["last"])) if p)
        if name.lower() == "points possible":
            continue  # Canvas's second row
        login, email = cell(row, cols["login"]), cell(row, cols["email"])
        key = cell(row, cols["id"]) or cell(row, fallback_id) or login or email
        if len(row) < len(headers) and not key:
            problems.append(f"line {number}: {len(row)} field(s) where the header has {len(headers)}.")
            continue
        if not key:
            problems.append(f"line {number}: no student id, login or email{f' for {name!r}' if name else ''}.")
            continue
        if email and "@" not in email:
            problems.append(f"line {number}: {email!r} is not an email address.")
            continue
        students.append(
            Student(
                key=key, name=name, login=login, email=email, line=number, lms_id=cell(row, fallback_id), section=cell(row, cols["section"])
            )
        )
    problems += check_names(students, DEFAULT_PREFIX, raise_errors=False)
    if problems:
        raise RosterError(
            f"The roster {path} has {len(problems)} unusable row(s):\n  " + "\n  ".join(problems), "Fix those rows and run again."
        )
    if not students:
        raise RosterError(f"The roster {path} lists no students.", "Export the class list with one row per student.")
    return students


def check_names(students: list[Student], prefix: str, *, raise_errors: bool = True) -> list[str]:
    """Problems with the names ``students`` would get: unusable ids, duplicates, two ids folding to one name."""
    problems: list[str] = []
    seen: dict[str, Student] = {}
    for student in students:
        try:
            name = role_name(student.key, prefix)
        except RosterError as exc:
            problems.append(f"line {student.line}: {exc.message}")
            continue
        if (other := seen.get(name)) is not None:
            what = "the same id" if other.key == student.key else f"the id {other.key!r}, which gives the same name {name!r}"
            problems.append(f"line {student.line}: {student.key!r} has {what} as line {other.line}.")
            continue
        seen[name] = student
    if problems and raise_errors:
        raise RosterError("Some students cannot be given a database:\n  " + "\n  ".join(problems), "Give each student a distinct id.")
    return problems
