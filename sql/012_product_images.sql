-- Product images (events product.image_added / product.image_removed): the write side decides from
-- them (one picture once, at most 20) and the catalog lists them. Products before this have none,
-- which is what a rebuild gives them too.
ALTER TABLE product_state ADD COLUMN images jsonb NOT NULL DEFAULT '[]';
ALTER TABLE product_state ALTER COLUMN images DROP DEFAULT;
ALTER TABLE products ADD COLUMN images jsonb NOT NULL DEFAULT '[]';
ALTER TABLE products ALTER COLUMN images DROP DEFAULT;
