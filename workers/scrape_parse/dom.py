"""Markup helpers every extractor shares: parsing, URLs, element text and images."""

import html as html_lib
import re
from urllib.parse import urldefrag, urljoin

from bs4 import BeautifulSoup, Tag


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html or "", "lxml")


def base_url(soup: BeautifulSoup, url: str) -> str:
    # Relative links resolve against <base href> when the page sets one, as a browser would.
    base = soup.find("base", href=True)
    return urljoin(url, base["href"]) if base else url


def absolute(base: str, href: str | None) -> str | None:
    """An absolute http(s) URL without fragment, or None for empty, javascript:, mailto:, data: links."""
    if not href or not href.strip():
        return None
    url = urldefrag(urljoin(base, href.strip())).url
    return url if url.startswith(("http://", "https://")) else None


def pick(root: Tag, selector: str | None) -> Tag | None:
    return root.select_one(selector) if selector and root is not None else None


def text(element: Tag | None) -> str:
    return " ".join(element.get_text(" ").split()) if element is not None else ""


def img_src(element: Tag | None) -> str | None:
    """An image's URL; lazy-loading themes put a data: placeholder in src and the real one in data-src."""
    if element is None:
        return None
    if element.name != "img" and (inner := element.find("img")) is not None:
        element = inner
    src = (element.get("src") or "").strip()
    if src and not src.startswith("data:"):
        return src
    return element.get("data-src") or element.get("data-lazy-src") or src or None


def clean(value) -> str:
    """Text with entities decoded and whitespace collapsed (JSON-LD often carries "&amp;" and newlines)."""
    return " ".join(html_lib.unescape(str(value)).split()) if value is not None else ""



def class_words(element: Tag) -> list[list[str]]:
    """Words of each class name: "price--old" -> [price, old], "oldPrice" -> [old, price]."""
    return [[w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)]
            for name in element.get("class") or []]
