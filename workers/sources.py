"""Scrape sources: the shipped `sources.toml`, extended or overridden by the file in SCRAPER_SOURCES."""

import tomllib
from pathlib import Path
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
    max_pages: int = 50
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


def for_url(url: str, base: Source | None = None) -> Source:
    """A source's rules applied to another start address (a mirror or a saved copy), or automatic
    extraction on any site when no source is named."""
    host = urlsplit(url).hostname or ""
    if base is not None:
        return msgspec.structs.replace(base, start_urls=[url], allowed_host=host)
    return Source(name=host, start_urls=[url], allowed_host=host)
