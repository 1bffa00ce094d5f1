-- expect: generation expression is not immutable
-- sqlstate: 42P17
-- The seed's generated total over money casts. money <-> numeric casts depend on lc_monetary,
-- so they are only STABLE, and a generated column's expression must be IMMUTABLE.
CREATE TABLE seed_orders (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    subtotal MONEY NOT NULL,
    tax_amount MONEY NOT NULL DEFAULT 0,
    shipping_amount MONEY NOT NULL DEFAULT 0,
    total_amount MONEY NOT NULL GENERATED ALWAYS AS
        ((subtotal::numeric + tax_amount::numeric + shipping_amount::numeric)::money) STORED
);
