-- The seed's triggers at work (their corrected definitions are in sql/schema and sql/finish).

-- name: updated_at_trigger (dml)
UPDATE users SET tags = '{example}' WHERE id = (SELECT id FROM users ORDER BY username LIMIT 1)
RETURNING updated_at > created_at AS updated_at_bumped;

-- name: audit_trigger (dml)
WITH changed AS (
    UPDATE orders SET metadata = metadata || '{"note": "example"}'
    WHERE id = (SELECT id FROM orders ORDER BY order_number LIMIT 1)
    RETURNING id
)
SELECT count(*) AS changed FROM changed;

-- name: stock_reservation (dml)
INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot)
SELECT (SELECT id FROM orders WHERE status = 'pending' ORDER BY order_number LIMIT 1), p.id, p.created_at, 1, p.price,
       jsonb_build_object('sku', p.sku, 'name', p.name, 'price', p.price)
FROM products p WHERE p.stock_quantity - p.reserved_quantity > 0 ORDER BY p.sku LIMIT 1
RETURNING quantity;
