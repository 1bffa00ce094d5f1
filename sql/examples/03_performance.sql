-- The seed's query-optimisation examples. The indexes it creates exist already (sql/finish/).
-- Changes: money casts dropped; the EXPLAIN also in a COSTS OFF form whose output is stable.

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

-- name: range_condition (good)
SELECT * FROM orders
WHERE created_at >= '2025-06-02' AND created_at < '2025-06-03'
ORDER BY id;

-- name: in_subquery
SELECT * FROM users
WHERE id IN (SELECT user_id FROM orders WHERE total_amount > 1000)
ORDER BY id;

-- name: exists_subquery
SELECT * FROM users u
WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total_amount > 1000)
ORDER BY id;

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
