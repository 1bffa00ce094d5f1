-- The seed's transaction, locking and N+1 examples.
-- Changes: the savepoint example's INSERTs named columns that have no default and ids like
-- 'user-uuid'; here they use real rows. Its ROLLBACK TO inside DO cannot work (PL/pgSQL has
-- no ROLLBACK TO): the check is done in SQL and the savepoint rolled back by the client.

-- name: savepoint_transaction (dml)
WITH new_order AS (
    INSERT INTO orders (order_number, user_id, shipping_address, billing_address, subtotal)
    SELECT 'ORD-EXAMPLE-1', id, ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address,
           ROW('1 Example Street', 'Chicago', 'IL', '60601', 'US')::address, 100.00
    FROM users WHERE deleted_at IS NULL ORDER BY username LIMIT 1
    RETURNING id, total_amount
)
SELECT total_amount FROM new_order;

-- name: advisory_lock
SELECT pg_advisory_lock(12345);

-- name: advisory_unlock
SELECT pg_advisory_unlock(12345);

-- name: n_plus_one_fix
SELECT u.id, u.username,
       COALESCE(jsonb_agg(jsonb_build_object('id', o.id, 'total', o.total_amount) ORDER BY o.created_at DESC)
                FILTER (WHERE o.id IS NOT NULL), '[]') AS orders
FROM users u
LEFT JOIN orders o ON u.id = o.user_id
GROUP BY u.id
ORDER BY u.username
LIMIT 20;

-- name: optimistic_locking (dml; succeeds only while the version is unchanged)
UPDATE inventory
SET quantity = quantity - 1, version = version + 1
WHERE product_id = (SELECT product_id FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1)
  AND version = (SELECT version FROM inventory WHERE quantity > 0 ORDER BY product_id LIMIT 1)
  AND quantity >= 1
RETURNING product_id, quantity, version;
