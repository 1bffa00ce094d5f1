-- The seed's CTE examples, runnable on the shop.
-- Changes from the seed:
--   * the categories table the recursive query reads is defined here (sql/schema/30_tables.sql):
--     a tree four levels deep;
--   * CURRENT_DATE → labkit_today() (the dataset's fixed "today"): on the real date every
--     customer would be "inactive";
--   * money casts dropped (total_amount is numeric).

-- name: category_tree
WITH RECURSIVE category_tree AS (
    SELECT id, name, parent_id, 0 AS level, ARRAY[id] AS path, name::text AS full_path
    FROM categories
    WHERE parent_id IS NULL
    UNION ALL
    SELECT c.id, c.name, c.parent_id, ct.level + 1, ct.path || c.id, ct.full_path || ' > ' || c.name
    FROM categories c
    INNER JOIN category_tree ct ON c.parent_id = ct.id
    WHERE NOT c.id = ANY(ct.path)  -- prevent cycles
)
SELECT * FROM category_tree
ORDER BY path;

-- name: customer_segments
WITH
user_orders AS (
    SELECT u.id AS user_id,
           COUNT(o.id) AS order_count,
           SUM(o.total_amount) AS total_spent,
           MAX(o.created_at) AS last_order_date
    FROM users u
    LEFT JOIN orders o ON u.id = o.user_id
    WHERE u.deleted_at IS NULL
    GROUP BY u.id
),
user_stats AS (
    SELECT user_id, order_count, total_spent, last_order_date,
           CASE
               WHEN order_count = 0 THEN 'new'
               WHEN last_order_date < labkit_today() - INTERVAL '90 days' THEN 'inactive'
               WHEN total_spent > 1000 THEN 'vip'
               ELSE 'active'
           END AS customer_segment
    FROM user_orders
),
segment_summary AS (
    SELECT customer_segment, COUNT(*) AS user_count, AVG(order_count) AS avg_orders, AVG(total_spent) AS avg_spent
    FROM user_stats
    GROUP BY customer_segment
)
SELECT * FROM segment_summary
ORDER BY user_count DESC;
