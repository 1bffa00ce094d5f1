-- Secondary indexes: every kind the seed shows, built after the data is in.
-- (Foreign-key columns get indexes too: PostgreSQL does not create them automatically.)

-- users (seed)
CREATE INDEX IF NOT EXISTS idx_users_email_lower ON users (lower(email));
CREATE INDEX IF NOT EXISTS idx_users_created_at ON users (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_users_deleted_at ON users (deleted_at) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_users_profile_gin ON users USING gin (profile);
CREATE INDEX IF NOT EXISTS idx_users_tags_gin ON users USING gin (tags);
CREATE INDEX IF NOT EXISTS idx_users_search ON users USING gin (search_vector);
CREATE INDEX IF NOT EXISTS idx_users_active ON users (created_at) WHERE deleted_at IS NULL;

-- orders (seed): multi-column with DESC, partial, expression
CREATE INDEX IF NOT EXISTS idx_orders_user_created ON orders (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_orders_status_created ON orders (status, created_at DESC)
    WHERE status IN ('pending', 'processing');
-- The seed's EXTRACT(YEAR FROM created_at) on a timestamptz is not immutable (it depends on
-- the session's TimeZone), so PostgreSQL refuses it in an index. Fix the time zone explicitly.
CREATE INDEX IF NOT EXISTS idx_orders_year_month ON orders (
    EXTRACT(YEAR FROM (created_at AT TIME ZONE 'UTC')),
    EXTRACT(MONTH FROM (created_at AT TIME ZONE 'UTC'))
);
CREATE INDEX IF NOT EXISTS idx_orders_created_at ON orders (created_at);

-- order_items: foreign-key columns
CREATE INDEX IF NOT EXISTS idx_order_items_order_id ON order_items (order_id);
CREATE INDEX IF NOT EXISTS idx_order_items_product ON order_items (product_id, product_created_at);

-- products (seed): full text (GIN on an expression) and covering (INCLUDE)
CREATE INDEX IF NOT EXISTS idx_products_search ON products USING gin (
    to_tsvector('english', name || ' ' || coalesce(description, ''))
);
CREATE INDEX IF NOT EXISTS idx_products_sku_include ON products (sku)
    INCLUDE (name, price, stock_quantity);
CREATE INDEX IF NOT EXISTS idx_products_category_id ON products (category_id);

-- categories: the tree's parent pointer
CREATE INDEX IF NOT EXISTS idx_categories_parent_id ON categories (parent_id);

-- events (seed): GiST on a range expression
CREATE INDEX IF NOT EXISTS idx_events_duration ON events USING gist (tstzrange(start_time, end_time));

-- logs (seed): BRIN on an append-only time column
CREATE INDEX IF NOT EXISTS idx_logs_created_brin ON logs USING brin (created_at)
    WITH (pages_per_range = 128);

-- user_events: per-user time order, for sessionisation
CREATE INDEX IF NOT EXISTS idx_user_events_user_created ON user_events (user_id, created_at);
