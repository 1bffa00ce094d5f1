"""The shop schema: ordered .sql files in sql/schema (before data) and sql/finish (after data)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from labkit.config import SQL_DIR

STAGES = ("schema", "finish")


def schema_files(stage: str) -> list[Path]:
    """The stage's files in the order they are applied (their names start with a number)."""
    if stage not in STAGES:
        raise ValueError(f"unknown schema stage {stage!r}; expected one of {STAGES}")
    return sorted((SQL_DIR / stage).glob("*.sql"))


def schema_version() -> str:
    """A short hash of every schema file: changes whenever the schema does."""
    digest = hashlib.sha256()
    for stage in STAGES:
        for path in schema_files(stage):
            digest.update(f"{stage}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _apply(conn: psycopg.Connection, stage: str) -> None:
    with conn.transaction():
        for path in schema_files(stage):
            conn.execute(path.read_text())  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO labkit_meta (key, value) VALUES ('schema_version', %s), ('schema_stage', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [schema_version(), stage],
        )


def apply_schema(conn: psycopg.Connection) -> None:
    """Extensions, types, tables and functions: everything the data load needs. Idempotent."""
    _apply(conn, "schema")


def finish_schema(conn: psycopg.Connection) -> None:
    """Foreign keys, secondary indexes, statistics and triggers, after the data. Idempotent."""
    _apply(conn, "finish")
