"""The scraper: run a scrape request, record what is new or changed as events.

A scraped product's identity is (source, SKU) or, without a SKU, (source, canonical URL); its id is
derived from that, so every run finds the same product again. A product whose values did not change
records nothing. A run records `scrape.started`, `scrape.progressed` now and then, and `scrape.finished`
with its counts and why it stopped, or `scrape.failed` with the reason when it got nothing useful. Its
events carry the request's id as their correlation id. How the site is walked is workers/crawl.py.
"""

import logging
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

import aiohttp
import msgspec
from psycopg_pool import AsyncConnectionPool

from api.wakeup import RelayWaker
from events import scrapes
from events.base import Event, Meta
from events.commands import scraping
from events.context import correlation_id
from events.errors import Invalid
from events.money import parse_currency, parse_price
from events.products import MAX_STOCK
from workers.crawl import Crawl
from workers.fetch import Fetcher
from workers.scrape_parse import Item
from workers.sources import Source, for_url

log = logging.getLogger(__name__)

PRODUCT_NAMESPACE = uuid.UUID("6f1c1d3e-93b5-4c4e-8f0c-6b0f3c2f9a11")
MAX_REQUEST_BYTES = 64 * 1024  # a request is a few short fields; a bigger body is not one

Limit = Annotated[int, msgspec.Meta(ge=1)]


class ScrapeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The body of a `scrape.requested` message: a source, a start URL, or both. `max_pages` bounds the
    listing pages, `max_products` the products (defaults: the source's); `follow` crawls every link of
    the host breadth-first; `request_id` becomes the correlation id of the run's events."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    max_pages: Limit | None = None
    max_products: Limit | None = None
    follow: bool = False
    request_id: uuid.UUID | None = None


def decode_request(body: bytes) -> ScrapeRequest:
    """The request in a message body; raises ValueError (msgspec's errors are ValueErrors too)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"a body of {len(body)} bytes is not a scrape request (at most {MAX_REQUEST_BYTES})")
    return msgspec.json.decode(body, type=ScrapeRequest)


def product_id(source: str, item: Item) -> uuid.UUID:
    identity = f"sku:{item.sku}" if item.sku else f"url:{item.url}"
    return uuid.uuid5(PRODUCT_NAMESPACE, f"{source}|{identity}")


class _Run:
    """One run's stream: its events appended in order, each commit waking the relay."""

    def __init__(self, pool: AsyncConnectionPool, run_id: uuid.UUID, meta: Meta):
        self.pool, self.run_id, self.meta, self.version = pool, run_id, meta, 0

    async def append(self, event: Event) -> None:
        await scraping.record_run(self.pool, self.run_id, event, self.version, self.meta)
        self.version += 1

    def counts(self, source: str, counts: Counter) -> dict:
        return dict(run_id=self.run_id, source=source, pages=counts["pages"], listing_pages=counts["listing_pages"],
                    products_new=counts["new"], products_changed=counts["changed"],
                    products_unchanged=counts["unchanged"], errors=counts["errors"])


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

    async def run(self, request: ScrapeRequest) -> scrapes.ScrapeFinished | scrapes.ScrapeFailed:
        """Run one request; its last event, `scrape.failed` if the request could not run or the run got
        nothing useful (the caller dead-letters the request then)."""
        request_id = request.request_id or uuid.uuid4()
        correlation_id.set(str(request_id))  # the run's log lines carry it, as its events do
        run = _Run(self.pool, uuid.uuid4(), Meta(correlation_id=request_id, actor="scraper"))
        try:
            source = self.resolve(request)
        except ValueError as exc:  # nothing to run: the failure is the whole run
            return await self._end(run, request.source or request.url or "", Counter(), str(exc), request_id)
        run.meta = Meta(correlation_id=request_id, actor=f"scraper:{source.name}")
        max_pages = request.max_pages or source.max_pages
        max_products = request.max_products or source.max_products
        await run.append(scrapes.ScrapeStarted(
            run_id=run.run_id, source=source.name, start_urls=source.start_urls, max_pages=max_pages,
            max_products=max_products, started_at=datetime.now(UTC), request_id=request_id, follow=request.follow))

        async def record(item: Item) -> str:
            outcome = await self.record(source, item, run.run_id, run.meta)
            if outcome in ("new", "changed"):
                waker.poke()  # after its commit: the relay publishes it now, not at its next poll
            return outcome

        async def report(counts: Counter) -> None:
            await run.append(scrapes.ScrapeProgressed(**run.counts(source.name, counts), at=datetime.now(UTC)))

        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(session, source.allowed_host, concurrency=source.concurrency,
                              delay=source.delay_seconds, timeout=self.timeout, retries=self.retries)
            crawl = Crawl(source, fetcher, record, report, max_pages=max_pages, max_products=max_products,
                          follow=request.follow)
            waker = RelayWaker()
            waker.start(self.pool)
            try:
                await crawl.run()
                failure = crawl.failure()
            except Exception as exc:  # a bug or an outage: the run ends failed, it does not just vanish
                log.exception("scrape %s of %s crashed", run.run_id, source.name)
                failure = f"crashed: {type(exc).__name__}: {exc}"
            finally:
                await waker.stop()
        return await self._end(run, source.name, crawl.counts, failure, request_id, crawl.stopped())

    async def _end(self, run: _Run, source: str, counts: Counter, failure: str | None, request_id: uuid.UUID,
                   stopped: scrapes.Stopped = "exhausted") -> scrapes.ScrapeFinished | scrapes.ScrapeFailed:
        now = datetime.now(UTC)
        if failure is None:
            event = scrapes.ScrapeFinished(**run.counts(source, counts), finished_at=now, stopped=stopped)
        else:
            event = scrapes.ScrapeFailed(**run.counts(source, counts), reason=failure[:1000], failed_at=now,
                                         request_id=request_id)
        await run.append(event)
        log.info("scrape %s of %s: %s", run.run_id, source, failure or f"finished ({stopped}), {dict(counts)}")
        return event

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
