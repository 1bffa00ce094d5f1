-- expect: functions in index expression must be marked IMMUTABLE
-- sqlstate: 42P17
-- The seed's expression index. EXTRACT on a timestamptz depends on the session's TimeZone
-- (the same instant is in another month in Tokyo), so it is STABLE, not IMMUTABLE.
CREATE INDEX seed_idx_orders_year_month ON orders(
    EXTRACT(YEAR FROM created_at),
    EXTRACT(MONTH FROM created_at)
);
