"""What the page shows, for shops without structured data: the h1, the product's own price and stock line."""

from decimal import Decimal

from bs4 import BeautifulSoup, NavigableString, Tag

from workers.scrape_parse import dom
from workers.scrape_parse.availability import availability_fields
from workers.scrape_parse.prices import parse_price, price_fields


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


def from_visible(soup: BeautifulSoup) -> dict:
    h1 = soup.find("h1")
    fields = {"name": dom.text(h1) or None, **price_fields(_visible_price(soup, h1))}
    return fields | _visible_availability(soup, h1)


def prices_shown(soup: BeautifulSoup) -> list[tuple[Tag, tuple[Decimal, str | None]]]:
    """Every element showing a price to pay (not struck through), with that price, in page order."""
    return [(el, found) for el in soup.select(_PRICE_CANDIDATES)
            if not _is_struck(el) and (found := parse_price(_unstruck_text(el)))]


def _visible_price(soup: BeautifulSoup, h1: Tag | None) -> tuple[Decimal, str | None] | None:
    """The product's own price: not struck through, and preferably near the h1 and outside carts/related blocks."""
    priced = prices_shown(soup)
    if not priced:
        return None
    area = _main_area(h1, [el for el, _ in priced])
    # max() keeps the first of equals, so ties go to the earliest price on the page.
    return max(priced, key=lambda candidate: _price_score(candidate[0], area))[1]


def _marks_superseded(element: Tag) -> bool:
    """Whether this element holds a price that is not the one to pay (struck through, "was", screen-reader text)."""
    # A class hides a price when it is a price class saying old/was/... ("old-price", "price--compare")
    # or just that word ("was"); containers like "list-inline" or "product-list" hide nothing.
    if element.name in _STRUCK_TAGS or _SCREEN_READER_ONLY & set(element.get("class") or []):
        return True
    return any(set(words) & _SUPERSEDED and ({"price", "amount"} & set(words) or len(words) == 1)
               for words in dom.class_words(element))


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
    words = {w for el in chain for name in dom.class_words(el) for w in name}
    in_area = area is not None and any(el is area for el in chain)
    preferred = element.get("itemprop") == "price" or any(el.name == "ins" for el in chain) or bool(words & _PREFERRED)
    elsewhere = bool(words & _ELSEWHERE) or any(el.name in _ASIDE_TAGS for el in chain)
    return 4 * in_area + 2 * preferred - 8 * elsewhere


def _visible_availability(soup: BeautifulSoup, h1: Tag | None) -> dict:
    """The stock line nearest the h1 (searching its ancestors outwards), so a related product's badge loses."""
    for scope in list(h1.parents) if h1 is not None else [soup]:
        for element in scope.select(_AVAILABILITY_CANDIDATES):
            fields = availability_fields(dom.text(element))
            if fields["in_stock"] is not None:
                return fields
    return {}


def price_text(element: Tag | None) -> str:
    # A selected price block may hold the struck list price too ("<del>£20</del> £15").
    return _unstruck_text(element) if element is not None else ""

