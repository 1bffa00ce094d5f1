-- expect: syntax error at or near "TO"
-- The seed's "check constraint" step: PL/pgSQL has no ROLLBACK TO SAVEPOINT (only COMMIT/ROLLBACK in procedures), so the block does not even parse. Use an EXCEPTION clause (an implicit savepoint) or do the check client-side.
DO $$
BEGIN
    IF (SELECT stock_quantity FROM products LIMIT 1) < 1000000 THEN
        ROLLBACK TO SAVEPOINT before_items;
        RAISE EXCEPTION 'Insufficient stock';
    END IF;
END $$;
