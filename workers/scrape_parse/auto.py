"""Shops nobody wrote selectors for: what kind of page this is, and where a listing leads.

A product page describes one product (in its structured data, or an h1 with a price of its own); a
listing repeats product cards (a link and a price, side by side) or lists products in its structured
data. Related-product cards do not make a product page a listing: its h1 has a price of its own, and
a card's price belongs to the card. A listing leads to its products and to its next page, nothing
else, so a crawl never wanders into navigation, categories or the cart.
"""

import re
from collections import defaultdict
from typing import Literal
from urllib.parse import urlsplit

from bs4 import BeautifulSoup, Tag

from workers.scrape_parse import dom
from workers.scrape_parse.model import Listing
from workers.scrape_parse.structured import listed_urls, structured_kind
from workers.scrape_parse.visible import prices_shown

Kind = Literal["product", "listing", "unknown"]

# Links in a card that are not the product: buying, saving, comparing, logging in.
_NOT_PRODUCT = re.compile(r"cart|basket|wishlist|compare|login|account|checkout", re.I)
_NEXT_WORDS = (r"next(?:\s+page)?|weiter|nächste(?:\s+seite)?|suivante?|siguiente|successiv[ao]|volgende"
               r"|próxima|بعدی|صفحه\s+بعد|التالي")
# "Next", "Next page ›", "›", "→"; not "»" or ">>" alone, which often mean the last page.
_NEXT_TEXT = re.compile(rf"(?:{_NEXT_WORDS})\s*[›»→>]*|[›→]", re.I)


def classify(html: str, url: str) -> Kind:
    """Whether the page at `url` shows one product, a listing of products, or neither."""
    soup = dom.soup(html)
    if kind := structured_kind(soup):
        return kind
    if _has_own_price(soup):
        return "product"
    return "listing" if len(product_cards(soup)) >= 2 else "unknown"


def auto_listing(html: str, url: str) -> Listing:
    """A listing's product links (from its structured data, else from its product cards) and next page."""
    soup = dom.soup(html)
    base = dom.base_url(soup, url)
    links = [dom.absolute(base, href) for href in listed_urls(soup)]
    if not any(links):
        links = [_card_link(card, base) for card in product_cards(soup)]
    return Listing(list(dict.fromkeys(link for link in links if link and link != url)),
                   next_page(soup, base, url), [])


def same_host_links(html: str, url: str, host: str) -> list[str]:
    """Every link of the page to `host`, in page order: what a breadth-first crawl (`follow`) walks."""
    soup = dom.soup(html)
    base = dom.base_url(soup, url)
    links = (dom.absolute(base, a["href"]) for a in soup.find_all("a", href=True))
    return list(dict.fromkeys(link for link in links if link and urlsplit(link).hostname == host))


def product_cards(soup: BeautifulSoup) -> list[Tag]:
    """The largest set of sibling elements that each hold a price and a link: a listing's product grid."""
    groups: dict[tuple[int, str], dict[int, Tag]] = defaultdict(dict)
    for price, _ in prices_shown(soup):
        if (card := _card_of(price)) is not None and card.parent is not None:
            groups[(id(card.parent), card.name)][id(card)] = card
    return list(max(groups.values(), key=len, default={}).values())


def _card_of(price: Tag) -> Tag | None:
    """The price's linked block, widened through wrappers that hold nothing else
    (`<li><article>...</article></li>`), so that the cards of one grid are siblings."""
    card = _linked_block(price)
    while card is not None and card.parent is not None and card.parent.name not in ("body", "html", "[document]") \
            and len(card.parent.find_all(True, recursive=False)) == 1:
        card = card.parent
    return card


def _linked_block(element: Tag) -> Tag | None:
    """The nearest element, this one or around it, that is or holds a link."""
    return next((el for el in (element, *element.parents) if _is_link(el) or el.find("a", href=True)), None)


def _is_link(element: Tag) -> bool:
    return element.name == "a" and element.has_attr("href")


def _has_own_price(soup: BeautifulSoup) -> bool:
    """Whether a price belongs to the h1's product: one whose linked block holds the h1 too, or that no
    link surrounds. A card's price has the card as its linked block, and the h1 is not in it."""
    h1 = soup.find("h1")
    if h1 is None:
        return False
    for price, _ in prices_shown(soup):
        block = _linked_block(price)
        if block is None or any(p is block for p in h1.parents):
            return True
    return False


def _card_link(card: Tag, base: str) -> str | None:
    """The card's product link: the URL its links point at most (image and title both do), the first of equals."""
    anchors = ([card] if _is_link(card) else []) + card.find_all("a", href=True)
    urls = [url for a in anchors if (url := dom.absolute(base, a["href"]))
            and not _NOT_PRODUCT.search(f"{url} {' '.join(a.get('class') or [])}")]
    return max(dict.fromkeys(urls), key=urls.count, default=None)


def next_page(soup: BeautifulSoup, base: str, url: str) -> str | None:
    """The next listing page: a rel=next link, else a link whose class, label or text says "next"."""
    linked = soup.select('link[rel~="next"][href], a[rel~="next"][href]')
    candidates = linked + [a for a in soup.find_all("a", href=True) if _says_next(a)]
    for element in candidates:
        if (target := dom.absolute(base, element["href"])) and target != url:
            return target
    return None


def _says_next(a: Tag) -> bool:
    own = [a, a.parent] if a.parent is not None else [a]  # <li class="next"><a>...</a></li>
    words = {w for el in own for name in dom.class_words(el) for w in name}
    if "disabled" in words or a.get("aria-disabled") == "true":
        return False
    labels = [dom.text(a), a.get("aria-label") or "", a.get("title") or ""]
    return "next" in words or any(_NEXT_TEXT.fullmatch(label.strip()) for label in labels if label.strip())
