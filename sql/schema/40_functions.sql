-- Trigger functions (the triggers themselves are created after the bulk load, in finish/).

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
    INSERT INTO audit_log (table_name, operation, user_id, old_data, new_data, query)
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
CREATE OR REPLACE FUNCTION check_stock_availability() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE products
       SET reserved_quantity = reserved_quantity + NEW.quantity
     WHERE id = NEW.product_id
       AND created_at = NEW.product_created_at      -- the partition key: prunes to one partition
       AND stock_quantity - reserved_quantity >= NEW.quantity;
    IF NOT FOUND THEN
        IF EXISTS (SELECT FROM products
                    WHERE id = NEW.product_id AND created_at = NEW.product_created_at) THEN
            RAISE EXCEPTION 'Insufficient stock for product %', NEW.product_id
                USING ERRCODE = 'check_violation';
        END IF;
        -- No such product: the row goes on, and the foreign key to products rejects it.
    END IF;
    RETURN NEW;
END;
$$;
