-- The seed's "Indexing Strategies": one query per index, with the plan that shows it used.
-- The CREATE INDEX statements themselves are in sql/finish/20_indexes.sql (built after the load).
-- Changes from the seed:
--   * EXTRACT(YEAR FROM created_at) on a timestamptz cannot be indexed (it depends on the
--     session's TimeZone, so it is not IMMUTABLE); the index is on created_at AT TIME ZONE 'UTC',
--     and a query must repeat exactly that expression to use it.
--   * On the partitioned products table an index is created on every partition: the plan names
--     the partitions' indexes (products_2024_q1_sku_name_price_stock_quantity_idx, …).
-- EXPLAIN (COSTS OFF) prints the plan's shape without numbers that change from run to run.
-- A "-- plan:" line names what the plan must contain (tests/test_examples.py checks it).

-- name: email_case_insensitive
-- plan: idx_users_email_lower
-- B-tree on an expression: the query must use the same expression, lower(email).
EXPLAIN (COSTS OFF)
SELECT username FROM users WHERE lower(email) = lower('Aisha.Adams3880@Mail.Example');

-- name: newest_users
-- plan: idx_users_created_at
-- A DESC index read from the start gives the newest rows first: no sort, stops after 10.
EXPLAIN (COSTS OFF)
SELECT username, created_at FROM users ORDER BY created_at DESC LIMIT 10;

-- name: active_users_since
-- plan: idx_users_active
-- Partial index: only live users are in it, and the query's WHERE implies its predicate.
EXPLAIN (COSTS OFF)
SELECT username FROM users
WHERE deleted_at IS NULL AND created_at >= '2025-06-01'
ORDER BY created_at;

-- name: profile_containment
-- plan: idx_users_profile_gin
-- GIN (jsonb_ops) serves @>, ?, ?| and ?& on the whole document.
EXPLAIN (COSTS OFF)
SELECT username FROM users WHERE profile @> '{"address": {"city": "Boston"}, "verified": true}';

-- name: tags_contain
-- plan: idx_users_tags_gin
-- GIN on an array: @> (contains), && (overlaps).
EXPLAIN (COSTS OFF)
SELECT username FROM users WHERE tags @> ARRAY['camping', 'photography'];

-- name: user_full_text
-- plan: idx_users_search
-- GIN on the generated tsvector column.
EXPLAIN (COSTS OFF)
SELECT username FROM users WHERE search_vector @@ to_tsquery('english', 'camping & trip');

-- name: orders_of_a_user
-- plan: idx_orders_user_created
-- (user_id, created_at DESC): equality on the first column, order by the second: no sort.
EXPLAIN (COSTS OFF)
SELECT order_number, created_at FROM orders
WHERE user_id = '15b02846-9985-4011-875c-1af5e6ebe56d'
ORDER BY created_at DESC
LIMIT 5;

-- name: open_orders
-- plan: idx_orders_status_created
-- Partial index over the few open orders: tiny, and it answers the work-queue query.
EXPLAIN (COSTS OFF)
SELECT order_number, created_at FROM orders
WHERE status = 'pending'
ORDER BY created_at DESC;

-- name: orders_of_a_month
-- plan: idx_orders_year_month
-- The corrected expression index: the query repeats created_at AT TIME ZONE 'UTC'.
EXPLAIN (COSTS OFF)
SELECT count(*) FROM orders
WHERE EXTRACT(YEAR FROM (created_at AT TIME ZONE 'UTC')) = 2024
  AND EXTRACT(MONTH FROM (created_at AT TIME ZONE 'UTC')) = 12;

-- name: orders_of_a_month_by_range
-- plan: idx_orders_created_at
-- Usually better than any expression index: a plain range on the column (sargable).
EXPLAIN (COSTS OFF)
SELECT count(*) FROM orders
WHERE created_at >= '2024-12-01 00:00+00' AND created_at < '2025-01-01 00:00+00';

-- name: overlapping_events
-- plan: idx_events_duration
-- GiST on a range expression: && finds every event overlapping a day.
EXPLAIN (COSTS OFF)
SELECT name, start_time, end_time FROM events
WHERE tstzrange(start_time, end_time) && tstzrange('2025-06-01 00:00+00', '2025-06-02 00:00+00');

-- name: overlapping_events_rows
SELECT name, start_time, end_time FROM events
WHERE tstzrange(start_time, end_time) && tstzrange('2025-06-01 00:00+00', '2025-06-02 00:00+00')
ORDER BY start_time, id;

-- name: product_full_text
-- plan: to_tsvector_idx
-- GIN on an expression, one per partition (named after the expression on each partition).
EXPLAIN (COSTS OFF)
SELECT sku, name FROM products
WHERE to_tsvector('english', name || ' ' || coalesce(description, '')) @@ to_tsquery('english', 'waterproof & tent');

-- name: product_full_text_rows
SELECT sku, name FROM products
WHERE to_tsvector('english', name || ' ' || coalesce(description, '')) @@ to_tsquery('english', 'waterproof')
ORDER BY sku;

-- name: logs_of_a_day
-- plan: idx_logs_created_brin
-- BRIN stores min/max per 128 pages; logs are appended in time order, so one day's rows sit
-- in a few block ranges. The index is a few dozen kB against the table's tens of MB.
EXPLAIN (COSTS OFF)
SELECT level, count(*) FROM logs
WHERE created_at >= '2025-06-30 00:00+00' AND created_at < '2025-07-01 00:00+00'
GROUP BY level;

-- name: covering_index
-- plan: Index Only Scan
-- (sku) INCLUDE (name, price, stock_quantity): the answer comes from the index alone.
EXPLAIN (COSTS OFF)
SELECT name, price, stock_quantity FROM products WHERE sku = 'BFM-000020';

-- name: extended_statistics
-- CREATE STATISTICS stat_orders_user_status: what ANALYZE learned about the column pair.
SELECT statistics_name, attnames, n_distinct IS NOT NULL AS has_ndistinct,
       dependencies IS NOT NULL AS has_dependencies, most_common_vals IS NOT NULL AS has_mcv
FROM pg_stats_ext
WHERE statistics_name = 'stat_orders_user_status';

-- name: analyze_orders (several statements)
-- The seed's "ANALYZE orders": refresh the planner's statistics (autovacuum does it too, after
-- enough changes; after a bulk load, run it yourself). pg_stats shows what the planner knows.
ANALYZE orders;

SELECT attname, n_distinct, round(correlation::numeric, 2) AS correlation
FROM pg_stats
WHERE tablename = 'orders' AND attname IN ('status', 'created_at', 'user_id')
ORDER BY attname;
