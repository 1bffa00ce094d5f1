-- The seed's query-optimisation examples. The indexes it creates exist already (sql/finish/;
-- sql/examples/07_indexes.sql shows each one used).
-- Changes from the seed:
--   * money casts dropped (the columns are numeric);
--   * the EXPLAIN also in a COSTS OFF form, whose output is stable enough to compare;
--   * each "bad vs good" pair also as EXPLAIN (COSTS OFF), so the difference is visible;
--   * the dates moved into the dataset's period (2024-01-01 had no orders worth showing);
--   * "Use EXISTS instead of IN" is a myth on PostgreSQL: both are planned as the same
--     semi-join (see the two plans). The real trap is NOT IN over a subquery that can yield
--     NULL: it then returns no rows at all. NOT EXISTS has no such trap;
--   * the batch update's 'uuid1', 'uuid2', 'uuid3' placeholders are three real orders, chosen
--     by a deterministic subquery.

-- name: explain_analyze_json
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT u.username, COUNT(o.id) AS order_count, SUM(o.total_amount) AS total_spent
FROM users u
JOIN orders o ON u.id = o.user_id
WHERE o.created_at >= '2024-01-01'
GROUP BY u.id, u.username
HAVING COUNT(o.id) > 5
ORDER BY total_spent DESC
LIMIT 20;

-- name: explain_shape
EXPLAIN (COSTS OFF)
SELECT u.username, COUNT(o.id) AS order_count, SUM(o.total_amount) AS total_spent
FROM users u
JOIN orders o ON u.id = o.user_id
WHERE o.created_at >= '2024-01-01'
GROUP BY u.id, u.username
HAVING COUNT(o.id) > 5
ORDER BY total_spent DESC
LIMIT 20;

-- name: function_on_column (bad: not sargable)
SELECT * FROM orders
WHERE DATE_TRUNC('day', created_at) = '2025-06-02'
ORDER BY id;

-- name: function_on_column_plan
-- plan: Seq Scan on orders
-- A function around the column hides it from the index on created_at: every row is computed.
EXPLAIN (COSTS OFF)
SELECT * FROM orders
WHERE DATE_TRUNC('day', created_at) = '2025-06-02';

-- name: range_condition (good)
SELECT * FROM orders
WHERE created_at >= '2025-06-02' AND created_at < '2025-06-03'
ORDER BY id;

-- name: range_condition_plan
-- plan: idx_orders_created_at
EXPLAIN (COSTS OFF)
SELECT * FROM orders
WHERE created_at >= '2025-06-02' AND created_at < '2025-06-03';

-- name: in_subquery
SELECT * FROM users
WHERE id IN (SELECT user_id FROM orders WHERE total_amount > 1000)
ORDER BY id;

-- name: exists_subquery
SELECT * FROM users u
WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total_amount > 1000)
ORDER BY id;

-- name: in_subquery_plan
-- plan: Hash Join
-- (aliases as in the EXISTS form, so the two plans can be compared line by line)
EXPLAIN (COSTS OFF)
SELECT * FROM users u
WHERE u.id IN (SELECT o.user_id FROM orders o WHERE o.total_amount > 1000);

-- name: exists_subquery_plan
-- plan: Hash Join
-- The same plan as for IN: both are semi-joins to the planner.
EXPLAIN (COSTS OFF)
SELECT * FROM users u
WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total_amount > 1000);

-- name: not_in_null_trap
-- Users who never placed a big order, written with NOT IN over a subquery that yields one
-- NULL (as any nullable column can): x NOT IN (…, NULL) is never true, so the count is 0.
SELECT count(*) AS users_without_big_orders
FROM users
WHERE id NOT IN (SELECT CASE WHEN total_amount > 1000 THEN user_id END FROM orders);

-- name: not_exists
-- The same question with NOT EXISTS: NULLs cannot spoil it.
SELECT count(*) AS users_without_big_orders
FROM users u
WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total_amount > 1000);

-- name: batch_update (dml; the seed's 'uuid1' placeholders replaced by three real open orders)
UPDATE products p
SET stock_quantity = stock_quantity - s.quantity
FROM (
    SELECT product_id, product_created_at, SUM(quantity) AS quantity
    FROM order_items
    WHERE order_id = ANY (ARRAY(SELECT id FROM orders WHERE status = 'processing' ORDER BY order_number LIMIT 3))
    GROUP BY product_id, product_created_at
) s
WHERE p.id = s.product_id AND p.created_at = s.product_created_at
RETURNING p.sku, p.stock_quantity;
