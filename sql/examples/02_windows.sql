-- The seed's window-function examples.
-- Changes from the seed:
--   * CURRENT_DATE → labkit_today() (the dataset's fixed "today"), so "the last 30 days" always
--     means the same rows;
--   * money casts dropped (the columns are numeric);
--   * order_items joins products on the full key (id, created_at): products is partitioned by
--     created_at, so that is its primary key (and the foreign key's target);
--   * a tie-breaker (id) in the final ORDER BY and in the windows whose result depends on the
--     row order (ROW_NUMBER, the moving average, LAG, LEAD): with equal revenues the seed's
--     numbering was arbitrary and could change from run to run. The cumulative SUM keeps the
--     seed's ORDER BY revenue DESC: its default frame (RANGE … CURRENT ROW) includes all rows
--     of equal revenue, so tied rows show the same running total;
--   * the sessionisation shows its first 100 sessions (LIMIT), the full result is large.
-- Kept (a seed bug the window-functions notebook discusses): COUNT(oi.id) counts line items,
-- not units sold; SUM(oi.quantity) would.

-- name: product_sales_ranking
WITH product_sales AS (
    SELECT p.id, p.name, p.categories[1] AS primary_category,
           COUNT(oi.id) AS units_sold,
           SUM(oi.total_price) AS revenue
    FROM products p
    JOIN order_items oi ON p.id = oi.product_id AND p.created_at = oi.product_created_at
    JOIN orders o ON oi.order_id = o.id
    WHERE o.created_at >= labkit_today() - INTERVAL '30 days'
    GROUP BY p.id, p.name, p.categories[1]
)
SELECT *,
       ROW_NUMBER() OVER (ORDER BY revenue DESC, id) AS revenue_rank,
       RANK() OVER (PARTITION BY primary_category ORDER BY units_sold DESC) AS category_rank,
       DENSE_RANK() OVER (ORDER BY units_sold DESC) AS units_rank,
       SUM(revenue) OVER () AS total_revenue,
       SUM(revenue) OVER (PARTITION BY primary_category) AS category_revenue,
       revenue / SUM(revenue) OVER () * 100 AS revenue_percentage,
       AVG(revenue) OVER (ORDER BY revenue DESC, id ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS moving_avg_revenue,
       SUM(revenue) OVER (ORDER BY revenue DESC) AS cumulative_revenue,
       LAG(revenue, 1) OVER (ORDER BY revenue DESC, id) AS prev_revenue,
       LEAD(revenue, 1) OVER (ORDER BY revenue DESC, id) AS next_revenue
FROM product_sales
ORDER BY revenue DESC, id;

-- name: sessionisation
WITH user_sessions AS (
    SELECT user_id, created_at,
           LAG(created_at) OVER (PARTITION BY user_id ORDER BY created_at) AS prev_event,
           CASE
               WHEN created_at - LAG(created_at) OVER (PARTITION BY user_id ORDER BY created_at) > INTERVAL '30 minutes'
                 OR LAG(created_at) OVER (PARTITION BY user_id ORDER BY created_at) IS NULL
               THEN 1 ELSE 0
           END AS new_session
    FROM user_events
),
session_ids AS (
    SELECT *, SUM(new_session) OVER (PARTITION BY user_id ORDER BY created_at) AS session_id
    FROM user_sessions
)
SELECT user_id, session_id,
       MIN(created_at) AS session_start, MAX(created_at) AS session_end,
       COUNT(*) AS event_count, MAX(created_at) - MIN(created_at) AS session_duration
FROM session_ids
GROUP BY user_id, session_id
ORDER BY user_id, session_start
LIMIT 100;
