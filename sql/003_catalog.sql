-- Write side of the catalog: each product as its events fold, changed in the appending transaction
-- under a row lock. Commands decide from this row (no stream replay), the lock serialises writers of
-- one product (stock can never go below zero), and `version` is the stream's head.
CREATE TABLE product_state (
    product_id  uuid PRIMARY KEY,
    seller_id   uuid,
    name        text          NOT NULL,
    description text          NOT NULL,
    price       numeric(12,2) NOT NULL CHECK (price > 0),
    currency    char(3)       NOT NULL,
    stock       integer       NOT NULL CHECK (stock >= 0),
    sku         text,
    image_url   text,
    source      text          NOT NULL,
    active      boolean       NOT NULL,
    created_at  timestamptz   NOT NULL,
    updated_at  timestamptz   NOT NULL,
    version     integer       NOT NULL
);
-- One SKU per seller among live products (scraped products have no seller: see the scraper).
CREATE UNIQUE INDEX product_state_seller_sku ON product_state (seller_id, sku)
    WHERE sku IS NOT NULL AND active AND seller_id IS NOT NULL;

-- Read table: built only from product events by the catalog projection.
CREATE TABLE products (
    id          uuid PRIMARY KEY,
    seller_id   uuid,
    name        text          NOT NULL,
    description text          NOT NULL,
    price       numeric(12,2) NOT NULL,
    currency    char(3)       NOT NULL,
    stock       integer       NOT NULL,
    sku         text,
    image_url   text,
    source      text          NOT NULL,
    active      boolean       NOT NULL,
    created_at  timestamptz   NOT NULL,
    updated_at  timestamptz   NOT NULL,
    version     integer       NOT NULL,
    search      tsvector GENERATED ALWAYS AS
                (setweight(to_tsvector('simple', name), 'A') || to_tsvector('simple', description)) STORED
);
-- Listings only ever show live products: partial indexes, one per sort order.
CREATE INDEX products_newest ON products (created_at DESC, id DESC) WHERE active;
CREATE INDEX products_price ON products (price, id) WHERE active;
CREATE INDEX products_name ON products (name, id) WHERE active;
CREATE INDEX products_seller ON products (seller_id, created_at DESC, id DESC) WHERE active;
CREATE INDEX products_source ON products (source, created_at DESC, id DESC) WHERE active;
CREATE INDEX products_search ON products USING gin (search) WHERE active;
