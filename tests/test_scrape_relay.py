"""Scraped products reach the read table at once, not at the relay's next poll.

A module of its own: the relay here polls every 30 s, so only a wake-up can bring a product through in
time, and no other relay (tests/test_scraper.py runs one polling every 0.2 s) may be active meanwhile.
"""

import asyncio

import aiohttp.web
import pytest

from events import store
from projections import registry
from tests.shop_pages import SAVED
from tests.support import eventually, free_port
from workers.consumer import ProjectionConsumer
from workers.relay import CHECKPOINT, Relay
from workers.scraper import Scraper, ScrapeRequest
from workers.sources import Source

POLL_SECONDS = 30
LISTING = """<h1>Teas</h1><ul>
<li><a href="/product/sencha-classic.html">Sencha Classic</a> <span class="price">€6.00</span></li>
<li><a href="/product/gyokuro-classic.html">Gyokuro Classic</a> <span class="price">€13.45</span></li></ul>"""


class GatedShop:
    """A listing of two products whose pages are served only when the test opens their gate."""

    def __init__(self):
        self.gates = {"sencha-classic": asyncio.Event(), "gyokuro-classic": asyncio.Event()}
        self.app = aiohttp.web.Application()
        self.app.router.add_get("/robots.txt", self.robots)
        self.app.router.add_get("/teas.html", self.listing)
        self.app.router.add_get("/product/{slug}.html", self.product)

    async def robots(self, request):
        return aiohttp.web.Response(text="User-agent: *\nAllow: /\n")

    async def listing(self, request):
        return aiohttp.web.Response(text=LISTING, content_type="text/html")

    async def product(self, request):
        slug = request.match_info["slug"]
        await self.gates[slug].wait()
        return aiohttp.web.Response(text=(SAVED / "product" / f"{slug}.html").read_text(encoding="utf-8"),
                                    content_type="text/html")


@pytest.fixture(scope="module")
async def slow_relay(services):
    """The relay, polling only every 30 s, and the catalog projection."""
    consumer = ProjectionConsumer(registry()["catalog"], services.database_url, services.rabbitmq_url)
    await consumer.start()
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=POLL_SECONDS)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    yield relay
    stop.set()
    await task
    await consumer.stop()


async def started_and_relay_idle(pool) -> bool:
    """Whether the run has started and the relay has published everything since (so it waits for its poll)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM events WHERE type = 'scrape.started' AND data->>'source' = 'gated'")
        return await cur.fetchone() is not None and await store.load_checkpoint(conn, CHECKPOINT) >= await store.head(conn)


async def in_products(pool, name: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM products WHERE source = 'gated' AND name = %s", (name,))
        return await cur.fetchone() is not None


async def test_a_scraped_product_reaches_the_read_table_long_before_the_relays_poll(pool, slow_relay):
    shop = GatedShop()
    runner = aiohttp.web.AppRunner(shop.app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    source = Source(name="gated", start_urls=[f"http://127.0.0.1:{port}/teas.html"], allowed_host="127.0.0.1",
                    currency="EUR", delay_seconds=0.0)
    run = asyncio.create_task(Scraper(pool, {"gated": source}).run(ScrapeRequest(source="gated")))
    try:
        await eventually(lambda: started_and_relay_idle(pool), what="the relay to publish scrape.started and idle")
        shop.gates["sencha-classic"].set()
        # The run goes on (the second product's page is held), so nothing else wakes the relay.
        await eventually(lambda: in_products(pool, "Sencha Classic"), timeout=POLL_SECONDS / 6,
                         what="the product in the read table, well before the relay's next poll")
        assert not run.done()
        shop.gates["gyokuro-classic"].set()
        finished = await asyncio.wait_for(run, 30)
        assert (finished.products_new + finished.products_unchanged, finished.stopped) == (2, "exhausted")
    finally:
        for gate in shop.gates.values():
            gate.set()
        await runner.cleanup()
