"""pgvector added to labkit's portable PostgreSQL 16 from a registry package, used for real:
CREATE EXTENSION, an HNSW index, a nearest-neighbour query that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.config import Settings
from labkit.servers import extra, pgvector
from labkit.servers.base import ConnectionInfo
from labkit.servers.binaries import PgInstall

pytestmark = pytest.mark.slow


def test_a_postgresql_labkit_did_not_fetch_is_never_written_to(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    elsewhere = PgInstall(bindir=tmp_path / "bin", version="16.14", source="a system package")
    with pytest.raises(pgvector.PgvectorUnavailable, match="labkit changes only the builds it fetched itself") as refused:
        pgvector.ensure(elsewhere, Settings.load(), quiet=True)
    assert "postgresql-16-pgvector" in refused.value.hint and not (tmp_path / "share").exists()


def test_pgvector_is_added_to_the_portable_build_and_serves_an_hnsw_index(server: ConnectionInfo, scratch_db: str) -> None:
    settings = Settings.load()
    install = extra.lab_install(settings)
    if not pgvector.fetched_by_labkit(install, settings):
        pytest.skip(f"the lab server runs from {install.source}, not labkit's portable build")
    pgvector.ensure(install, settings, quiet=True)
    assert pgvector.installed(install) and pgvector.library_loads(install)
    assert pgvector.ensure(install, settings, quiet=True) is False  # once only
    with server.connect(scratch_db) as conn:
        conn.execute("CREATE EXTENSION vector")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        assert version == "0.8.5"
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO items SELECT i, ARRAY[i % 7, i % 11, i % 13]::float4[]::vector FROM generate_series(1, 2000) i")
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
        conn.execute("ANALYZE items")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 5"))
        assert "Index Scan using items_embedding_idx" in plan, plan
        nearest = conn.execute("SELECT embedding <-> '[1,2,3]' FROM items ORDER BY embedding <-> '[1,2,3]' LIMIT 1").fetchone()[0]
        assert nearest == 0.0  # [1,2,3] itself is in the table (the i below 1001 with those remainders)
