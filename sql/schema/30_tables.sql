-- The shop's tables: the seed's model, corrected for PostgreSQL 16 (see sql/README.md).
-- Only primary keys, UNIQUE, CHECK and NOT NULL here; foreign keys, secondary indexes and
-- triggers are added after the bulk load (sql/finish/), which is much faster.

-- Money is numeric(12,2) throughout, never the money type (see sql/README.md).

CREATE TABLE IF NOT EXISTS categories (
    id        integer PRIMARY KEY,
    parent_id integer,                      -- NULL for a root; FK added in finish/
    name      text NOT NULL,
    slug      text NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS users (
    id            uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email         email NOT NULL UNIQUE,
    username      varchar(50) NOT NULL UNIQUE,
    password_hash varchar(255) NOT NULL,
    role          user_role NOT NULL DEFAULT 'user',
    profile       jsonb NOT NULL DEFAULT '{}',          -- flexible profile data
    tags          text[] DEFAULT '{}',                  -- interests
    created_at    timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_login_at timestamptz,
    deleted_at    timestamptz,                          -- soft delete
    search_vector tsvector GENERATED ALWAYS AS (
        to_tsvector('english',
            coalesce(username, '') || ' ' ||
            coalesce(email, '') || ' ' ||
            coalesce(profile->>'bio', ''))
    ) STORED,
    CONSTRAINT username_length CHECK (char_length(username) >= 3),
    CONSTRAINT valid_profile CHECK (jsonb_typeof(profile) = 'object')
);

-- Partitioned by creation quarter, as in the seed. A partitioned table's PRIMARY KEY and
-- UNIQUE constraints must include the partition key, hence (id, created_at) and (sku, created_at).
CREATE TABLE IF NOT EXISTS products (
    id                uuid NOT NULL DEFAULT uuid_generate_v4(),
    sku               varchar(50) NOT NULL,
    name              varchar(200) NOT NULL,
    description       text,
    attributes        jsonb NOT NULL DEFAULT '{}',
    price             positive_decimal NOT NULL,
    cost              numeric(12, 2),
    stock_quantity    integer NOT NULL DEFAULT 0,
    reserved_quantity integer NOT NULL DEFAULT 0,
    categories        text[] NOT NULL DEFAULT '{}',     -- category path names, as in the seed
    category_id       integer NOT NULL,                 -- leaf of the categories tree
    created_at        timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT products_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT products_sku_created_at_key UNIQUE (sku, created_at),
    CONSTRAINT positive_price CHECK (price > 0),
    CONSTRAINT valid_stock CHECK (stock_quantity >= reserved_quantity),
    CONSTRAINT valid_attributes CHECK (jsonb_typeof(attributes) = 'object')
) PARTITION BY RANGE (created_at);

CREATE TABLE IF NOT EXISTS products_2024_q1 PARTITION OF products FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2024-04-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_2024_q2 PARTITION OF products FOR VALUES FROM ('2024-04-01 00:00+00') TO ('2024-07-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_2024_q3 PARTITION OF products FOR VALUES FROM ('2024-07-01 00:00+00') TO ('2024-10-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_2024_q4 PARTITION OF products FOR VALUES FROM ('2024-10-01 00:00+00') TO ('2025-01-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_2025_q1 PARTITION OF products FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2025-04-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_2025_q2 PARTITION OF products FOR VALUES FROM ('2025-04-01 00:00+00') TO ('2025-07-01 00:00+00');
CREATE TABLE IF NOT EXISTS products_default PARTITION OF products DEFAULT;

-- Stock per product with a version column for optimistic locking (the seed's "Lock Contention").
CREATE TABLE IF NOT EXISTS inventory (
    product_id         uuid PRIMARY KEY,
    product_created_at timestamptz NOT NULL,            -- with product_id: the FK to products
    quantity           integer NOT NULL CHECK (quantity >= 0),
    version            integer NOT NULL DEFAULT 1,
    updated_at         timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS orders (
    id               uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    order_number     varchar(20) NOT NULL UNIQUE,
    user_id          uuid NOT NULL,
    shipping_address address NOT NULL,
    billing_address  address NOT NULL,
    status           order_status NOT NULL DEFAULT 'pending',
    subtotal         numeric(12, 2) NOT NULL,
    tax_amount       numeric(12, 2) NOT NULL DEFAULT 0,
    shipping_amount  numeric(12, 2) NOT NULL DEFAULT 0,
    -- numeric + numeric is immutable, so this generated column works (the seed's money casts did not).
    total_amount     numeric(12, 2) GENERATED ALWAYS AS (subtotal + tax_amount + shipping_amount) STORED,
    metadata         jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at       timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    shipped_at       timestamptz,
    delivered_at     timestamptz,
    CONSTRAINT valid_total CHECK (total_amount >= 0),
    CONSTRAINT valid_status_dates CHECK (
        (status <> 'shipped' OR shipped_at IS NOT NULL) AND
        (status <> 'delivered' OR delivered_at IS NOT NULL)
    ),
    CONSTRAINT ordered_dates CHECK (shipped_at >= created_at AND delivered_at >= shipped_at)
);

CREATE TABLE IF NOT EXISTS order_items (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    order_id           uuid NOT NULL,
    product_id         uuid NOT NULL,
    product_created_at timestamptz NOT NULL,            -- with product_id: the FK to products
    quantity           integer NOT NULL,
    unit_price         numeric(12, 2) NOT NULL,
    total_price        numeric(12, 2) GENERATED ALWAYS AS (quantity * unit_price) STORED,
    product_snapshot   jsonb NOT NULL,                  -- the product as it was when ordered
    created_at         timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT positive_quantity CHECK (quantity > 0),
    CONSTRAINT positive_unit_price CHECK (unit_price > 0)
);

-- Monthly partitions; the primary key must include the partition key.
CREATE TABLE IF NOT EXISTS audit_log (
    id         bigserial,
    table_name varchar(50) NOT NULL,
    operation  varchar(10) NOT NULL,
    user_id    uuid,
    changed_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    old_data   jsonb,
    new_data   jsonb,
    query      text,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id, changed_at),
    CONSTRAINT audit_log_operation_check CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE'))
) PARTITION BY RANGE (changed_at);

DO $$
DECLARE
    month date := DATE '2024-01-01';
BEGIN
    WHILE month < DATE '2025-08-01' LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
            'audit_log_' || to_char(month, 'YYYY_MM'),
            month::text || ' 00:00+00',
            (month + INTERVAL '1 month')::date::text || ' 00:00+00');
        month := month + INTERVAL '1 month';
    END LOOP;
END
$$;
CREATE TABLE IF NOT EXISTS audit_log_default PARTITION OF audit_log DEFAULT;

-- Clickstream for sessionisation (gaps and islands).
CREATE TABLE IF NOT EXISTS user_events (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_id    uuid NOT NULL,
    event_type text NOT NULL,
    created_at timestamptz NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}'
);

-- Things with a time span, for range types and GiST.
CREATE TABLE IF NOT EXISTS events (
    id         integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL,
    start_time timestamptz NOT NULL,
    end_time   timestamptz NOT NULL,
    CONSTRAINT events_valid_span CHECK (end_time > start_time)
);

-- Append-only application logs: a time series where BRIN shines.
CREATE TABLE IF NOT EXISTS logs (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    level       text NOT NULL CHECK (level IN ('DEBUG', 'INFO', 'WARN', 'ERROR')),
    service     text NOT NULL,
    message     text NOT NULL,
    duration_ms integer
);
