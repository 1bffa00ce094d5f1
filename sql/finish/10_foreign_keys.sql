-- Foreign keys, added after the bulk load: one validating scan per key instead of a check per row.
-- Each is created only if missing, so the file can be applied twice. None is left NOT VALID.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT * FROM (VALUES
            ('categories',  'categories_parent_id_fkey',  'FOREIGN KEY (parent_id) REFERENCES categories (id) ON DELETE RESTRICT'),
            ('products',    'products_category_id_fkey',  'FOREIGN KEY (category_id) REFERENCES categories (id) ON DELETE RESTRICT'),
            ('inventory',   'inventory_product_fkey',     'FOREIGN KEY (product_id, product_created_at) REFERENCES products (id, created_at) ON DELETE CASCADE'),
            ('orders',      'orders_user_id_fkey',        'FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE RESTRICT'),
            ('order_items', 'order_items_order_id_fkey',  'FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE'),
            ('order_items', 'order_items_product_fkey',   'FOREIGN KEY (product_id, product_created_at) REFERENCES products (id, created_at) ON DELETE RESTRICT'),
            ('user_events', 'user_events_user_id_fkey',   'FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE')
        ) AS t(table_name, constraint_name, definition)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = fk.constraint_name) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', fk.table_name, fk.constraint_name, fk.definition);
        END IF;
    END LOOP;
END
$$;
