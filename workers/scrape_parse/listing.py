"""A listing page: product links, the next page, and the products shown on the listing itself."""

from urllib.parse import urldefrag

from bs4 import Tag

from workers.scrape_parse import dom
from workers.scrape_parse.model import Item, Listing, ListingSelectors
from workers.scrape_parse.prices import parse_price
from workers.scrape_parse.visible import price_text


def parse_listing(html: str, url: str, selectors: ListingSelectors,
                  default_currency: str | None = None) -> Listing:
    """Product links, the next page and (for shops without detail pages) the products on a listing page."""
    soup = dom.soup(html)
    base = dom.base_url(soup, url)
    links = [dom.absolute(base, _href(el)) for el in _select(soup, selectors.product_links)]
    next_page = dom.absolute(base, _href(dom.pick(soup, selectors.next_page)))
    items = [_listing_item(el, selectors, base, url, default_currency) for el in _select(soup, selectors.item)]
    return Listing(list(dict.fromkeys(link for link in links if link)), next_page, [i for i in items if i])


def _select(root: Tag, selector: str | None) -> list[Tag]:
    return root.select(selector) if selector else []


def _href(element: Tag | None) -> str | None:
    # A selector may point at the <a> itself or at its wrapper ("li.next").
    if element is not None and not element.has_attr("href"):
        element = element.find(href=True)
    return element.get("href") if element is not None else None


def _listing_name(element: Tag | None) -> str:
    # Listings shorten long names ("A Light in the ...") and keep the full one in the link's title.
    text = dom.text(element)
    title = element.get("title", "").strip() if element is not None else ""
    return title if title and (not text or text.endswith(("...", "…"))) else text


def _listing_item(element: Tag, sel: ListingSelectors, base: str, url: str,
                  default_currency: str | None) -> Item | None:
    name = _listing_name(dom.pick(element, sel.item_name))
    if not name:
        return None
    found = parse_price(price_text(dom.pick(element, sel.item_price)), default_currency)
    link = dom.absolute(base, _href(dom.pick(element, sel.item_link)))
    return Item(url=link or urldefrag(url).url, name=dom.clean(name), price=found[0] if found else None,
                currency=found[1] if found else None,
                image_url=dom.absolute(base, dom.img_src(dom.pick(element, sel.item_image))))

