-- expect: cannot insert a non-DEFAULT value into column "total_amount"
-- sqlstate: 428C9
-- The seed's savepoint example inserts an order giving only user_id and total_amount. Its
-- 'user-uuid' placeholder fails first (invalid input syntax for type uuid); with a real uuid
-- the statement still fails: total_amount is a generated column, it cannot be written.
-- (order_number, the addresses and subtotal are NOT NULL without a default, too.)
INSERT INTO orders (user_id, total_amount)
VALUES (uuid_generate_v4(), 100.00);
