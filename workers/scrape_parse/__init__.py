"""Pure parsing for the shop scraper: HTML in, `Item`s and `Listing`s out, no I/O.

Detail pages are read from the most reliable source first (schema.org JSON-LD, then microdata, then
OpenGraph, then what the page shows) because shops put their real data in the structured blocks and
their themes change the visible markup often. Prices are `Decimal` from the text all the way, never float.

This module is the package's public face; the rest is split by concern: `prices` and `availability` read
values from text, `dom` holds the markup helpers, `structured` reads JSON-LD, microdata and OpenGraph,
`visible` guesses from what the page shows, `detail` and `listing` put a page together, `auto` tells
product pages from listings and follows a listing without selectors.
"""

from workers.scrape_parse.auto import auto_listing, classify, same_host_links
from workers.scrape_parse.availability import parse_availability
from workers.scrape_parse.detail import parse_detail
from workers.scrape_parse.listing import parse_listing
from workers.scrape_parse.model import DetailSelectors, Item, Listing, ListingSelectors
from workers.scrape_parse.prices import parse_price

__all__ = ["Item", "DetailSelectors", "ListingSelectors", "Listing",
           "parse_price", "parse_availability", "parse_detail", "parse_listing", "classify", "auto_listing",
           "same_host_links"]
