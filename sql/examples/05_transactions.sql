-- The seed's transaction, locking and N+1 examples.
-- Changes from the seed:
--   * The savepoint example inserted orders (user_id, total_amount): total_amount is generated
--     (it cannot be written), order_number, the addresses and subtotal have no default, and
--     'user-uuid' is no uuid. Here the rows are complete and the ids real.
--   * Its "check constraint" step was a DO block calling ROLLBACK TO SAVEPOINT: PL/pgSQL has no
--     such statement (syntax error at or near "TO"; sql/seed_originals/07). Two working forms:
--     the client runs ROLLBACK TO SAVEPOINT itself (savepoint_transaction), or PL/pgSQL uses a
--     block with an EXCEPTION clause, which runs inside an implicit savepoint (exception_block).
--   * The check itself is done by the stock trigger (sql/schema/40_functions.sql), atomically.
--   * BEGIN and COMMIT are left out: tests/test_examples.py runs each example inside one
--     transaction and rolls it back. In psql, wrap the statements in BEGIN; … COMMIT;.
--   * Lock contention: the seed's "?" placeholders are replaced by real values; the optimistic
--     version shows both outcomes (current version: 1 row updated; stale version: 0 rows, the
--     signal to re-read and retry).

-- name: savepoint_transaction (dml; several statements)
SAVEPOINT before_orders;

INSERT INTO orders (order_number, user_id, shipping_address, billing_address, subtotal)
SELECT 'ORD-EXAMPLE-1', id,
       ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address,
       ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address,
       100.00
FROM users WHERE deleted_at IS NULL ORDER BY username LIMIT 1;

SAVEPOINT before_items;

INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot)
SELECT o.id, p.id, p.created_at, 2, p.price, jsonb_build_object('sku', p.sku, 'name', p.name, 'price', p.price)
FROM orders o, products p
WHERE o.order_number = 'ORD-EXAMPLE-1'
  AND p.sku = (SELECT min(sku) FROM products WHERE stock_quantity - reserved_quantity >= 2);

-- The client decides the items must go (e.g. payment refused): undo back to the savepoint.
-- The order, inserted before it, stays.
ROLLBACK TO SAVEPOINT before_items;

SELECT o.order_number, o.total_amount,
       (SELECT count(*) FROM order_items oi WHERE oi.order_id = o.id) AS items
FROM orders o
WHERE o.order_number = 'ORD-EXAMPLE-1';

-- name: exception_block (dml; several statements)
INSERT INTO orders (order_number, user_id, shipping_address, billing_address, subtotal)
SELECT 'ORD-EXAMPLE-2', id,
       ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address,
       ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address,
       100.00
FROM users WHERE deleted_at IS NULL ORDER BY username LIMIT 1;

DO $$
BEGIN
    -- A block with an EXCEPTION clause is PL/pgSQL's savepoint: an error inside it undoes
    -- only the block's work, and the handler decides what happens next.
    BEGIN
        INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot)
        SELECT o.id, p.id, p.created_at, p.stock_quantity + 1, p.price, '{}'
        FROM orders o, products p
        WHERE o.order_number = 'ORD-EXAMPLE-2'
          AND p.sku = (SELECT min(sku) FROM products);
    EXCEPTION WHEN check_violation THEN
        RAISE NOTICE 'not enough stock: % (the order is kept, without items)', SQLERRM;
    END;
END
$$;

SELECT o.order_number, (SELECT count(*) FROM order_items oi WHERE oi.order_id = o.id) AS items
FROM orders o
WHERE o.order_number = 'ORD-EXAMPLE-2';

-- name: advisory_lock (several statements)
-- A session-level advisory lock: held until unlocked or the session ends (even across
-- COMMIT/ROLLBACK), so an error between lock and unlock can leave it held.
SELECT pg_advisory_lock(12345);

-- Do critical work

SELECT pg_advisory_unlock(12345) AS released;

-- name: advisory_lock_held (several statements)
-- While it is held, pg_locks shows it (objid is the key).
SELECT pg_advisory_lock(12345);

SELECT locktype, objid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- name: advisory_xact_lock
-- Usually the better choice: a transaction-level lock is released by COMMIT or ROLLBACK, and
-- the try_ form returns false at once instead of waiting when another session holds it.
SELECT pg_try_advisory_xact_lock(12345) AS got_it;

-- name: n_plus_one_fix
SELECT u.id, u.username,
       COALESCE(jsonb_agg(jsonb_build_object('id', o.id, 'total', o.total_amount) ORDER BY o.created_at DESC)
                FILTER (WHERE o.id IS NOT NULL), '[]') AS orders
FROM users u
LEFT JOIN orders o ON u.id = o.user_id
GROUP BY u.id
ORDER BY u.username
LIMIT 20;

-- name: pessimistic_locking (dml; several statements)
-- The seed's "wrong" version: correct, but the row stays locked for the whole transaction,
-- including the slow external call the seed puts between the two statements.
SELECT product_id, quantity, version
FROM inventory
WHERE product_id = (SELECT product_id FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1)
FOR UPDATE;

-- (the slow external call would be here, with the row locked)

UPDATE inventory
SET quantity = quantity - 1, version = version + 1
WHERE product_id = (SELECT product_id FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1)
RETURNING product_id, quantity, version;

-- name: optimistic_locking (dml; several statements)
-- Read without a lock and remember the version (a temporary table plays the client's memory).
CREATE TEMPORARY TABLE seen ON COMMIT DROP AS
SELECT product_id, version FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1;

-- (the slow external call would be here, with nothing locked)

-- Write only if nobody changed the row meanwhile: one row updated.
UPDATE inventory i
SET quantity = i.quantity - 1, version = i.version + 1
FROM seen
WHERE i.product_id = seen.product_id
  AND i.version = seen.version
  AND i.quantity >= 1
RETURNING i.product_id, i.quantity, i.version;

-- name: optimistic_locking_stale (dml; several statements)
CREATE TEMPORARY TABLE seen ON COMMIT DROP AS
SELECT product_id, version FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1;

-- Meanwhile another session sells one (simulated here): the version moves on.
UPDATE inventory
SET quantity = quantity - 1, version = version + 1
WHERE product_id = (SELECT product_id FROM seen);

-- Our guarded write now matches no row: the signal to re-read and retry (or give up).
WITH attempt AS (
    UPDATE inventory i
    SET quantity = i.quantity - 1, version = i.version + 1
    FROM seen
    WHERE i.product_id = seen.product_id
      AND i.version = seen.version
      AND i.quantity >= 1
    RETURNING 1
)
SELECT count(*) AS rows_updated FROM attempt;
