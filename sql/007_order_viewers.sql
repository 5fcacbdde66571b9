-- Who may see an order, as the rule in events/orders.py names them: 'buyer:<id>' and 'seller:<id>' of
-- each line. A listing asks `viewers && <the caller's keys>`, the same question `orders.visible` asks.
ALTER TABLE orders ADD COLUMN viewers text[];
UPDATE orders SET viewers = ARRAY['buyer:' || buyer_id]
    || ARRAY(SELECT v FROM (SELECT DISTINCT 'seller:' || s AS v FROM unnest(seller_ids) AS s) AS d
             ORDER BY v COLLATE "C");
ALTER TABLE orders ALTER COLUMN viewers SET NOT NULL;
DROP INDEX orders_sellers;
ALTER TABLE orders DROP COLUMN seller_ids;
CREATE INDEX orders_viewers ON orders USING gin (viewers);
