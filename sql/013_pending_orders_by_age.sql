-- The expiry worker looks for pending orders by when they were placed (not by their last change: a
-- payment session opened or failed must not push the payment deadline back).
CREATE INDEX orders_pending_by_age ON orders (created_at) WHERE status = 'pending';
