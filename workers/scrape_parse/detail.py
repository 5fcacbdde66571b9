"""A product detail page: each field from the most reliable source that has it."""

from urllib.parse import urldefrag

from bs4 import BeautifulSoup

from workers.scrape_parse import dom
from workers.scrape_parse.availability import availability_fields
from workers.scrape_parse.model import DetailSelectors, Item
from workers.scrape_parse.prices import currency_near, parse_price, price_fields
from workers.scrape_parse.structured import from_json_ld, from_microdata, from_opengraph
from workers.scrape_parse.visible import from_visible, price_text


_FIELDS = ("name", "price", "currency", "in_stock", "stock", "sku", "image", "description")


def parse_detail(html: str, url: str, selectors: DetailSelectors | None = None,
                 default_currency: str | None = None) -> Item | None:
    """The product on a detail page, or None if no product name is found."""
    soup = dom.soup(html)
    base = dom.base_url(soup, url)
    sources = [_from_selectors(soup, selectors)] if selectors else []
    # Cheapest first; the costly visible-page pass runs only if something is still missing
    # (bench_scrape: it was ~35% of the parse time of pages whose selectors had found everything).
    for extract in (from_json_ld, from_microdata, from_opengraph, from_visible):
        if all(_merge(sources).get(f) is not None for f in ("name", "price", "currency", "in_stock")):
            break
        sources.append(extract(soup))
    fields = _merge(sources)
    if not fields.get("name"):
        return None
    return _item(fields, _canonical_url(soup, base, url), base, default_currency)


def _canonical_url(soup: BeautifulSoup, base: str, url: str) -> str:
    link = soup.select_one('link[rel~="canonical"][href]')
    return dom.absolute(base, link["href"] if link else None) or urldefrag(url).url


def _merge(sources: list[dict]) -> dict:
    """Each field from the first source that has it; a currency only from a source that also gave a price,
    so a lone priceCurrency can not end up paired with another source's amount."""
    merged = {}
    for source in sources:
        for field in _FIELDS:
            if merged.get(field) is None and source.get(field) not in (None, ""):
                if field != "currency" or source.get("price") is not None:
                    merged[field] = source[field]
    return merged


def _item(fields: dict, url: str, base: str, default_currency: str | None) -> Item:
    price, stock, in_stock = fields.get("price"), fields.get("stock"), fields.get("in_stock")
    if in_stock is None and stock is not None:
        in_stock = stock > 0
    return Item(
        url=url, name=dom.clean(fields["name"]), price=price,
        currency=fields.get("currency") or (default_currency if price is not None else None),
        in_stock=in_stock, stock=stock, sku=dom.clean(fields.get("sku")) or None,
        image_url=dom.absolute(base, fields.get("image")), description=dom.clean(fields.get("description")),
    )


def _from_selectors(soup: BeautifulSoup, sel: DetailSelectors) -> dict:
    fields = {
        "name": dom.text(dom.pick(soup, sel.name)),
        "sku": dom.text(dom.pick(soup, sel.sku)),
        "image": dom.img_src(dom.pick(soup, sel.image)),
        "description": dom.text(dom.pick(soup, sel.description)),
        **price_fields(parse_price(price_text(dom.pick(soup, sel.price)))),
    }
    if sel.availability and (element := dom.pick(soup, sel.availability)) is not None:
        fields |= availability_fields(dom.text(element))
    return _with_currency_element(fields, dom.text(dom.pick(soup, sel.currency)))


def _with_currency_element(fields: dict, text: str) -> dict:
    """A separate currency element wins over a symbol in the price text."""
    found = currency_near(text, 0, len(text)) if text else None
    if found is None or fields.get("price") is None:
        return fields
    code, factor = found
    # A Toman element scales an amount whose own text named no currency (one that did is already in IRR).
    scale = factor if fields.get("currency") is None else 1
    return fields | {"price": fields["price"] * scale, "currency": code}

