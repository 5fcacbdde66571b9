"""One scrape run's walk over a site: which pages to fetch, in what order, and when to stop.

A source with listing selectors is walked by them: product links (or the products shown on the
listing) and the next page. Without selectors the walk is automatic: a start page that shows one
product is recorded and that is all; a listing leads to its product cards and its next page, never
to navigation or categories. `follow` asks for a breadth-first walk over every link of the host.

`max_pages` bounds the listing pages (when following: the pages without a product) and `max_products`
the products, so a catalogue of 1,000 products on 50 listing pages is walked whole with the defaults.
"""

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from events.scrapes import Stopped
from workers.fetch import Fetcher, FetchError, Forbidden
from workers.scrape_parse import Item, Listing, auto_listing, classify, parse_detail, parse_listing, same_host_links
from workers.sources import Source

log = logging.getLogger(__name__)

PROGRESS_EVERY = 25  # pages fetched between two progress reports
NOTHING = Listing([], None, [])

Record = Callable[[Item], Awaitable[str]]  # records one product; returns the count it adds to
Report = Callable[[Counter], Awaitable[None]]


def next_page_number(url: str, param: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[param] = str(int(query.get(param, "1")) + 1)
    return urlunsplit(parts._replace(query=urlencode(query)))


class Crawl:
    """Counts: pages (fetched), listing_pages, new / changed / unchanged / errors (products), skipped."""

    def __init__(self, source: Source, fetcher: Fetcher, record: Record, report: Report, *, max_pages: int,
                 max_products: int, follow: bool = False):
        self.source, self.fetcher, self.record, self.report = source, fetcher, record, report
        self.max_pages, self.max_products, self.follow = max_pages, max_products, follow
        self.counts: Counter = Counter()
        self.seen: set[str] = set()
        self.products = 0  # products taken, toward max_products
        self.limit: Stopped | None = None  # the limit that cut the walk short
        self.broken = False  # a listing page failed, so the pages after it were never seen
        self.first_error: str | None = None
        self.first_skip: str | None = None
        self._reported = 0

    async def run(self) -> None:
        await (self._follow() if self.follow else self._walk())

    def stopped(self) -> Stopped:
        return self.limit or ("errors" if self.broken else "exhausted")

    def failure(self) -> str | None:
        """Why the run got nothing useful (nothing fetched, or errors and no product), or None."""
        if self.counts["pages"] == 0:
            return f"nothing fetched: {self.first_error or self.first_skip or 'no start URL'}"
        if self.counts["errors"] and not any(self.counts[k] for k in ("new", "changed", "unchanged")):
            return f"no product recorded, {self.counts['errors']} error(s); the first: {self.first_error}"
        return None

    async def _walk(self) -> None:
        automatic = not (self.source.listing.product_links or self.source.listing.item)
        queue = [(url, automatic) for url in self.source.start_urls]  # (url, whether to ask what it is)
        while queue:
            url, first = queue.pop(0)
            if url in self.seen:
                continue
            if self._at_limit():
                return
            if (html := await self.fetch(url, walk=True)) is None:
                continue
            kind = await self._parse(classify, html, url) if first else "listing"
            if kind == "product":  # a product page: recorded, and nothing to follow
                await self._product_page(html, url)
                continue
            if kind == "unknown":
                log.info("%s is neither a product page nor a listing; --follow crawls the whole host", url)
            self.counts["listing_pages"] += 1
            page = await self._listing(html, url, automatic)
            await self._take(page)
            if following := self._after(page, url):
                queue.append((following, False))
            await self._progress()

    async def _follow(self) -> None:
        """Breadth-first over every link of the host; a page without a product counts as a listing page."""
        queue = deque(self.source.start_urls)
        found = set(queue)
        while queue:
            url = queue.popleft()
            if self._at_limit():
                return
            if (html := await self.fetch(url)) is None:
                continue
            if await self._parse(classify, html, url) == "product":
                await self._product_page(html, url)
            else:
                self.counts["listing_pages"] += 1
            links = await self._parse(same_host_links, html, url, self.source.allowed_host) or []
            queue.extend(link for link in links if link not in found)
            found.update(links)
            await self._progress()

    def _at_limit(self) -> bool:
        """Whether a limit keeps the walk from going on (it is called only when there is more to fetch)."""
        if self.counts["listing_pages"] >= self.max_pages:
            self.limit = "page_limit"
        elif self.products >= self.max_products:
            self.limit = "product_limit"
        else:
            return False
        return True

    async def _listing(self, html: str, url: str, automatic: bool) -> Listing:
        if automatic:
            page = await self._parse(auto_listing, html, url)
        else:
            page = await self._parse(parse_listing, html, url, self.source.listing, self.source.currency)
        return page or NOTHING

    def _after(self, page: Listing, url: str) -> str | None:
        if self.source.page_param:  # the first page without products ends the walk
            return next_page_number(url, self.source.page_param) if page.items or page.product_links else None
        return page.next_page

    async def _take(self, page: Listing) -> None:
        for item in page.items:
            await self.keep(item)
        links = [u for u in page.product_links if u not in self.seen]
        room = max(self.max_products - self.products, 0)
        if len(links) > room:
            self.limit = "product_limit"
        await asyncio.gather(*(self.detail(u) for u in links[:room]))

    async def detail(self, url: str) -> None:
        if (html := await self.fetch(url)) is not None:
            await self._product_page(html, url)

    async def _product_page(self, html: str, url: str) -> None:
        item = await self._parse(parse_detail, html, url, self.source.detail, self.source.currency)
        if item is None:
            self._error(f"no product found at {url}")
            return
        await self.keep(item)

    async def keep(self, item: Item) -> None:
        if self.products >= self.max_products:
            self.limit = "product_limit"
            return
        self.products += 1
        try:
            outcome = await self.record(item)
        except Exception:  # one odd page must not end the run
            log.exception("cannot record %s", item.url)
            outcome = "errors"
        if outcome == "errors":
            self.first_error = self.first_error or f"no usable product at {item.url}"
        self.counts[outcome] += 1

    async def fetch(self, url: str, walk: bool = False) -> str | None:
        """The page, or None if it is forbidden or failed; `walk`: a listing, whose loss cuts the walk."""
        self.seen.add(url)
        try:
            html = await self.fetcher.get(url)
        except Forbidden as exc:
            log.info("skips %s", exc)
            self.counts["skipped"] += 1
            self.first_skip = self.first_skip or str(exc)
            return None
        except FetchError as exc:
            log.warning("%s", exc)
            self._error(str(exc))
            self.broken |= walk
            return None
        self.counts["pages"] += 1
        return html

    def _error(self, what: str) -> None:
        self.counts["errors"] += 1
        self.first_error = self.first_error or what

    async def _parse(self, parse, html: str, url: str, *args):
        """`parse(html, url, *args)` in a thread (parsing is CPU work: the event loop keeps fetching and
        answering the broker's heartbeats meanwhile); None if the page breaks the parser."""
        try:
            return await asyncio.to_thread(parse, html, url, *args)
        except Exception:
            log.exception("cannot parse %s", url)
            return None

    async def _progress(self) -> None:
        if self.counts["pages"] - self._reported >= PROGRESS_EVERY:
            self._reported = self.counts["pages"]
            await self.report(self.counts)
