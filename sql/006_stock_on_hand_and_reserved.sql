-- Stock has one owner per meaning (events/products.py): `on_hand` is what the seller or the scraped
-- site says exists, `reserved` what open orders hold. What can be ordered is their difference, never
-- below zero. A rebuild folds both from the events; existing rows keep what could be ordered.
ALTER TABLE product_state RENAME COLUMN stock TO on_hand;
ALTER TABLE product_state DROP CONSTRAINT product_state_stock_check;
ALTER TABLE product_state ADD COLUMN reserved integer NOT NULL DEFAULT 0;
ALTER TABLE product_state ALTER COLUMN reserved DROP DEFAULT;
ALTER TABLE product_state ADD CONSTRAINT product_state_stock_check CHECK (on_hand >= 0 AND reserved >= 0);

ALTER TABLE products RENAME COLUMN stock TO on_hand;
ALTER TABLE products ADD COLUMN reserved integer NOT NULL DEFAULT 0;
ALTER TABLE products ALTER COLUMN reserved DROP DEFAULT;
ALTER TABLE products ADD COLUMN stock integer GENERATED ALWAYS AS (greatest(on_hand - reserved, 0)) STORED;
