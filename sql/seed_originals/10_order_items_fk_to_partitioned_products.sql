-- expect: there is no unique constraint matching given keys for referenced table "products"
-- sqlstate: 42830
-- The seed's order_items references products (id). Once products is partitioned, its primary
-- key is (id, created_at), and a foreign key must reference a complete unique key.
-- (numeric instead of money here, so that the foreign key is the only error.)
CREATE TABLE seed_order_items (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    order_id UUID NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id UUID NOT NULL REFERENCES products(id) ON DELETE RESTRICT,
    quantity INTEGER NOT NULL,
    unit_price NUMERIC(12,2) NOT NULL
);
