-- The seed's triggers at work. Their corrected definitions: the functions in
-- sql/schema/40_functions.sql, the triggers in sql/finish/40_triggers.sql.
-- Changes from the seed (why: sql/README.md):
--   * audit: NULLIF(current_setting('app.current_user_id', true), '')::uuid, to_jsonb, an AFTER
--     trigger returning NULL; the seed only defined the function, here it audits users and orders;
--   * stock: one guarded UPDATE instead of check-then-update (no race);
--   * updated_at: also on products and orders, not only users.
-- A "-- error:" line names the SQLSTATE the example is meant to fail with.

-- name: updated_at_trigger (dml)
UPDATE users SET tags = '{example}' WHERE id = (SELECT id FROM users ORDER BY username LIMIT 1)
RETURNING updated_at = now() AS updated_at_is_now, updated_at > created_at AS updated_at_bumped;

-- name: audit_trigger (dml; several statements)
-- The application says who is acting, for this transaction only (SET LOCAL semantics).
SELECT set_config('app.current_user_id',
                  (SELECT id::text FROM users WHERE role = 'admin' ORDER BY username LIMIT 1), true);

UPDATE orders SET metadata = metadata || '{"note": "example"}'
WHERE id = (SELECT id FROM orders ORDER BY order_number LIMIT 1);

-- The newest audit row, and which keys the UPDATE changed (a diff of two jsonb documents).
SELECT a.table_name, a.operation, a.user_id IS NOT NULL AS has_actor,
       array(SELECT n.key FROM jsonb_each(a.new_data) n
             WHERE n.value IS DISTINCT FROM a.old_data -> n.key
             ORDER BY n.key) AS changed_keys
FROM audit_log a
ORDER BY a.id DESC
LIMIT 1;

-- name: audit_empty_setting (dml; several statements)
-- app.current_user_id set to '' (as RESET or the end of a SET LOCAL leaves it): the seed's
-- '::UUID' would fail here and with it every audited write; NULLIF turns it into NULL.
SELECT set_config('app.current_user_id', '', true);

UPDATE orders SET metadata = metadata || '{"note": "no actor"}'
WHERE id = (SELECT id FROM orders ORDER BY order_number LIMIT 1);

SELECT operation, user_id FROM audit_log ORDER BY id DESC LIMIT 1;

-- name: audit_delete (dml; several statements)
-- DELETE keeps the whole old row in old_data (the seed's RETURN NEW returns NULL for DELETE,
-- which in a BEFORE trigger would silently skip the delete). A user without orders: orders
-- restrict deleting their user; the user's events go with it (ON DELETE CASCADE).
DELETE FROM users
WHERE id = (SELECT u.id FROM users u
            WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)
            ORDER BY u.username LIMIT 1);

SELECT operation, old_data->>'username' AS username, new_data IS NULL AS no_new_data
FROM audit_log ORDER BY id DESC LIMIT 1;

-- name: stock_reservation (dml; several statements)
-- Inserting a line item reserves its quantity on the product.
INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot)
SELECT (SELECT id FROM orders WHERE status = 'pending' ORDER BY order_number LIMIT 1),
       p.id, p.created_at, 1, p.price,
       jsonb_build_object('sku', p.sku, 'name', p.name, 'price', p.price)
FROM products p
WHERE p.stock_quantity - p.reserved_quantity > 0
ORDER BY p.sku LIMIT 1;

SELECT p.sku, p.stock_quantity, p.reserved_quantity
FROM products p
JOIN order_items oi ON (oi.product_id, oi.product_created_at) = (p.id, p.created_at)
WHERE oi.order_id = (SELECT id FROM orders WHERE status = 'pending' ORDER BY order_number LIMIT 1)
ORDER BY p.sku;

-- name: stock_over_reservation (dml)
-- error: 23514
-- One more unit than is free: the trigger refuses (check_violation, "Insufficient stock").
INSERT INTO order_items (order_id, product_id, product_created_at, quantity, unit_price, product_snapshot)
SELECT (SELECT id FROM orders WHERE status = 'pending' ORDER BY order_number LIMIT 1),
       p.id, p.created_at, p.stock_quantity - p.reserved_quantity + 1, p.price, '{}'
FROM products p
ORDER BY p.sku LIMIT 1;
