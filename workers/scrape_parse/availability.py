"""Availability from text: in stock or not, and the count when the page gives one."""

import re

from workers.scrape_parse.prices import DIGITS


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
    text = _words_of_schema_url((text or "").translate(DIGITS)).lower()
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


def availability_fields(text: str | None) -> dict:
    in_stock, stock = parse_availability(text or "")
    return {"in_stock": in_stock, "stock": stock}

