-- expect: generation expression is not immutable
-- sqlstate: 42P17
-- The seed's order_items: the same money casts in total_price.
CREATE TABLE seed_order_items (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    quantity INTEGER NOT NULL,
    unit_price MONEY NOT NULL,
    total_price MONEY NOT NULL GENERATED ALWAYS AS
        ((quantity * unit_price::numeric)::money) STORED
);
