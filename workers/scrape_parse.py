"""Pure parsing for the shop scraper: HTML in, `Item`s and `Listing`s out, no I/O.

Detail pages are read from the most reliable source first (schema.org JSON-LD, then microdata, then
OpenGraph, then what the page shows) because shops put their real data in the structured blocks and
their themes change the visible markup often. Prices are `Decimal` from the text all the way, never float.
"""

import html as html_lib
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urldefrag, urljoin

import msgspec
from bs4 import BeautifulSoup, NavigableString, Tag

__all__ = ["Item", "DetailSelectors", "ListingSelectors", "Listing",
           "parse_price", "parse_availability", "parse_detail", "parse_listing"]


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


# ---------------------------------------------------------------------------------------------- prices

# Persian and Arabic-Indic digits become ASCII so one number grammar serves all locales. The Arabic
# separators are unambiguous (٬ thousands, ٫ decimal), unlike "." and "," which depend on the locale.
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_THOUSANDS_ONLY = {" ", "\u00a0", "\u202f", "\u2009", "'", "’", "٬"}
_DECIMAL_ONLY = {"٫"}

# A number: digit groups joined by one separator each. A space joins only when a 3-digit group follows,
# so "USD 20 2 for 1" does not glue unrelated numbers together.
_NUMBER = re.compile(r"[0-9]+(?:(?:[.,'’٬٫]|[ \u00a0\u202f\u2009](?=[0-9]{3}(?![0-9])))[0-9]+)*")
_SEPARATOR = re.compile(r"[^0-9]")

# Currency marks -> (ISO code, factor). Toman is not ISO 4217: it is 10 Rial, so it becomes IRR x 10.
# Longer marks are tried first so "US$" is not read as "$" and "CN¥" not as "¥".
_SYMBOLS = {
    "US$": ("USD", 1), "C$": ("CAD", 1), "CA$": ("CAD", 1), "A$": ("AUD", 1), "AU$": ("AUD", 1),
    "NZ$": ("NZD", 1), "HK$": ("HKD", 1), "S$": ("SGD", 1), "R$": ("BRL", 1), "CN¥": ("CNY", 1),
    "$": ("USD", 1), "€": ("EUR", 1), "£": ("GBP", 1), "¥": ("JPY", 1), "₹": ("INR", 1), "₽": ("RUB", 1),
    "₺": ("TRY", 1), "₩": ("KRW", 1), "₪": ("ILS", 1), "₫": ("VND", 1), "฿": ("THB", 1), "₴": ("UAH", 1),
    "₦": ("NGN", 1), "₱": ("PHP", 1), "﷼": ("IRR", 1), "zł": ("PLN", 1), "Kč": ("CZK", 1), "Ft": ("HUF", 1),
    "lei": ("RON", 1), "Fr.": ("CHF", 1), "Rs": ("INR", 1),
    "تومان": ("IRR", 10), "ریال": ("IRR", 1), "ريال": ("IRR", 1),
}
# Codes shops actually print next to prices; a closed list so that words like "ALL" or "TOP" in
# running text are only read as currencies when they are ISO codes we expect.
_CODES = set("""AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR IQD IRR ISK JPY
    KRW KWD MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD THB TRY TWD UAH USD VND ZAR""".split())
# Non-ISO codes some shops still use in their data (IRT is the Toman, see above).
_CODE_ALIASES = {"IRT": ("IRR", 10), "RMB": ("CNY", 1)}
_LETTER = "A-Za-z\u0600-\u06FF"


def _mark_pattern(mark: str) -> str:
    # Marks made of letters ("zł", "Rs", "EUR", "تومان") must stand alone, so "Yours" holds no rupee.
    before = f"(?<![{_LETTER}])" if mark[0].isalpha() else ""
    after = f"(?![{_LETTER}])" if mark[-1].isalpha() else ""
    return before + re.escape(mark) + after


_CURRENCY = re.compile("|".join(_mark_pattern(m) for m in
                                sorted([*_SYMBOLS, *_CODES, *_CODE_ALIASES], key=len, reverse=True)))
_CENTS = Decimal("0.01")
_PLAIN_NUMBER = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")


def parse_price(text: str, default_currency: str | None = None) -> tuple[Decimal, str | None] | None:
    """The first amount in `text` and its currency (the mark nearest to it, else `default_currency`)."""
    text = (text or "").translate(_DIGITS)
    number = _NUMBER.search(text)
    if number is None:
        return None
    amount = _to_decimal(number.group())
    currency, factor = _currency_near(text, number.start(), number.end()) or (default_currency, 1)
    return amount * factor, currency


def _to_decimal(number: str) -> Decimal:
    decimal_mark = _decimal_mark(number)
    digits = "".join(ch if ch.isdigit() else "." if ch == decimal_mark else "" for ch in number)
    return _at_most_cents(Decimal(digits))


def _decimal_mark(number: str) -> str | None:
    """Which separator is the decimal point: the last one, if the way it is used allows no other reading."""
    marks = _SEPARATOR.findall(number)
    if not marks:
        return None
    last = marks[-1]
    if last in _DECIMAL_ONLY:
        return last
    if last in _THOUSANDS_ONLY or marks.count(last) > 1:
        return None  # "1'234", "1.234.567": repeated or space-like marks group thousands
    if len(set(marks)) > 1:
        return last  # "1.299,99", "1,23,456.00": the last, different mark is the decimal point
    whole, fraction = number.rsplit(last, 1)
    # A lone mark followed by exactly 3 digits groups thousands ("1,299"), unless the whole part is 0.
    return None if len(fraction) == 3 and whole.lstrip("0") else last


def _at_most_cents(amount: Decimal) -> Decimal:
    # Keep what the shop wrote ("12.5" stays 12.5); only a 3rd+ decimal place is rounded away.
    return amount.quantize(_CENTS, ROUND_HALF_UP) if amount.as_tuple().exponent < -2 else amount


def _currency_near(text: str, start: int, end: int) -> tuple[str, int] | None:
    """The currency mark closest to the number at text[start:end] (a range "€10 - €20" has two)."""
    marks = list(_CURRENCY.finditer(text))
    if not marks:
        return None
    nearest = min(marks, key=lambda m: max(start - m.end(), m.start() - end, 0))
    return _currency_of(nearest.group())


def _currency_of(mark: str) -> tuple[str, int] | None:
    mark = mark.strip()
    if mark in _SYMBOLS:
        return _SYMBOLS[mark]
    code = mark.upper()
    return _CODE_ALIASES.get(code) or ((code, 1) if re.fullmatch("[A-Z]{3}", code) else None)


def _machine_price(value, currency) -> tuple[Decimal, str | None] | None:
    """A price from structured data: schema.org numbers use "." as the decimal point whatever the locale,
    so "12.990" is twelve; only free text ("1.299,00 €") goes through parse_price."""
    if isinstance(value, list):
        value = value[0] if value else None
    code, factor = (_currency_of(currency) if isinstance(currency, str) and currency.strip() else None) or (None, 1)
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
        amount = Decimal(value.strip())
    elif isinstance(value, str) and (found := parse_price(value)):
        return found if found[1] else (found[0] * factor, code)
    else:
        return None
    return _at_most_cents(amount) * factor, code


# ------------------------------------------------------------------------------------------ availability

# Negative phrases first: "unavailable" contains "available" and "ناموجود" contains "موجود".
_AVAILABILITY = [
    (re.compile(r"out\s*of\s*stock|sold\s*out|soldout|unavailable|not\s+(?:in\s+stock|available)|discontinued"
                r"|no\s+longer\s+available|ausverkauft|nicht\s+(?:auf\s+lager|verfügbar)|rupture\s+de\s+stock"
                r"|\boos\b|épuisé|agotado|esaurito"
                r"|ناموجود|نا\s*موجود|موجود\s+نیست|اتمام\s+موجودی|غير\s+متوفر"), (False, 0)),
    # Orderable but not on the shelf now: not in stock, count unknown.
    (re.compile(r"pre-?\s*order|pre-?\s*sale|back-?\s*order|made\s*to\s*order|coming\s+soon"), (False, None)),
    (re.compile(r"in\s*stock|available|limited\s*availability|online\s*only|in\s*store\s*only|auf\s+lager"
                r"|verfügbar|en\s+stock|disponible|موجود|متوفر"), (True, None)),
]
_COUNT = re.compile(r"([0-9]+)\s*(?:available|left|in\s*stock|pcs|pieces|items?|units|عدد)"
                    r"|(?:in\s*stock|stock|available|موجودی)\s*[:(]?\s*([0-9]+)")


def parse_availability(text: str) -> tuple[bool | None, int | None]:
    """(in_stock, count) from a phrase or a schema.org URL ("https://schema.org/InStock"); (None, None) if unknown."""
    text = _words_of_schema_url((text or "").translate(_DIGITS)).lower()
    for pattern, (in_stock, stock) in _AVAILABILITY:
        if pattern.search(text):
            return _in_stock_count(text) if in_stock else (in_stock, stock)
    return None, None


def _words_of_schema_url(text: str) -> str:
    # "https://schema.org/OutOfStock" -> "Out Of Stock", so URLs go through the same phrases as text.
    match = re.search(r"schema\.org/(\w+)", text)
    value = match.group(1) if match else text
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", value)


def _in_stock_count(text: str) -> tuple[bool, int | None]:
    """In stock, with the count the text gives; "0 available" is out of stock after all."""
    match = _COUNT.search(text)
    if match is None:
        return True, None
    count = int(match.group(1) or match.group(2))
    return count > 0, count


# ----------------------------------------------------------------------------------------------- detail

_FIELDS = ("name", "price", "currency", "in_stock", "stock", "sku", "image", "description")


def parse_detail(html: str, url: str, selectors: DetailSelectors | None = None,
                 default_currency: str | None = None) -> Item | None:
    """The product on a detail page, or None if no product name is found."""
    soup = _soup(html)
    base = _base_url(soup, url)
    sources = [_from_selectors(soup, selectors)] if selectors else []
    # Cheapest first; the costly visible-page pass runs only if something is still missing
    # (bench_scrape: it was ~35% of the parse time of pages whose selectors had found everything).
    for extract in (_from_json_ld, _from_microdata, _from_opengraph, _from_visible):
        if all(_merge(sources).get(f) is not None for f in ("name", "price", "currency", "in_stock")):
            break
        sources.append(extract(soup))
    fields = _merge(sources)
    if not fields.get("name"):
        return None
    return _item(fields, _canonical_url(soup, base, url), base, default_currency)


def _soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html or "", "lxml")


def _base_url(soup: BeautifulSoup, url: str) -> str:
    # Relative links resolve against <base href> when the page sets one, as a browser would.
    base = soup.find("base", href=True)
    return urljoin(url, base["href"]) if base else url


def _canonical_url(soup: BeautifulSoup, base: str, url: str) -> str:
    link = soup.select_one('link[rel~="canonical"][href]')
    return _absolute(base, link["href"] if link else None) or urldefrag(url).url


def _absolute(base: str, href: str | None) -> str | None:
    """An absolute http(s) URL without fragment, or None for empty, javascript:, mailto:, data: links."""
    if not href or not href.strip():
        return None
    url = urldefrag(urljoin(base, href.strip())).url
    return url if url.startswith(("http://", "https://")) else None


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
        url=url, name=_clean(fields["name"]), price=price,
        currency=fields.get("currency") or (default_currency if price is not None else None),
        in_stock=in_stock, stock=stock, sku=_clean(fields.get("sku")) or None,
        image_url=_absolute(base, fields.get("image")), description=_clean(fields.get("description")),
    )


def _clean(value) -> str:
    """Text with entities decoded and whitespace collapsed (JSON-LD often carries "&amp;" and newlines)."""
    return " ".join(html_lib.unescape(str(value)).split()) if value is not None else ""


def _priced(result: tuple[Decimal, str | None] | None) -> dict:
    return {"price": result[0], "currency": result[1]} if result else {}


def _availability(text: str | None) -> dict:
    in_stock, stock = parse_availability(text or "")
    return {"in_stock": in_stock, "stock": stock}


# -- with selectors

def _from_selectors(soup: BeautifulSoup, sel: DetailSelectors) -> dict:
    fields = {
        "name": _text(_pick(soup, sel.name)),
        "sku": _text(_pick(soup, sel.sku)),
        "image": _img_src(_pick(soup, sel.image)),
        "description": _text(_pick(soup, sel.description)),
        **_priced(parse_price(_price_text(_pick(soup, sel.price)))),
    }
    if sel.availability and (element := _pick(soup, sel.availability)) is not None:
        fields |= _availability(_text(element))
    return _with_currency_element(fields, _text(_pick(soup, sel.currency)))


def _with_currency_element(fields: dict, text: str) -> dict:
    """A separate currency element wins over a symbol in the price text."""
    found = _currency_near(text, 0, len(text)) if text else None
    if found is None or fields.get("price") is None:
        return fields
    code, factor = found
    # A Toman element scales an amount whose own text named no currency (one that did is already in IRR).
    scale = factor if fields.get("currency") is None else 1
    return fields | {"price": fields["price"] * scale, "currency": code}


def _pick(root: Tag, selector: str | None) -> Tag | None:
    return root.select_one(selector) if selector and root is not None else None


def _text(element: Tag | None) -> str:
    return " ".join(element.get_text(" ").split()) if element is not None else ""


def _price_text(element: Tag | None) -> str:
    # A selected price block may hold the struck list price too ("<del>£20</del> £15").
    return _unstruck_text(element) if element is not None else ""


def _img_src(element: Tag | None) -> str | None:
    """An image's URL; lazy-loading themes put a data: placeholder in src and the real one in data-src."""
    if element is None:
        return None
    if element.name != "img" and (inner := element.find("img")) is not None:
        element = inner
    src = (element.get("src") or "").strip()
    if src and not src.startswith("data:"):
        return src
    return element.get("data-src") or element.get("data-lazy-src") or src or None


# -- JSON-LD

_PRODUCT_TYPES = {"Product", "IndividualProduct", "ProductModel", "SomeProducts"}


def _from_json_ld(soup: BeautifulSoup) -> dict:
    for node in _json_ld_nodes(soup):
        if _is_product(node) and node.get("name"):
            return {"name": _first(node["name"]), "sku": _first(node.get("sku")),
                    "image": _ld_image(node.get("image")), "description": _first(node.get("description")),
                    **_ld_offer(node.get("offers"))}
    return {}


def _json_ld_nodes(soup: BeautifulSoup):
    for script in soup.find_all("script", type=True):
        if script["type"].strip().lower() == "application/ld+json":
            yield from _walk(_load_json(script.get_text()))


def _load_json(text: str):
    # parse_float keeps prices exact; strict=False accepts raw newlines in descriptions, which shops emit.
    try:
        return json.loads(text, parse_float=Decimal, strict=False)
    except ValueError:
        return None


def _walk(data):
    """Every node of a JSON-LD document: top-level arrays, @graph, and a page's mainEntity."""
    if isinstance(data, list):
        for element in data:
            yield from _walk(element)
    elif isinstance(data, dict):
        yield data
        for key in ("@graph", "mainEntity"):
            yield from _walk(data.get(key))


def _is_product(node: dict) -> bool:
    types = node.get("@type")
    types = types if isinstance(types, list) else [types]
    # "Product", "schema:Product" and "http://schema.org/Product" all name the same type.
    return any(isinstance(t, str) and re.split(r"[/:#]", t)[-1] in _PRODUCT_TYPES for t in types)


def _first(value):
    """Scalar of a JSON-LD value that may be a list or a {"@value": ...} object."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("@value") or value.get("name")
    return str(value) if isinstance(value, (str, int, Decimal)) else None


def _ld_image(image) -> str | None:
    if isinstance(image, list):
        image = image[0] if image else None
    if isinstance(image, dict):  # ImageObject
        image = image.get("url") or image.get("contentUrl")
    return image if isinstance(image, str) else None


def _ld_offer(offers) -> dict:
    """Price, currency and availability of the first offer that has a price: an Offer, a list of them, or an
    AggregateOffer (its lowPrice, else the offers it lists)."""
    for offer in offers if isinstance(offers, list) else [offers]:
        fields = (_ld_offer_fields(offer) or _ld_offer(offer.get("offers"))) if isinstance(offer, dict) else {}
        if fields:
            return fields
    return {}


def _ld_offer_fields(offer: dict) -> dict:
    spec = offer.get("priceSpecification")
    spec = (spec[0] if spec else {}) if isinstance(spec, list) else spec if isinstance(spec, dict) else {}
    price = next((v for v in (offer.get("price"), offer.get("lowPrice"), spec.get("price")) if v not in (None, "")),
                 None)
    fields = _priced(_machine_price(price, offer.get("priceCurrency") or spec.get("priceCurrency")))
    if fields and offer.get("availability"):
        fields |= _availability(_first(offer["availability"]))
    level = offer.get("inventoryLevel")
    if fields and isinstance(level, dict) and str(level.get("value", "")).isdigit():
        fields["stock"] = int(level["value"])
    return fields


# -- microdata

def _from_microdata(soup: BeautifulSoup) -> dict:
    product = next((s for s in soup.find_all(attrs={"itemscope": True, "itemtype": True}) if _is_product_scope(s)),
                   None)
    if product is None:
        return {}
    props = _microdata_props(product)
    fields = {"name": props.get("name"), "sku": props.get("sku"), "image": props.get("image"),
              "description": props.get("description"),
              **_priced(_machine_price(props.get("price") or props.get("lowPrice"), props.get("priceCurrency")))}
    return fields | (_availability(props["availability"]) if props.get("availability") else {})


def _is_product_scope(element: Tag) -> bool:
    return any(re.split(r"[/:#]", t)[-1] in _PRODUCT_TYPES for t in element["itemtype"].split())


def _microdata_props(product: Tag) -> dict:
    """First value of each property of this product or of its offers, not of nested brands or related products."""
    props = {}
    for element in product.find_all(attrs={"itemprop": True}):
        owner = _scope_of(element)
        if owner is product or (owner is not None and "offers" in owner.get("itemprop", "").split()
                                and _scope_of(owner) is product):
            for name in element["itemprop"].split():
                props.setdefault(name, _microdata_value(element))
    return props


def _scope_of(element: Tag) -> Tag | None:
    return element.find_parent(attrs={"itemscope": True})


def _microdata_value(element: Tag) -> str:
    # The machine value lives in an attribute for these elements (HTML microdata rules), else in the text.
    if element.has_attr("content"):
        return element["content"]
    attr = {"a": "href", "link": "href", "img": "src", "meta": "content", "time": "datetime",
            "data": "value", "meter": "value", "source": "src"}.get(element.name)
    return (element.get(attr) or "") if attr else _text(element)


# -- OpenGraph

_OG = {"name": "og:title", "image": "og:image", "description": "og:description"}


def _from_opengraph(soup: BeautifulSoup) -> dict:
    meta = _meta_tags(soup)
    # Facebook's product tags are product:*; some shops write og:price:* / og:availability instead.
    amount = meta.get("product:price:amount") or meta.get("og:price:amount")
    currency = meta.get("product:price:currency") or meta.get("og:price:currency")
    availability = meta.get("product:availability") or meta.get("og:availability")
    fields = {field: meta.get(prop) for field, prop in _OG.items()} | _priced(_machine_price(amount, currency))
    return fields | (_availability(availability) if availability else {})


def _meta_tags(soup: BeautifulSoup) -> dict:
    # Shops write OpenGraph with property= (the standard) or name= (common mistake); first one wins.
    meta = {}
    for tag in soup.find_all("meta", content=True):
        key = (tag.get("property") or tag.get("name") or "").strip().lower()
        meta.setdefault(key, tag["content"].strip())
    return meta


# -- what the page shows

_PRICE_CANDIDATES = '[itemprop="price"], [class*="price" i], [id*="price" i], ins'
_STRUCK_TAGS = {"del", "s", "strike"}
_SUPERSEDED = {"old", "was", "regular", "list", "compare", "strike", "strikethrough", "crossed"}
_PREFERRED = {"sale", "special", "current", "now", "final", "actual", "new", "summary", "main"}
_ELSEWHERE = {"related", "cart", "minicart", "basket", "upsell", "upsells", "crosssell", "crosssells", "similar",
              "recommended", "recommendations", "recently", "viewed", "sidebar", "widget"}
_ASIDE_TAGS = {"header", "footer", "nav", "aside"}
_AVAILABILITY_CANDIDATES = '[class*="availability" i], [class*="stock" i], [id*="availability" i]'
# Text only screen readers get ("Original price was: €79.00.") is not what the page shows.
_SCREEN_READER_ONLY = {"screen-reader-text", "sr-only", "visually-hidden", "visuallyhidden"}


def _from_visible(soup: BeautifulSoup) -> dict:
    h1 = soup.find("h1")
    fields = {"name": _text(h1) or None, **_priced(_visible_price(soup, h1))}
    return fields | _visible_availability(soup, h1)


def _visible_price(soup: BeautifulSoup, h1: Tag | None) -> tuple[Decimal, str | None] | None:
    """The product's own price: not struck through, and preferably near the h1 and outside carts/related blocks."""
    priced = [(el, found) for el in soup.select(_PRICE_CANDIDATES)
              if not _is_struck(el) and (found := parse_price(_unstruck_text(el)))]
    if not priced:
        return None
    area = _main_area(h1, [el for el, _ in priced])
    # max() keeps the first of equals, so ties go to the earliest price on the page.
    return max(priced, key=lambda candidate: _price_score(candidate[0], area))[1]


def _class_words(element: Tag) -> list[list[str]]:
    """Words of each class name: "price--old" -> [price, old], "oldPrice" -> [old, price]."""
    return [[w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)]
            for name in element.get("class") or []]


def _marks_superseded(element: Tag) -> bool:
    """Whether this element holds a price that is not the one to pay (struck through, "was", screen-reader text)."""
    # A class hides a price when it is a price class saying old/was/... ("old-price", "price--compare")
    # or just that word ("was"); containers like "list-inline" or "product-list" hide nothing.
    if element.name in _STRUCK_TAGS or _SCREEN_READER_ONLY & set(element.get("class") or []):
        return True
    return any(set(words) & _SUPERSEDED and ({"price", "amount"} & set(words) or len(words) == 1)
               for words in _class_words(element))


def _is_struck(element: Tag) -> bool:
    return _marks_superseded(element) or any(_marks_superseded(p) for p in element.parents if isinstance(p, Tag))


def _unstruck_text(element: Tag) -> str:
    """Text of a price block without its struck-through part ("<del>£20</del> <ins>£15</ins>" -> "£15")."""
    return " ".join(s for s in element.find_all(string=True)
                    if type(s) is NavigableString and not _struck_below(s, element))


def _struck_below(string: NavigableString, top: Tag) -> bool:
    for parent in string.parents:
        if parent is top:
            return False
        if _marks_superseded(parent):
            return True
    return False


def _main_area(h1: Tag | None, candidates: list[Tag]) -> Tag | None:
    """The smallest ancestor of the h1 that holds a price: the product's own block on most themes."""
    for area in h1.parents if h1 is not None else ():
        if any(any(p is area for p in c.parents) for c in candidates):
            return area
    return None


def _price_score(element: Tag, area: Tag | None) -> int:
    chain = [element, *(p for p in element.parents if isinstance(p, Tag))]
    words = {w for el in chain for name in _class_words(el) for w in name}
    in_area = area is not None and any(el is area for el in chain)
    preferred = element.get("itemprop") == "price" or any(el.name == "ins" for el in chain) or bool(words & _PREFERRED)
    elsewhere = bool(words & _ELSEWHERE) or any(el.name in _ASIDE_TAGS for el in chain)
    return 4 * in_area + 2 * preferred - 8 * elsewhere


def _visible_availability(soup: BeautifulSoup, h1: Tag | None) -> dict:
    """The stock line nearest the h1 (searching its ancestors outwards), so a related product's badge loses."""
    for scope in list(h1.parents) if h1 is not None else [soup]:
        for element in scope.select(_AVAILABILITY_CANDIDATES):
            fields = _availability(_text(element))
            if fields["in_stock"] is not None:
                return fields
    return {}


# ---------------------------------------------------------------------------------------------- listing

def parse_listing(html: str, url: str, selectors: ListingSelectors,
                  default_currency: str | None = None) -> Listing:
    """Product links, the next page and (for shops without detail pages) the products on a listing page."""
    soup = _soup(html)
    base = _base_url(soup, url)
    links = [_absolute(base, _href(el)) for el in _select(soup, selectors.product_links)]
    next_page = _absolute(base, _href(_pick(soup, selectors.next_page)))
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
    text = _text(element)
    title = element.get("title", "").strip() if element is not None else ""
    return title if title and (not text or text.endswith(("...", "…"))) else text


def _listing_item(element: Tag, sel: ListingSelectors, base: str, url: str,
                  default_currency: str | None) -> Item | None:
    name = _listing_name(_pick(element, sel.item_name))
    if not name:
        return None
    found = parse_price(_price_text(_pick(element, sel.item_price)), default_currency)
    link = _absolute(base, _href(_pick(element, sel.item_link)))
    return Item(url=link or urldefrag(url).url, name=_clean(name), price=found[0] if found else None,
                currency=found[1] if found else None,
                image_url=_absolute(base, _img_src(_pick(element, sel.item_image))))
