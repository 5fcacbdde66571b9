-- A buyer's cart: plain mutable state, not events; the order it turns into is events.
CREATE TABLE cart_items (
    buyer_id   uuid        NOT NULL,
    product_id uuid        NOT NULL,
    quantity   integer     NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buyer_id, product_id)
);

-- Idempotency-Key of POST /orders and /cart/checkout, written in the order's own transaction: a
-- concurrent retry waits on this key until the first commits, then answers the same order.
CREATE TABLE idempotency_keys (
    buyer_id     uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    order_id     uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buyer_id, key)
);

-- Read tables: built only from order events by the orders projection.
CREATE TABLE orders (
    id                uuid PRIMARY KEY,
    buyer_id          uuid          NOT NULL,
    seller_ids        uuid[]        NOT NULL,
    status            text          NOT NULL,
    total             numeric(14,2) NOT NULL,
    currency          char(3)       NOT NULL,
    shipping_address  jsonb         NOT NULL,
    payment_reference text,
    refund            numeric(14,2),
    created_at        timestamptz   NOT NULL,
    updated_at        timestamptz   NOT NULL,
    version           integer       NOT NULL
);
CREATE INDEX orders_page ON orders (created_at DESC, id DESC);
CREATE INDEX orders_buyer ON orders (buyer_id, created_at DESC, id DESC);
CREATE INDEX orders_sellers ON orders USING gin (seller_ids);
CREATE INDEX orders_status ON orders (status, updated_at);

CREATE TABLE order_lines (
    order_id   uuid          NOT NULL REFERENCES orders ON DELETE CASCADE,
    line_no    integer       NOT NULL,
    product_id uuid          NOT NULL,
    seller_id  uuid,
    name       text          NOT NULL,
    quantity   integer       NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    line_total numeric(14,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
