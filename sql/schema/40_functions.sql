-- Trigger functions (the triggers themselves are created after the bulk load, in finish/).
-- Tables are schema-qualified: the triggers fire whatever the learner's search_path is.

-- As in the seed.
CREATE OR REPLACE FUNCTION update_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$;

-- Fixed: the seed casts current_setting('app.current_user_id', true) straight to uuid, which
-- fails once the setting exists but is empty (e.g. after RESET or SET LOCAL in an earlier
-- transaction): '' is not a valid uuid. NULLIF maps it to NULL. to_jsonb instead of
-- row_to_json (jsonb column), and an AFTER trigger whose return value is ignored, so DELETE works.
CREATE OR REPLACE FUNCTION audit_trigger_function() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation, user_id, old_data, new_data, query)
    VALUES (
        TG_TABLE_NAME,
        TG_OP,
        NULLIF(current_setting('app.current_user_id', true), '')::uuid,
        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END,
        current_query()
    );
    RETURN NULL;
END;
$$;

-- Fixed: the seed reads the free stock, then updates it in a second statement (check-then-act).
-- Two concurrent orders both pass the check; the second's UPDATE waits for the first's row lock
-- and then adds its quantity anyway: only the valid_stock CHECK stops the oversell, with a
-- confusing constraint error (without that CHECK the stock would be oversold). Also, for an
-- unknown product the seed's comparison is NULL, so it silently reserves nothing.
-- One guarded UPDATE checks and reserves atomically: the row lock serialises concurrent
-- reservations, and a waiting UPDATE re-evaluates its WHERE clause on the committed row.
-- The seed inserts items without product_created_at (the second half of the foreign key to the
-- partitioned products): when it is missing it is taken from the product, and so are a missing
-- unit_price (the current price) and product_snapshot (sku, name, price at the time of the order).
CREATE OR REPLACE FUNCTION check_stock_availability() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    matches integer;
BEGIN
    IF NEW.product_created_at IS NULL OR NEW.unit_price IS NULL OR NEW.product_snapshot IS NULL THEN
        SELECT count(*) OVER (), p.created_at,
               coalesce(NEW.unit_price, p.price),
               coalesce(NEW.product_snapshot, jsonb_build_object('sku', p.sku, 'name', p.name, 'price', p.price))
          INTO matches, NEW.product_created_at, NEW.unit_price, NEW.product_snapshot
          FROM public.products p
         WHERE p.id = NEW.product_id
           AND (NEW.product_created_at IS NULL OR p.created_at = NEW.product_created_at)
         LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'There is no product % to order', NEW.product_id
                USING ERRCODE = 'foreign_key_violation';
        ELSIF matches > 1 THEN
            RAISE EXCEPTION 'Product id % exists with several creation times', NEW.product_id
                USING ERRCODE = 'foreign_key_violation',
                      HINT = 'Give product_created_at too: (product_id, product_created_at) is the product''s key.';
        END IF;
    END IF;
    UPDATE public.products
       SET reserved_quantity = reserved_quantity + NEW.quantity
     WHERE id = NEW.product_id
       AND created_at = NEW.product_created_at      -- the partition key: prunes to one partition
       AND stock_quantity - reserved_quantity >= NEW.quantity;
    IF NOT FOUND THEN
        IF EXISTS (SELECT FROM public.products
                    WHERE id = NEW.product_id AND created_at = NEW.product_created_at) THEN
            RAISE EXCEPTION 'Insufficient stock for product %', NEW.product_id
                USING ERRCODE = 'check_violation';
        END IF;
        -- No such product: the row goes on, and the foreign key to products rejects it.
    END IF;
    RETURN NEW;
END;
$$;
