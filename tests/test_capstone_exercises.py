"""The capstone's exercises (17) reject the broken versions they are about.

Mutation testing changes the SQL around a function, not a PL/pgSQL body, and a check in one session cannot watch
two sessions race: these are the plausible wrong answers, written out; a check must refuse each of them."""

from __future__ import annotations

import pytest

from labkit.exercises import checker
from labkit.servers.base import ConnectionInfo

WRONG = [
    pytest.param(
        "17.1",
        "CREATE FUNCTION take_stock(product uuid, wanted int) RETURNS boolean LANGUAGE plpgsql AS $$ DECLARE "
        "have int; BEGIN SELECT quantity INTO have FROM inventory WHERE product_id = product; IF have < "
        "wanted THEN RETURN false; END IF; UPDATE inventory SET quantity = have - wanted, version = version +"
        " 1 WHERE product_id = product; RETURN true; END $$",
        id="17.1: read, then write (plpgsql)",
    ),
    pytest.param(
        "17.1",
        "CREATE FUNCTION take_stock(product uuid, wanted int) RETURNS boolean LANGUAGE sql BEGIN ATOMIC WITH "
        "taken AS ( UPDATE inventory SET quantity = quantity - wanted WHERE product_id = product AND quantity"
        " >= wanted RETURNING product_id ) SELECT count(*) = 1 FROM taken; END",
        id="17.1: no version",
    ),
    pytest.param(
        "17.1",
        "CREATE FUNCTION take_stock(product uuid, wanted int) RETURNS boolean LANGUAGE sql BEGIN ATOMIC WITH "
        "taken AS ( UPDATE inventory SET quantity = quantity - wanted, version = version + 1 WHERE product_id"
        " = product AND quantity > wanted RETURNING product_id ) SELECT count(*) = 1 FROM taken; END",
        id="17.1: > not >=",
    ),
    pytest.param(
        "17.2",
        "CREATE TABLE payments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payment_key text NOT "
        "NULL, order_id uuid NOT NULL REFERENCES orders (id), amount numeric(12,2) NOT NULL CHECK (amount > "
        "0)); CREATE FUNCTION record_payment(key text, paid_order uuid, paid numeric) RETURNS bigint LANGUAGE"
        " plpgsql AS $$ DECLARE found_id bigint; BEGIN SELECT id INTO found_id FROM payments WHERE "
        "payment_key = key; IF found_id IS NULL THEN INSERT INTO payments (payment_key, order_id, amount) "
        "VALUES (key, paid_order, paid) RETURNING id INTO found_id; END IF; RETURN found_id; END $$",
        id="17.2: no unique, look first",
    ),
    pytest.param(
        "17.2",
        "CREATE TABLE payments ( id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payment_key text NOT "
        "NULL UNIQUE, order_id uuid NOT NULL REFERENCES orders (id), amount numeric(12, 2) NOT NULL CHECK "
        "(amount > 0) ); CREATE FUNCTION record_payment(key text, paid_order uuid, paid numeric) RETURNS "
        "bigint LANGUAGE sql BEGIN ATOMIC INSERT INTO payments (payment_key, order_id, amount) VALUES (key, "
        "paid_order, paid) ON CONFLICT (payment_key) DO UPDATE SET amount = EXCLUDED.amount RETURNING id; END",
        id="17.2: do update",
    ),
    pytest.param(
        "17.3",
        "CREATE FUNCTION restock(skus text[], amounts int[]) RETURNS void LANGUAGE plpgsql AS $$ BEGIN FOR i "
        "IN 1 .. cardinality(skus) LOOP UPDATE inventory SET quantity = quantity + amounts[i], version = "
        "version + 1 WHERE product_id = (SELECT id FROM products WHERE sku = skus[i]); END LOOP; END $$",
        id="17.3: the broken one",
    ),
    pytest.param(
        "17.3",
        "CREATE FUNCTION restock(skus text[], amounts int[]) RETURNS void LANGUAGE plpgsql AS $$ DECLARE "
        "delivery record; BEGIN FOR delivery IN SELECT p.id, sum(d.amount) AS amount FROM unnest(skus, "
        "amounts) AS d(sku, amount) JOIN products p ON p.sku = d.sku GROUP BY p.id ORDER BY min(d.sku) LOOP "
        "UPDATE inventory SET quantity = quantity + delivery.amount, version = version + 1 WHERE product_id ="
        " delivery.id; END LOOP; END $$",
        id="17.3: sorted by sku",
    ),
    pytest.param(
        "17.4",
        "CREATE FUNCTION buy(buyer uuid, skus text[], quantities int[]) RETURNS uuid LANGUAGE plpgsql AS $$ "
        "DECLARE new_order uuid; line record; BEGIN INSERT INTO orders (order_number, user_id, "
        "shipping_address, billing_address, subtotal) SELECT 'B-' || left(gen_random_uuid()::text, 13), "
        "buyer, a.address, a.address, (SELECT sum(p.price * l.quantity) FROM unnest(skus, quantities) AS "
        "l(sku, quantity) JOIN products p ON p.sku = l.sku) FROM (SELECT ROW('1 Checkout Lane', "
        "'Springfield', 'IL', '62701', 'US')::address AS address) AS a RETURNING id INTO new_order; FOR line "
        "IN SELECT p.id, l.quantity FROM unnest(skus, quantities) AS l(sku, quantity) JOIN products p ON "
        "p.sku = l.sku ORDER BY p.id LOOP BEGIN UPDATE inventory SET quantity = quantity - line.quantity "
        "WHERE product_id = line.id; INSERT INTO order_items (order_id, product_id, quantity) VALUES "
        "(new_order, line.id, line.quantity); EXCEPTION WHEN check_violation THEN RAISE NOTICE 'skipping %: "
        "not enough stock', line.id; END; END LOOP; RETURN new_order; END $$",
        id="17.4: the broken one",
    ),
    pytest.param(
        "17.4",
        "CREATE FUNCTION buy(buyer uuid, skus text[], quantities int[]) RETURNS uuid LANGUAGE plpgsql AS $$ "
        "DECLARE new_order uuid; line record; BEGIN INSERT INTO orders (order_number, user_id, "
        "shipping_address, billing_address, subtotal) SELECT 'B-' || left(gen_random_uuid()::text, 13), "
        "buyer, a.address, a.address, (SELECT sum(p.price * l.quantity) FROM unnest(skus, quantities) AS "
        "l(sku, quantity) JOIN products p ON p.sku = l.sku) FROM (SELECT ROW('1 Checkout Lane', "
        "'Springfield', 'IL', '62701', 'US')::address AS address) AS a RETURNING id INTO new_order; FOR line "
        "IN SELECT p.id, l.quantity FROM unnest(skus, quantities) AS l(sku, quantity) JOIN products p ON "
        "p.sku = l.sku ORDER BY p.id LOOP UPDATE inventory SET quantity = quantity - line.quantity WHERE "
        "product_id = line.id AND quantity >= line.quantity; IF NOT FOUND THEN RAISE EXCEPTION 'no stock'; "
        "END IF; INSERT INTO order_items (order_id, product_id, quantity) VALUES (new_order, line.id, "
        "line.quantity); END LOOP; RETURN new_order; END $$",
        id="17.4: own exception",
    ),
    pytest.param(
        "17.5",
        "CREATE FUNCTION cancel_order(number text) RETURNS boolean LANGUAGE sql BEGIN ATOMIC WITH cancelled "
        "AS ( UPDATE orders SET status = 'cancelled' WHERE order_number = number RETURNING id ), returned AS "
        "( UPDATE inventory i SET quantity = i.quantity + back.quantity, version = i.version + 1 FROM (SELECT"
        " oi.product_id, sum(oi.quantity) AS quantity FROM order_items oi JOIN cancelled c ON c.id = "
        "oi.order_id GROUP BY oi.product_id) AS back WHERE i.product_id = back.product_id RETURNING "
        "i.product_id ) SELECT count(*) = 1 FROM cancelled; END",
        id="17.5: no status guard",
    ),
    pytest.param(
        "17.5",
        "CREATE FUNCTION cancel_order(number text) RETURNS boolean LANGUAGE sql BEGIN ATOMIC WITH cancelled "
        "AS ( UPDATE orders SET status = 'cancelled' WHERE order_number = number AND status IN ('pending', "
        "'processing') RETURNING id ), returned AS ( UPDATE inventory i SET quantity = i.quantity + "
        "back.quantity, version = i.version + 1 FROM (SELECT oi.product_id, oi.quantity FROM order_items oi "
        "JOIN cancelled c ON c.id = oi.order_id ) AS back WHERE i.product_id = back.product_id RETURNING "
        "i.product_id ) SELECT count(*) = 1 FROM cancelled; END",
        id="17.5: no grouping",
    ),
    pytest.param(
        "17.5",
        "CREATE FUNCTION cancel_order(number text) RETURNS boolean LANGUAGE sql BEGIN ATOMIC WITH cancelled "
        "AS ( UPDATE orders SET status = 'cancelled' WHERE order_number = number AND status = 'pending' "
        "RETURNING id ), returned AS ( UPDATE inventory i SET quantity = i.quantity + back.quantity, version "
        "= i.version + 1 FROM (SELECT oi.product_id, sum(oi.quantity) AS quantity FROM order_items oi JOIN "
        "cancelled c ON c.id = oi.order_id GROUP BY oi.product_id) AS back WHERE i.product_id = "
        "back.product_id RETURNING i.product_id ) SELECT count(*) = 1 FROM cancelled; END",
        id="17.5: only pending",
    ),
    pytest.param(
        "17.6",
        "CREATE FUNCTION claim_pick(picker text) RETURNS text LANGUAGE sql BEGIN ATOMIC UPDATE orders SET "
        "status = 'processing', metadata = metadata || jsonb_build_object('picker', picker) WHERE id = "
        "(SELECT id FROM orders WHERE status = 'pending' ORDER BY created_at, order_number LIMIT 1 FOR "
        "UPDATE) RETURNING order_number; END",
        id="17.6: no skip locked",
    ),
    pytest.param(
        "17.6",
        "CREATE FUNCTION claim_pick(picker text) RETURNS text LANGUAGE sql BEGIN ATOMIC UPDATE orders SET "
        "status = 'processing', metadata = metadata || jsonb_build_object('picker', picker) WHERE id = "
        "(SELECT id FROM orders WHERE status = 'pending' LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING "
        "order_number; END",
        id="17.6: no order by",
    ),
    pytest.param(
        "17.6",
        "CREATE FUNCTION claim_pick(picker text) RETURNS text LANGUAGE sql BEGIN ATOMIC UPDATE orders SET "
        "status = 'processing', metadata = jsonb_build_object('picker', picker) WHERE id = (SELECT id FROM "
        "orders WHERE status = 'pending' ORDER BY created_at, order_number LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING order_number; END",
        id="17.6: metadata replaced",
    ),
]


@pytest.mark.parametrize(("exercise", "answer"), WRONG)
def test_capstone_exercises_reject_the_broken_versions(shop: ConnectionInfo, exercise: str, answer: str) -> None:
    with shop.connect("shop") as conn:
        assert not checker.evaluate(conn, exercise, answer, count_attempt=False).passed
