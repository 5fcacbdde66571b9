"""The scraper: fetch a source's pages, parse them, record what is new or changed as events.

A scraped product's identity is (source, SKU) or, without a SKU, (source, canonical URL); its id is
derived from that, so every run finds the same product again. A product whose values did not change
records nothing; a run records `scrape.started` and `scrape.finished` with its counts.
"""

import asyncio
import logging
import uuid
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import msgspec
from bs4 import BeautifulSoup
from psycopg_pool import AsyncConnectionPool

from events import scrapes
from events.base import Meta
from events.commands import scraping
from events.errors import Invalid
from events.money import parse_currency, parse_price
from events.products import MAX_STOCK
from workers.fetch import Fetcher, FetchError, Forbidden
from workers.scrape_parse import Item, parse_detail, parse_listing
from workers.sources import Source, for_url

log = logging.getLogger(__name__)

PRODUCT_NAMESPACE = uuid.UUID("6f1c1d3e-93b5-4c4e-8f0c-6b0f3c2f9a11")


class ScrapeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of a `scrape.requested` message: a source, a start URL, or both."""

    source: str | None = None
    url: str | None = None
    max_pages: int | None = None
    max_products: int | None = None


def product_id(source: str, item: Item) -> uuid.UUID:
    identity = f"sku:{item.sku}" if item.sku else f"url:{item.url}"
    return uuid.uuid5(PRODUCT_NAMESPACE, f"{source}|{identity}")


def next_page_number(url: str, param: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[param] = str(int(query.get(param, "1")) + 1)
    return urlunsplit(parts._replace(query=urlencode(query)))


def same_host_links(html: str, url: str, host: str) -> list[str]:
    links = (urljoin(url, a["href"]).split("#")[0] for a in BeautifulSoup(html, "lxml").select("a[href]"))
    return list(dict.fromkeys(link for link in links if urlsplit(link).hostname == host))


class Scraper:
    def __init__(self, pool: AsyncConnectionPool, sources: dict[str, Source], *, timeout: float = 10.0,
                 retries: int = 3):
        self.pool, self.sources, self.timeout, self.retries = pool, sources, timeout, retries

    def resolve(self, request: ScrapeRequest) -> Source:
        if request.source is not None and request.source not in self.sources:
            raise ValueError(f"unknown source {request.source!r}; known: {', '.join(sorted(self.sources))}")
        base = self.sources.get(request.source) if request.source else None
        if request.url:
            return for_url(request.url, base)
        if base is None:
            raise ValueError("a scrape request names a source, a url, or both")
        return base

    async def run(self, request: ScrapeRequest, meta: Meta | None = None) -> Counter:
        source = self.resolve(request)
        max_pages = request.max_pages or source.max_pages
        max_products = request.max_products or 10_000
        run_id = uuid.uuid4()
        meta = meta or Meta(actor=f"scraper:{source.name}")
        await self._record_run(run_id, scrapes.ScrapeStarted(
            run_id=run_id, source=source.name, start_urls=source.start_urls, max_pages=max_pages,
            max_products=max_products, started_at=datetime.now(UTC)), 0, meta)
        counts: Counter = Counter()
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(session, source.allowed_host, concurrency=source.concurrency,
                              delay=source.delay_seconds, timeout=self.timeout, retries=self.retries)
            await Crawl(self, source, fetcher, counts, max_pages, max_products, run_id, meta).run()
        await self._record_run(run_id, scrapes.ScrapeFinished(
            run_id=run_id, source=source.name, pages=counts["pages"], products_new=counts["new"],
            products_changed=counts["changed"], products_unchanged=counts["unchanged"], errors=counts["errors"],
            finished_at=datetime.now(UTC)), 1, meta)
        log.info("scrape %s of %s: %s", run_id, source.name, dict(counts))
        return counts

    async def _record_run(self, run_id: uuid.UUID, event, version: int, meta: Meta) -> None:
        await scraping.record_run(self.pool, run_id, event, version, meta)

    async def record(self, source: Source, item: Item, run_id: uuid.UUID, meta: Meta) -> str:
        """'new', 'changed', 'unchanged' or 'errors' for one scraped item: the run's count it adds to."""
        try:
            price = parse_price(item.price, round_to_cents=True)
            currency = parse_currency(item.currency or source.currency)
        except Invalid:
            log.warning("scrape %s: no usable price for %s", run_id, item.url)
            return "errors"
        stock = 0 if item.in_stock is False else item.stock if item.stock is not None else source.default_stock
        stock = min(stock, MAX_STOCK)  # a page's count is the site's word; the table holds an integer
        values = {"name": item.name[:200], "description": item.description[:5000], "price": price,
                  "currency": currency, "stock": stock, "sku": item.sku, "image_url": item.image_url}
        return await scraping.record_product(self.pool, product_id(source.name, item), source.name, item.url,
                                             run_id, values, meta)


class Crawl:
    """One run's walk over listing pages and the detail pages they link to."""

    def __init__(self, scraper: Scraper, source: Source, fetcher: Fetcher, counts: Counter, max_pages: int,
                 max_products: int, run_id: uuid.UUID, meta: Meta):
        self.scraper, self.source, self.fetcher, self.counts = scraper, source, fetcher, counts
        self.max_pages, self.max_products, self.run_id, self.meta = max_pages, max_products, run_id, meta
        self.seen: set[str] = set()
        self.products = 0

    def budget(self) -> bool:
        return self.counts["pages"] < self.max_pages and self.products < self.max_products

    async def fetch(self, url: str) -> str | None:
        self.seen.add(url)
        try:
            html = await self.fetcher.get(url)
        except Forbidden as exc:
            log.info("scrape %s skips %s", self.run_id, exc)
            self.counts["skipped"] += 1
            return None
        except FetchError as exc:
            log.warning("scrape %s: %s", self.run_id, exc)
            self.counts["errors"] += 1
            return None
        self.counts["pages"] += 1
        return html

    async def keep(self, item: Item | None) -> None:
        if item is None or self.products >= self.max_products:
            return
        self.products += 1
        try:
            outcome = await self.scraper.record(self.source, item, self.run_id, self.meta)
        except Exception:  # one odd page must not end the run
            log.exception("scrape %s: cannot record %s", self.run_id, item.url)
            outcome = "errors"
        self.counts[outcome] += 1

    async def parse_detail(self, html: str, url: str) -> Item | None:
        try:
            # Parsing is CPU work: a thread keeps the event loop (fetches, the broker's heartbeats) moving.
            return await asyncio.to_thread(parse_detail, html, url, self.source.detail, self.source.currency)
        except Exception:
            log.exception("scrape %s: cannot parse %s", self.run_id, url)
            return None

    async def detail(self, url: str) -> None:
        if (html := await self.fetch(url)) is None:
            return
        item = await self.parse_detail(html, url)
        if item is None:
            self.counts["errors"] += 1
        await self.keep(item)

    async def run(self) -> None:
        queue = list(self.source.start_urls)
        listing = self.source.listing
        automatic = not (listing.product_links or listing.item)
        while queue and self.budget():
            url = queue.pop(0)
            if url in self.seen or (html := await self.fetch(url)) is None:
                continue
            if automatic:  # no selectors: every page may be a product; follow the host's links
                await self.keep(await self.parse_detail(html, url))
                queue += [u for u in same_host_links(html, url, self.source.allowed_host) if u not in self.seen]
                continue
            page = await asyncio.to_thread(parse_listing, html, url, listing, self.source.currency)
            for item in page.items:
                await self.keep(item)
            links = [u for u in page.product_links if u not in self.seen]
            room = min(self.max_pages - self.counts["pages"], self.max_products - self.products)
            await asyncio.gather(*(self.detail(u) for u in links[:max(room, 0)]))
            if self.source.page_param:
                if page.items or page.product_links:  # the first page without products ends the walk
                    queue.append(next_page_number(url, self.source.page_param))
            elif page.next_page:
                queue.append(page.next_page)
