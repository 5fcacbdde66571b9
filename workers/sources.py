"""Scrape sources: the shipped `sources.toml`, extended or overridden by the file in SCRAPER_SOURCES."""

import tomllib
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from workers.scrape_parse import DetailSelectors, ListingSelectors

SHIPPED = Path(__file__).with_name("sources.toml")


class Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str = ""
    start_urls: list[str]
    allowed_host: str
    currency: str = "USD"
    page_param: str | None = None
    max_pages: Annotated[int, msgspec.Meta(ge=1)] = 50  # listing pages per run
    max_products: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # products per run: a small shop's whole catalogue
    delay_seconds: float = 1.0
    concurrency: int = 2
    schedule_minutes: float | None = None
    default_stock: int = 10
    listing: ListingSelectors = msgspec.field(default_factory=ListingSelectors)
    detail: DetailSelectors | None = None


def load(extra: str | None = None) -> dict[str, Source]:
    raw = tomllib.loads(SHIPPED.read_text()).get("sources", {})
    if extra:
        raw |= tomllib.loads(Path(extra).read_text()).get("sources", {})
    return {name: msgspec.convert({**body, "name": name}, Source) for name, body in raw.items()}


def check_url(url: str) -> str:
    """The URL, if it is one the scraper can fetch: http(s) with a host. Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    return url


def for_url(url: str, base: Source | None = None) -> Source:
    """A source's rules applied to another start address (a mirror or a saved copy), or automatic
    extraction on any site when no source is named: then the source is named after the host, so a
    later scrape of the same host finds the same products again."""
    host = urlsplit(check_url(url)).hostname
    if base is not None:
        return msgspec.structs.replace(base, start_urls=[url], allowed_host=host)
    return Source(name=host, start_urls=[url], allowed_host=host)
