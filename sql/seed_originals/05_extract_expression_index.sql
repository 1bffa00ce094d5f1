-- expect: functions in index expression must be marked IMMUTABLE
CREATE INDEX seed_idx_orders_year_month ON orders(
    EXTRACT(YEAR FROM created_at),
    EXTRACT(MONTH FROM created_at)
);
