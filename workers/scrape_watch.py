"""`orders scrape --wait`: follows a request's run in the event store until it finishes or fails.

A run's events carry the request id as their correlation id (an indexed column), so each poll is one
small query and there is no subscription to lose. A request no worker takes, or a run that goes
silent (its worker stopped mid-run; the request is then delivered again and a new run starts), ends
the wait after `patience` seconds without news. Progress comes from the run's `scrape.progressed`.
"""

import asyncio
import time
import uuid
from collections.abc import Callable

import psycopg

from events import scrapes
from events.base import decode

POLL_SECONDS = 0.5

_EVENTS = """SELECT event_id, type, data::text FROM events
WHERE correlation_id = %s AND type LIKE 'scrape.%%' ORDER BY position"""


async def watch(database_url: str, request_id: uuid.UUID, say: Callable[[str], None],
                patience: float = 300.0) -> scrapes.ScrapeFinished | scrapes.ScrapeFailed | None:
    """Says each of the run's events as it is recorded; returns the last one, or None when no news came
    for `patience` seconds."""
    said: set[uuid.UUID] = set()
    quiet_since = time.monotonic()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while time.monotonic() - quiet_since < patience:
            cur = await conn.execute(_EVENTS, (request_id,))
            for event_id, kind, data in await cur.fetchall():
                if event_id in said:
                    continue
                said.add(event_id)
                quiet_since = time.monotonic()
                event = decode(kind, data.encode())
                say(describe(event))
                if isinstance(event, scrapes.ScrapeFinished | scrapes.ScrapeFailed):
                    return event
            await asyncio.sleep(POLL_SECONDS)
    return None


def describe(event) -> str:
    match event:
        case scrapes.ScrapeStarted():
            how = "following every link of the host" if event.follow else "listing pages and their products"
            return (f"run {event.run_id} started: {event.source} from {', '.join(event.start_urls)} ({how}; at most"
                    f" {event.max_pages} listing pages, {event.max_products} products)")
        case scrapes.ScrapeProgressed():
            return f"  {_counts(event)}"
        case scrapes.ScrapeFinished():
            return f"finished ({event.stopped}): {_counts(event)}"
        case scrapes.ScrapeFailed():
            return f"failed: {event.reason}; {_counts(event)}; the request is in scraper.requests.dlq"
    return event.type


def _counts(e) -> str:
    return (f"{e.pages} pages ({e.listing_pages} listing), products {e.products_new} new, {e.products_changed}"
            f" changed, {e.products_unchanged} unchanged, {e.errors} errors")
