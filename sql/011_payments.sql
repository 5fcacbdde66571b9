-- Payments through a provider (events/payments.py, events/commands/payments.py).

-- Read table: each order's payment sessions, as its order.payment_* events fold (none for the orders
-- before this, which is what a rebuild gives them too).
ALTER TABLE orders ADD COLUMN payments jsonb NOT NULL DEFAULT '[]';
ALTER TABLE orders ALTER COLUMN payments DROP DEFAULT;

-- Write side: each provider event is applied once. The key is claimed in the transaction that appends
-- what the event does, so of twenty concurrent deliveries one applies and the others find it claimed.
CREATE TABLE payment_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    order_id    uuid        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Write side: the signatures of the webhooks received within the signature tolerance. A provider signs
-- every delivery anew, so a signature seen twice is a captured request replayed (400); older ones are
-- stale anyway and are deleted as new webhooks come.
CREATE TABLE webhook_signatures (
    signature text        PRIMARY KEY,
    seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_signatures_seen_at ON webhook_signatures (seen_at);

-- Write side: which order a provider's payment paid (or was refused by), for its refunds, which may name
-- only the payment.
CREATE TABLE payment_orders (
    provider   text NOT NULL,
    payment_id text NOT NULL,
    order_id   uuid NOT NULL,
    PRIMARY KEY (provider, payment_id)
);

-- The built-in test provider's own sessions: the state a real provider keeps on its side.
CREATE TABLE test_payment_sessions (
    session_id text          PRIMARY KEY,
    order_id   uuid          NOT NULL,
    amount     bigint        NOT NULL,  -- in the currency's minor unit, as providers count
    currency   char(3)       NOT NULL,
    status     text          NOT NULL,  -- open, paid, failed, refunded
    payment_id text,
    created_at timestamptz   NOT NULL DEFAULT now()
);
