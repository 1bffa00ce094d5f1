"""The shop schema (sql/schema, sql/finish) on a fresh PostgreSQL 16 database, without data.

What is checked: both stages apply to an empty database and again as a no-op; the tables and
columns the data generator relies on; every constraint validated; the seed's indexes; each of
the seed's failing statements fails with its documented SQLSTATE and message; the corrected
triggers behave (updated_at, audit with old/new jsonb, stock reservation, also concurrently).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pglast
import psycopg
import pytest
from psycopg import sql

from labkit.servers.base import ConnectionInfo
from labkit.shop import schema

FRESH_DB = "t_schema_fresh"
SEED_ORIGINALS = sorted((schema.SQL_DIR / "seed_originals").glob("*.sql"))

# The contract with the data generator (labkit/data): tables and their columns, in order.
TABLES: dict[str, list[str]] = {
    "labkit_meta": ["key", "value"],
    "categories": ["id", "parent_id", "name", "slug"],
    "users": ["id", "email", "username", "password_hash", "role", "profile", "tags", "created_at", "updated_at",
              "last_login_at", "deleted_at", "search_vector"],
    "products": ["id", "sku", "name", "description", "attributes", "price", "cost", "stock_quantity", "reserved_quantity",
                 "categories", "category_id", "created_at", "updated_at"],
    "inventory": ["product_id", "product_created_at", "quantity", "version", "updated_at"],
    "orders": ["id", "order_number", "user_id", "shipping_address", "billing_address", "status", "subtotal", "tax_amount",
               "shipping_amount", "total_amount", "metadata", "created_at", "updated_at", "shipped_at", "delivered_at"],
    "order_items": ["id", "order_id", "product_id", "product_created_at", "quantity", "unit_price", "total_price",
                    "product_snapshot", "created_at"],
    "audit_log": ["id", "table_name", "operation", "user_id", "changed_at", "old_data", "new_data", "query"],
    "user_events": ["id", "user_id", "event_type", "created_at", "properties"],
    "events": ["id", "name", "kind", "start_time", "end_time"],
    "logs": ["id", "created_at", "level", "service", "message", "duration_ms"],
}  # fmt: skip

FOREIGN_KEYS = {
    ("categories", "categories_parent_id_fkey", "FOREIGN KEY (parent_id) REFERENCES categories(id) ON DELETE RESTRICT"),
    ("products", "products_category_id_fkey", "FOREIGN KEY (category_id) REFERENCES categories(id) ON DELETE RESTRICT"),
    ("inventory", "inventory_product_fkey",
     "FOREIGN KEY (product_id, product_created_at) REFERENCES products(id, created_at) ON DELETE CASCADE"),
    ("orders", "orders_user_id_fkey", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE RESTRICT"),
    ("order_items", "order_items_order_id_fkey", "FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE"),
    ("order_items", "order_items_product_fkey",
     "FOREIGN KEY (product_id, product_created_at) REFERENCES products(id, created_at) ON DELETE RESTRICT"),
    ("user_events", "user_events_user_id_fkey", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"),
}  # fmt: skip

# The seed's indexes: name → access method and what the definition must contain.
SEED_INDEXES = {
    "idx_users_email_lower": ("btree", "(lower((email)::text))"),
    "idx_users_created_at": ("btree", "(created_at DESC)"),
    "idx_users_deleted_at": ("btree", "WHERE (deleted_at IS NULL)"),
    "idx_users_profile_gin": ("gin", "(profile)"),
    "idx_users_tags_gin": ("gin", "(tags)"),
    "idx_users_search": ("gin", "(search_vector)"),
    "idx_users_active": ("btree", "(created_at) WHERE (deleted_at IS NULL)"),
    "idx_orders_user_created": ("btree", "(user_id, created_at DESC)"),
    "idx_orders_status_created": ("btree", "(status, created_at DESC) WHERE (status = ANY"),
    "idx_orders_year_month": ("btree", "EXTRACT(year FROM (created_at AT TIME ZONE 'UTC'::text))"),
    "idx_events_duration": ("gist", "(tstzrange(start_time, end_time))"),
    "idx_products_search": ("gin", "to_tsvector('english'::regconfig"),
    "idx_logs_created_brin": ("brin", "(created_at) WITH (pages_per_range='128')"),
    "idx_products_sku_include": ("btree", "(sku) INCLUDE (name, price, stock_quantity)"),
}

ADDRESS = "ROW('1 Main St', 'Springfield', 'IL', '62701', 'US')::address"


# --------------------------------------------------------------------------- fixtures and helpers


def _create_database(server: ConnectionInfo, name: str) -> None:
    with server.connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'").format(sql.Identifier(name))
        )


def _drop_database(server: ConnectionInfo, name: str) -> None:
    with server.connect() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def fresh(server: ConnectionInfo) -> Iterator[str]:
    """A new, empty database with both schema stages applied (and no data)."""
    _create_database(server, FRESH_DB)
    with server.connect(FRESH_DB) as conn:
        schema.apply_schema(conn)
        schema.finish_schema(conn)
    yield FRESH_DB
    _drop_database(server, FRESH_DB)


@pytest.fixture
def tx(server: ConnectionInfo, fresh: str) -> Iterator[psycopg.Connection]:
    """A connection to the fresh database whose work is rolled back at the end."""
    with server.connect(fresh, autocommit=False) as conn:
        yield conn
        conn.rollback()


def _one(conn: psycopg.Connection, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None, query
    return row[0] if len(row) == 1 else row


def _sample(conn: psycopg.Connection, *, stock: int = 3) -> dict[str, Any]:
    """A category, a product with `stock` units, a user and a pending order; their keys."""
    conn.execute("INSERT INTO categories (id, parent_id, name, slug) VALUES (1, NULL, 'Tools', 'tools')")
    product_id, product_created_at = _one(
        conn,
        "INSERT INTO products (sku, name, price, stock_quantity, category_id, created_at) "
        "VALUES ('SKU-1', 'Hammer', 9.99, %s, 1, '2024-02-01 10:00+00') RETURNING id, created_at",
        [stock],
    )
    user_id = _one(
        conn,
        "INSERT INTO users (email, username, password_hash, created_at, updated_at) "
        "VALUES ('ann.lee@example.com', 'annlee', 'x', '2024-01-05 00:00+00', '2024-01-05 00:00+00') RETURNING id",
    )
    order_id = _one(
        conn,
        f"INSERT INTO orders (order_number, user_id, shipping_address, billing_address, subtotal, tax_amount, "
        f"shipping_amount, created_at, updated_at) VALUES ('ORD-1', %s, {ADDRESS}, {ADDRESS}, 19.98, 1.60, 4.99, "
        f"'2024-02-02 00:00+00', '2024-02-02 00:00+00') RETURNING id",
        [user_id],
    )
    return {"product": (product_id, product_created_at), "user": user_id, "order": order_id}


def _add_item(conn: psycopg.Connection, keys: dict[str, Any], quantity: int, created_at: Any = None) -> None:
    product_id, product_created_at = keys["product"]
    conn.execute(
        "INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot) "
        "VALUES (%s, %s, %s, %s, 9.99, '{\"sku\": \"SKU-1\"}')",
        [keys["order"], product_id, created_at or product_created_at, quantity],
    )


def _catalog(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the schema files create, as comparable text."""
    queries = {
        "relations": "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "triggers": "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
        "functions": "SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2",
        "types": "SELECT typname, typtype FROM pg_type WHERE typnamespace = 'public'::regnamespace ORDER BY 1",
        "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
        "statistics": "SELECT stxname, stxkind::text FROM pg_statistic_ext ORDER BY 1",
        "partitions": "SELECT inhrelid::regclass::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits "
        "JOIN pg_class c ON c.oid = inhrelid ORDER BY 1",
    }
    return {key: conn.execute(query).fetchall() for key, query in queries.items()}  # type: ignore[arg-type]


def _seed_original(path: Path) -> tuple[str, str, list[str]]:
    text = path.read_text()
    expect = re.search(r"^-- expect: (.+)$", text, flags=re.MULTILINE)
    sqlstate = re.search(r"^-- sqlstate: (\w{5})$", text, flags=re.MULTILINE)
    assert expect and sqlstate, f"{path.name} lacks its -- expect: / -- sqlstate: header"
    return sqlstate.group(1), expect.group(1), list(pglast.split(text))


# --------------------------------------------------------------------------- the files


def test_schema_files_are_numbered_and_ordered() -> None:
    for stage in schema.STAGES:
        files = schema.schema_files(stage)
        assert files, stage
        assert [p.name for p in files] == sorted(p.name for p in files)
        assert all(re.fullmatch(r"\d\d_[a-z_]+\.sql", p.name) for p in files), files
    assert schema.schema_files("schema")[0].name == "00_extensions.sql"
    with pytest.raises(ValueError, match="unknown schema stage"):
        schema.schema_files("examples")


def test_schema_version_is_a_short_stable_hash_of_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = schema.schema_version()
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert schema.schema_version() == version
    copy = tmp_path / "sql"
    for stage in schema.STAGES:
        shutil.copytree(schema.SQL_DIR / stage, copy / stage)
    monkeypatch.setattr(schema, "SQL_DIR", copy)
    assert schema.schema_version() == version  # the same contents, elsewhere
    (copy / "finish" / "30_statistics.sql").write_text((copy / "finish" / "30_statistics.sql").read_text() + "\n-- changed\n")
    assert schema.schema_version() != version


# --------------------------------------------------------------------------- applying


def test_both_stages_apply_to_an_empty_database(server: ConnectionInfo, fresh: str) -> None:
    with server.connect(fresh) as conn:
        meta = dict(conn.execute("SELECT key, value FROM labkit_meta").fetchall())  # type: ignore[arg-type]
        columns = conn.execute(
            "SELECT c.relname, array_agg(a.attname ORDER BY a.attnum) FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "GROUP BY c.relname"
        ).fetchall()
        partitions = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT inhparent::regclass::text, count(*) FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid "
                "WHERE c.relkind = 'r' GROUP BY 1"
            ).fetchall()
        )
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        money = conn.execute(
            "SELECT attrelid::regclass, attname FROM pg_attribute WHERE atttypid = 'money'::regtype AND attnum > 0"
        ).fetchall()
    assert meta == {"schema_version": schema.schema_version(), "schema_stage": "finish"}
    assert dict(columns) == TABLES
    assert partitions == {"products": 6 + 1, "audit_log": 19 + 1}  # quarters / months, plus DEFAULT
    assert {"uuid-ossp", "pg_trgm", "btree_gin", "postgres_fdw", "pg_stat_statements"} <= extensions
    assert money == []


def test_applying_again_is_a_no_op(server: ConnectionInfo, fresh: str) -> None:
    with server.connect(fresh) as conn:
        before = _catalog(conn)
        with conn.transaction():
            conn.execute("INSERT INTO labkit_meta (key, value) VALUES ('as_of', '2025-07-01') ON CONFLICT DO NOTHING")
            conn.execute("INSERT INTO logs (created_at, level, service, message) VALUES (now(), 'INFO', 'api', 'kept')")
        for _ in range(2):
            schema.apply_schema(conn)
            schema.finish_schema(conn)
        after = _catalog(conn)
        kept = _one(conn, "SELECT count(*) FROM logs WHERE message = 'kept'")
        stage = _one(conn, "SELECT value FROM labkit_meta WHERE key = 'schema_stage'")
        with conn.transaction():
            conn.execute("DELETE FROM logs")
            conn.execute("DELETE FROM labkit_meta WHERE key = 'as_of'")
    assert after == before
    assert kept == 1 and stage == "finish"


def test_a_failing_file_leaves_nothing_behind(server: ConnectionInfo, scratch_db: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Each stage is one transaction: a broken file rolls back the files before it."""
    copy = tmp_path / "sql"
    shutil.copytree(schema.SQL_DIR / "schema", copy / "schema")
    (copy / "schema" / "99_broken.sql").write_text("CREATE TABLE broken (x no_such_type);\n")
    monkeypatch.setattr(schema, "SQL_DIR", copy)
    with server.connect(scratch_db) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            schema.apply_schema(conn)
        assert _one(conn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == 0


def test_every_constraint_is_validated_and_the_foreign_keys_are_complete(server: ConnectionInfo, fresh: str) -> None:
    with server.connect(fresh) as conn:
        not_valid = conn.execute("SELECT conrelid::regclass, conname FROM pg_constraint WHERE NOT convalidated").fetchall()
        fks = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conparentid = 0"
        ).fetchall()
        keys = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'p' AND conrelid::regclass::text IN ('products', 'audit_log')"
            ).fetchall()
        )
    assert not_valid == []
    assert set(fks) == FOREIGN_KEYS
    assert keys == {"products": "PRIMARY KEY (id, created_at)", "audit_log": "PRIMARY KEY (id, changed_at)"}


def test_the_seeds_indexes_and_statistics_exist(server: ConnectionInfo, fresh: str) -> None:
    with server.connect(fresh) as conn:
        found = {
            name: (method, definition)
            for name, method, definition in conn.execute(
                "SELECT c.relname, am.amname, pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                "WHERE c.relkind IN ('i', 'I') AND c.relnamespace = 'public'::regnamespace"
            )
        }
        kinds = _one(conn, "SELECT stxkind::text FROM pg_statistic_ext WHERE stxname = 'stat_orders_user_status'")
        year_month = _one(
            conn,
            "SELECT p.provolatile FROM pg_proc p WHERE p.oid = 'extract(text, timestamp)'::regprocedure",
        )
    for name, (method, fragment) in SEED_INDEXES.items():
        assert name in found, name
        assert found[name][0] == method, name
        assert fragment in found[name][1], (name, found[name][1])
    assert kinds == "{d,f,m}"  # ndistinct, dependencies, MCV: all kinds by default
    assert year_month == "i"  # EXTRACT from a timestamp (without time zone) is immutable


# --------------------------------------------------------------------------- the seed's failures


@pytest.mark.parametrize("path", SEED_ORIGINALS, ids=[p.stem for p in SEED_ORIGINALS])
def test_seed_original_fails_with_the_documented_error(path: Path, tx: psycopg.Connection) -> None:
    sqlstate, message, statements = _seed_original(path)
    with pytest.raises(psycopg.Error) as raised:
        for statement in statements:
            tx.execute(statement)  # type: ignore[arg-type]
    assert raised.value.sqlstate == sqlstate
    assert raised.value.diag.message_primary == message


def test_every_seed_original_is_listed_in_the_readme() -> None:
    readme = (schema.SQL_DIR / "README.md").read_text()
    for path in SEED_ORIGINALS:
        assert path.name in readme, path.name


def test_the_corrected_statements_succeed(tx: psycopg.Connection) -> None:
    """What the seed meant, written so PostgreSQL 16 accepts it (and the result is right)."""
    keys = _sample(tx)
    tx.execute(
        "UPDATE users SET profile = jsonb_set(profile || '{\"address\": {}}', '{address,city}', '\"New York\"') "
        "|| '{\"lastModified\": \"2024-01-01\"}' WHERE id = %s",
        [keys["user"]],
    )
    assert _one(tx, "SELECT profile FROM users WHERE id = %s", [keys["user"]]) == {
        "address": {"city": "New York"}, "lastModified": "2024-01-01"
    }  # fmt: skip
    tx.execute("SELECT set_config('app.current_user_id', '', false)")
    assert _one(tx, "SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid") is None
    tx.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")  # the expression index ignores the session's zone
    month = _one(
        tx,
        "SELECT EXTRACT(MONTH FROM (created_at AT TIME ZONE 'UTC')) FROM orders WHERE id = %s",
        [keys["order"]],
    )
    assert month == 2


# --------------------------------------------------------------------------- types, checks, partitions


def test_email_domain_is_case_insensitive_and_strict(tx: psycopg.Connection) -> None:
    for good in ("Ann.Lee@Example.COM", "ann+shop@mail.example.io", "x_y%z@a-b.de"):
        assert _one(tx, "SELECT %s::email", [good]) == good
    for bad in ("ann.example.com", "ann@example", "ann@example.c", "ann lee@example.com", "ann@exa mple.com"):
        with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
            tx.execute("SELECT %s::email", [bad])


def test_generated_columns_and_checks(tx: psycopg.Connection) -> None:
    keys = _sample(tx)
    _add_item(tx, keys, 2)
    assert _one(tx, "SELECT total_amount FROM orders WHERE id = %s", [keys["order"]]) == Decimal("26.57")
    assert _one(tx, "SELECT total_price FROM order_items WHERE order_id = %s", [keys["order"]]) == Decimal("19.98")
    with pytest.raises(psycopg.errors.GeneratedAlways), tx.transaction():
        tx.execute("UPDATE orders SET total_amount = 1 WHERE id = %s", [keys["order"]])
    refused = {
        "UPDATE orders SET status = 'shipped' WHERE id = %s": "valid_status_dates",
        "UPDATE orders SET shipped_at = created_at - interval '1 day' WHERE id = %s": "ordered_dates",
        "UPDATE orders SET subtotal = -100 WHERE id = %s": "valid_total",
        "UPDATE users SET username = 'ab' WHERE id = %s": "username_length",
        "UPDATE users SET profile = '[]' WHERE id = %s": "valid_profile",
        "UPDATE products SET reserved_quantity = stock_quantity + 1 WHERE id = %s": "valid_stock",
        "UPDATE products SET attributes = '\"text\"' WHERE id = %s": "valid_attributes",
        "UPDATE products SET price = 0 WHERE id = %s": "positive_decimal_check",
    }
    ids = {"orders": keys["order"], "users": keys["user"], "products": keys["product"][0]}
    for statement, constraint in refused.items():
        table = statement.split()[1]
        with pytest.raises(psycopg.errors.CheckViolation) as raised, tx.transaction():
            tx.execute(statement, [ids[table]])  # type: ignore[arg-type]
        assert raised.value.diag.constraint_name in (constraint, "positive_price"), statement


def test_partition_routing_does_not_depend_on_the_session_time_zone(tx: psycopg.Connection) -> None:
    _sample(tx)
    tx.execute("SET LOCAL TimeZone = 'America/New_York'")
    rows = {
        "2024-03-31 22:00": "products_2024_q2",  # 02:00 UTC on April 1st
        "2024-03-31 19:00": "products_2024_q1",  # 23:00 UTC
        "2025-06-30 20:30": "products_default",  # 00:30 UTC on July 1st 2025: after the last quarter
        "2023-12-31 12:00": "products_default",
    }
    for n, (local, partition) in enumerate(rows.items()):
        where = _one(
            tx,
            "INSERT INTO products (sku, name, price, category_id, created_at) "
            "VALUES (%s, 'x', 1, 1, %s::timestamp AT TIME ZONE 'America/New_York') RETURNING tableoid::regclass::text",
            [f"P-{n}", local],
        )
        assert where == partition, local
    # Every bound is midnight UTC (the seed's bare dates would have meant midnight wherever the
    # session happened to be when the partitions were created).
    tx.execute("SET LOCAL TimeZone = 'UTC'")
    bounds = [r[0] for r in tx.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relispartition AND relkind = 'r'")]
    assert len(bounds) == 27
    midnight = r"'\d{4}-\d\d-01 00:00:00\+00'"
    for bound in bounds:
        assert bound == "DEFAULT" or re.fullmatch(rf"FOR VALUES FROM \({midnight}\) TO \({midnight}\)", bound), bound


def test_labkit_today_and_now(tx: psycopg.Connection) -> None:
    tx.execute("SET LOCAL TimeZone = 'Pacific/Auckland'")
    tx.execute("DELETE FROM labkit_meta WHERE key = 'as_of'")
    assert str(_one(tx, "SELECT labkit_today()")) == "2025-07-01"
    tx.execute("INSERT INTO labkit_meta (key, value) VALUES ('as_of', '2024-12-31')")
    assert str(_one(tx, "SELECT labkit_today()")) == "2024-12-31"
    assert _one(tx, "SELECT labkit_now() = '2024-12-31 00:00+00'::timestamptz")
    volatility = tx.execute(
        "SELECT proname, provolatile FROM pg_proc WHERE proname IN ('labkit_today', 'labkit_now') ORDER BY 1"
    ).fetchall()
    assert volatility == [("labkit_now", "s"), ("labkit_today", "s")]


# --------------------------------------------------------------------------- triggers


def test_updated_at_is_bumped_on_update(tx: psycopg.Connection) -> None:
    keys = _sample(tx)
    tx.execute("UPDATE users SET tags = '{x}' WHERE id = %s", [keys["user"]])
    tx.execute("UPDATE orders SET metadata = '{\"x\": 1}' WHERE id = %s", [keys["order"]])
    tx.execute("UPDATE products SET name = 'Mallet' WHERE id = %s", [keys["product"][0]])
    assert _one(tx, "SELECT updated_at = now() FROM users WHERE id = %s", [keys["user"]])
    assert _one(tx, "SELECT updated_at = now() FROM orders WHERE id = %s", [keys["order"]])
    assert _one(tx, "SELECT updated_at = now() FROM products WHERE id = %s", [keys["product"][0]])
    assert _one(tx, "SELECT created_at < updated_at FROM users WHERE id = %s", [keys["user"]])


def test_audit_rows_carry_old_and_new_jsonb(tx: psycopg.Connection) -> None:
    actor = _one(tx, "SELECT uuid_generate_v4()")
    tx.execute("SELECT set_config('app.current_user_id', %s, true)", [str(actor)])
    user_id = _one(tx, "INSERT INTO users (email, username, password_hash) VALUES ('bo@example.org', 'bo_k', 'x') RETURNING id")
    tx.execute("UPDATE users SET username = 'bo_kim' WHERE id = %s", [user_id])
    tx.execute("DELETE FROM users WHERE id = %s", [user_id])
    rows = tx.execute(
        "SELECT operation, user_id, old_data->>'username', new_data->>'username', jsonb_typeof(new_data), "
        "query LIKE '%%users%%', tableoid::regclass::text FROM audit_log WHERE table_name = 'users' ORDER BY id"
    ).fetchall()
    assert [r[:4] for r in rows] == [
        ("INSERT", actor, None, "bo_k"),
        ("UPDATE", actor, "bo_k", "bo_kim"),
        ("DELETE", actor, "bo_kim", None),
    ]
    assert rows[1][4] == "object" and all(r[5] for r in rows)
    assert _one(tx, "SELECT count(*) FROM users WHERE id = %s", [user_id]) == 0  # the DELETE happened
    assert rows[0][6].startswith("audit_log_")  # routed to a partition


def test_audit_works_with_an_empty_user_setting_where_the_seeds_trigger_fails(tx: psycopg.Connection) -> None:
    keys = _sample(tx)
    tx.execute("SELECT set_config('app.current_user_id', '', false)")  # as after RESET / an ended SET LOCAL
    tx.execute("UPDATE users SET tags = '{after-reset}' WHERE id = %s", [keys["user"]])
    assert _one(tx, "SELECT user_id FROM audit_log WHERE table_name = 'users' ORDER BY id DESC LIMIT 1") is None
    # The seed's function, unchanged, on the same table: every audited write now fails.
    tx.execute(
        """
        CREATE FUNCTION seed_audit_trigger_function() RETURNS TRIGGER AS $$
        BEGIN
            INSERT INTO audit_log (table_name, operation, user_id, old_data, new_data, query)
            VALUES (
                TG_TABLE_NAME,
                TG_OP,
                current_setting('app.current_user_id', true)::UUID,
                CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN row_to_json(OLD) END,
                CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN row_to_json(NEW) END,
                current_query()
            );
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER seed_audit_users AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION seed_audit_trigger_function();
        """
    )
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='invalid input syntax for type uuid: ""'), tx.transaction():
        tx.execute("UPDATE users SET tags = '{again}' WHERE id = %s", [keys["user"]])


def test_stock_trigger_reserves_and_refuses_over_reservation(tx: psycopg.Connection) -> None:
    keys = _sample(tx, stock=3)
    product_id = keys["product"][0]
    _add_item(tx, keys, 2)
    assert _one(tx, "SELECT reserved_quantity FROM products WHERE id = %s", [product_id]) == 2
    with pytest.raises(psycopg.errors.CheckViolation, match="Insufficient stock for product"), tx.transaction():
        _add_item(tx, keys, 2)
    _add_item(tx, keys, 1)
    assert _one(tx, "SELECT stock_quantity, reserved_quantity FROM products WHERE id = %s", [product_id]) == (3, 3)
    # A product that does not exist (wrong creation time): the foreign key reports it.
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="order_items_product_fkey"), tx.transaction():
        _add_item(tx, keys, 1, created_at="2024-02-01 10:00:01+00")



def test_the_design_documents_insert_takes_the_items_product_time_from_the_product(tx: psycopg.Connection) -> None:
    keys = _sample(tx, stock=3)
    product_id, created_at = keys["product"]
    # as the design document writes it: no product_created_at (the second half of the product's key)
    item = _one(
        tx,
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price, product_snapshot) "
        "VALUES (%s, %s, 2, 9.99, '{\"sku\": \"SKU-1\"}') RETURNING product_created_at, unit_price, product_snapshot",
        [keys["order"], product_id],
    )
    assert item == (created_at, Decimal("9.99"), {"sku": "SKU-1"})
    assert _one(tx, "SELECT reserved_quantity FROM products WHERE id = %s", [product_id]) == 2
    # the seed's shorter form: price and snapshot from the product as it is now
    item = _one(
        tx,
        "INSERT INTO order_items (order_id, product_id, quantity) VALUES (%s, %s, 1) RETURNING unit_price, product_snapshot",
        [keys["order"], product_id],
    )
    assert item == (Decimal("9.99"), {"sku": "SKU-1", "name": "Hammer", "price": 9.99})
    with pytest.raises(psycopg.errors.CheckViolation, match="Insufficient stock"), tx.transaction():
        tx.execute("INSERT INTO order_items (order_id, product_id, quantity) VALUES (%s, %s, 1)", [keys["order"], product_id])
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no product"), tx.transaction():
        tx.execute("INSERT INTO order_items (order_id, product_id, quantity) VALUES (%s, uuid_generate_v4(), 1)", [keys["order"]])
    # the composite foreign key stays
    assert _one(
        tx, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'order_items_product_fkey'"
    ) == "FOREIGN KEY (product_id, product_created_at) REFERENCES products(id, created_at) ON DELETE RESTRICT"


def test_a_product_id_with_two_creation_times_must_say_which(tx: psycopg.Connection) -> None:
    keys = _sample(tx, stock=3)
    product_id = keys["product"][0]
    tx.execute(
        "INSERT INTO products (id, sku, name, price, stock_quantity, category_id, created_at) "
        "VALUES (%s, 'SKU-2', 'Hammer II', 5, 3, 1, '2025-03-01 00:00+00')",
        [product_id],
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="several creation times"), tx.transaction():
        tx.execute("INSERT INTO order_items (order_id, product_id, quantity) VALUES (%s, %s, 1)", [keys["order"], product_id])

SEED_STOCK_FUNCTION = """
CREATE OR REPLACE FUNCTION check_stock_availability()
RETURNS TRIGGER AS $$
BEGIN
    IF NEW.quantity > (
        SELECT stock_quantity - reserved_quantity
        FROM products
        WHERE id = NEW.product_id
    ) THEN
        RAISE EXCEPTION 'Insufficient stock for product %', NEW.product_id;
    END IF;

    -- Reserve stock
    UPDATE products
    SET reserved_quantity = reserved_quantity + NEW.quantity
    WHERE id = NEW.product_id;

    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def _race(server: ConnectionInfo, dbname: str) -> tuple[psycopg.Error | None, tuple[int, int]]:
    """Two sessions each order the last unit; the second starts while the first is uncommitted."""
    first = server.connect(dbname, autocommit=False)
    second = server.connect(dbname, autocommit=False)
    keys: dict[str, Any] = {}
    with server.connect(dbname) as setup:
        keys = _sample(setup, stock=1)
    outcome: dict[str, psycopg.Error | None] = {"error": None}

    def order_last_unit() -> None:
        try:
            _add_item(second, keys, 1)
            second.commit()
        except psycopg.Error as error:
            outcome["error"] = error
            second.rollback()

    try:
        _add_item(first, keys, 1)
        thread = threading.Thread(target=order_last_unit)
        thread.start()
        pid = second.info.backend_pid
        with server.connect(dbname) as watcher:
            deadline = time.monotonic() + 10
            while _one(watcher, "SELECT wait_event_type IS DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]):
                assert time.monotonic() < deadline, "the second session never waited for the first"
                time.sleep(0.02)
        first.commit()
        thread.join(10)
        with server.connect(dbname) as check:
            stock = _one(check, "SELECT stock_quantity, reserved_quantity FROM products WHERE id = %s", [keys["product"][0]])
    finally:
        first.close()
        second.close()
    return outcome["error"], stock


@pytest.mark.parametrize("variant", ["corrected", "seed", "seed_without_check"])
def test_racing_for_the_last_unit(variant: str, server: ConnectionInfo, scratch_db: str) -> None:
    """The seed's check-then-update races; only the valid_stock CHECK stops it from overselling."""
    with server.connect(scratch_db) as conn:
        schema.apply_schema(conn)
        schema.finish_schema(conn)
        if variant.startswith("seed"):
            conn.execute(SEED_STOCK_FUNCTION)
        if variant == "seed_without_check":
            conn.execute("ALTER TABLE products DROP CONSTRAINT valid_stock")
    error, (stock, reserved) = _race(server, scratch_db)
    if variant == "corrected":
        # The waiting UPDATE re-checks the committed row: a clean refusal by the trigger.
        assert isinstance(error, psycopg.errors.CheckViolation)
        assert error.diag.message_primary.startswith("Insufficient stock") and error.diag.constraint_name is None
        assert (stock, reserved) == (1, 1)
    elif variant == "seed":
        # Both sessions passed the check; the table's CHECK constraint is the only thing that held.
        assert isinstance(error, psycopg.errors.CheckViolation)
        assert error.diag.constraint_name == "valid_stock"
        assert (stock, reserved) == (1, 1)
    else:
        assert error is None  # oversold: two units reserved, one in stock
        assert (stock, reserved) == (1, 2)
