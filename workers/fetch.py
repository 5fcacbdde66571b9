"""Polite HTTP for the scraper: robots.txt (protego), at most N requests at a time per host with a
delay between them, timeouts, retries with backoff on 429 / 5xx honouring Retry-After, one host only."""

import asyncio
import logging
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from protego import Protego

log = logging.getLogger(__name__)

USER_AGENT = "orders-scraper/0.1 (+https://github.com/orders-backend; scraper for the orders catalog)"
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


class FetchError(Exception):
    pass


class Forbidden(FetchError):
    """robots.txt or the allowed host rules this URL out."""


class Fetcher:
    def __init__(self, session: aiohttp.ClientSession, allowed_host: str, *, concurrency: int = 2,
                 delay: float = 1.0, timeout: float = 10.0, retries: int = 3, max_retry_after: float = 30.0):
        self.session, self.allowed_host = session, allowed_host
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.delay, self.retries, self.max_retry_after = delay, retries, max_retry_after
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._next_start = 0.0
        self._pace = asyncio.Lock()
        self._robots: Protego | None = None

    def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.hostname == self.allowed_host

    async def _robots_for(self, url: str) -> Protego:
        if self._robots is None:
            parts = urlsplit(url)
            robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
            try:
                status, text = await self._get(robots_url)
                self._robots = Protego.parse(text if status == 200 else "")
            except FetchError:
                self._robots = Protego.parse("")  # unreachable robots.txt: nothing is known to be forbidden
        return self._robots

    async def get(self, url: str) -> str:
        """The page's text; raises Forbidden or FetchError (after the retries)."""
        if not self.allowed(url):
            raise Forbidden(f"{url} is outside {self.allowed_host}")
        if not (await self._robots_for(url)).can_fetch(url, USER_AGENT):
            raise Forbidden(f"robots.txt forbids {url}")
        delay = 1.0
        for attempt in range(self.retries + 1):
            try:
                status, text, retry_after = await self._get(url, with_retry_after=True)
            except Forbidden:
                raise  # not a passing failure: never retried
            except FetchError:
                if attempt == self.retries:
                    raise
                status, retry_after = None, None
            else:
                if status == 200:
                    return text
                if status not in RETRY_STATUSES or attempt == self.retries:
                    raise FetchError(f"{url} answered {status}")
            wait = min(retry_after if retry_after is not None else delay, self.max_retry_after)
            log.info("retrying %s in %.1fs (status %s)", url, wait, status)
            await asyncio.sleep(wait)
            delay *= 2
        raise FetchError(url)  # not reached

    async def _get(self, url: str, with_retry_after: bool = False):
        """One GET, following redirects ourselves so that no request ever leaves the allowed host."""
        for _ in range(MAX_REDIRECTS + 1):
            status, text, retry_after, location = await self._get_once(url)
            if location is None:
                return (status, text, retry_after) if with_retry_after else (status, text)
            url = urljoin(url, location)
            if not self.allowed(url):
                raise Forbidden(f"a redirect leads outside {self.allowed_host}: {url}")
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def _get_once(self, url: str):
        async with self.slots:
            async with self._pace:  # requests to the host start at least `delay` apart
                wait = self._next_start - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._next_start = time.monotonic() + self.delay
            try:
                async with self.session.get(url, timeout=self.timeout, allow_redirects=False,
                                            headers={"User-Agent": USER_AGENT}) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        return resp.status, "", None, resp.headers["Location"]
                    text = await resp.text(errors="replace")
                    return resp.status, text, _seconds(resp.headers.get("Retry-After")), None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise FetchError(f"{url}: {exc!r}") from None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
