"""What parsing gives back, and the per-source CSS selectors that steer it."""

from decimal import Decimal

import msgspec


class Item(msgspec.Struct, kw_only=True):
    url: str                      # canonical URL of the product page (absolute, no fragment)
    name: str
    price: Decimal | None = None  # exact, never float
    currency: str | None = None   # ISO 4217 code, or None if unknown
    in_stock: bool | None = None
    stock: int | None = None      # a count when the page gives one ("In stock (22 available)")
    sku: str | None = None
    image_url: str | None = None  # absolute
    description: str = ""


class DetailSelectors(msgspec.Struct, kw_only=True):
    """CSS selectors for a detail page; any may be None (that field then comes from automatic extraction)."""

    name: str | None = None
    price: str | None = None
    currency: str | None = None      # element whose text holds the currency; a fixed code is `default_currency`
    availability: str | None = None  # element whose text says in stock / out of stock / "In stock (22 available)"
    sku: str | None = None
    image: str | None = None         # img element; its src (or data-src) is used
    description: str | None = None


class ListingSelectors(msgspec.Struct, kw_only=True):
    product_links: str | None = None  # a[href] elements pointing at detail pages
    next_page: str | None = None      # a[href] of the next listing page
    item: str | None = None           # one element per product, for shops without detail pages
    item_name: str | None = None      # inside `item`
    item_price: str | None = None
    item_image: str | None = None
    item_link: str | None = None


class Listing(msgspec.Struct):
    product_links: list[str]   # absolute, deduplicated, in page order
    next_page: str | None      # absolute
    items: list[Item]          # products found on the listing itself (with `item` selectors), else []
