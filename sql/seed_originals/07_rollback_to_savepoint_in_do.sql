-- expect: syntax error at or near "TO"
-- sqlstate: 42601
-- The seed's "check constraint" step. PL/pgSQL has no ROLLBACK TO SAVEPOINT, so the block does
-- not even parse. (A plain ROLLBACK parses, but fails with "invalid transaction termination":
-- a DO block inside an explicit transaction cannot end it.) Use an EXCEPTION clause (an implicit
-- savepoint) in PL/pgSQL, or do the check and ROLLBACK TO SAVEPOINT from the client.
DO $$
BEGIN
    IF (SELECT stock_quantity FROM products LIMIT 1) < 1000000 THEN
        ROLLBACK TO SAVEPOINT before_items;
        RAISE EXCEPTION 'Insufficient stock';
    END IF;
END $$;
