-- Multi-column statistics (seed): user_id and status are correlated in orders.
CREATE STATISTICS IF NOT EXISTS stat_orders_user_status ON user_id, status FROM orders;
