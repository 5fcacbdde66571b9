"""End to end: a scrape request published on the real broker, a local shop site, the read table."""

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp.web
import pytest

from tests.support import ADMIN_DATABASE_URL, account, bearer, eventually, free_port  # noqa: F401
from workers.scrape_worker import ScraperWorker, publish_request
from workers.scraper import ScrapeRequest

FIXTURES = Path(__file__).parent / "fixtures" / "scrape"
PRODUCTS = {n: {"name": f"Shop item {n}", "price": f"{10 + n}.50", "sku": f"SHOP-{n}"} for n in range(1, 7)}


class Shop:
    """Listing pages with pagination, JSON-LD detail pages, a robots.txt that forbids /private/, a page
    that answers 503 once and then 200, a page that never answers, and a copy of the Gantoum listing."""

    def __init__(self):
        self.prices = {n: p["price"] for n, p in PRODUCTS.items()} | {"flaky": "99.00"}
        self.flaky_calls = 0
        self.never = asyncio.Event()
        self.hits: list[str] = []
        app = aiohttp.web.Application()
        app.router.add_get("/robots.txt", self.robots)
        app.router.add_get("/shop/page-{n}.html", self.listing)
        app.router.add_get("/shop/p/{n}.html", self.detail)
        app.router.add_get("/private/{n}.html", self.detail)
        app.router.add_get("/gantoum/search", self.gantoum)
        self.app = app

    async def robots(self, request):
        return aiohttp.web.Response(text="User-agent: *\nDisallow: /private/\n")

    async def listing(self, request):
        self.hits.append(request.path)
        n = int(request.match_info["n"])
        links = {1: ["1", "2", "3", "flaky", "slow", "../private/secret", "away", "absurd"], 2: ["4", "5", "6"]}[n]
        anchors = "".join(f'<a class="product" href="p/{x}.html">{x}</a>' for x in links)
        nxt = '<a class="next" href="page-2.html">next</a>' if n == 1 else ""
        return aiohttp.web.Response(text=f"<html><body>{anchors}{nxt}</body></html>", content_type="text/html")

    async def gantoum(self, request):
        """The saved listing (three items, one "ناموجود" instead of a price) on page 1, the empty page after."""
        name = "gantoum_listing" if request.query.get("pageId") == "1" else "gantoum_empty"
        return aiohttp.web.Response(text=(FIXTURES / f"{name}.html").read_text(encoding="utf-8"),
                                    content_type="text/html")

    async def detail(self, request):
        self.hits.append(request.path)
        key = request.match_info["n"]
        if key == "away":  # a redirect to another host (same server, other name): must not be followed
            raise aiohttp.web.HTTPFound(f"http://localhost:{request.url.port}/shop/p/elsewhere.html")
        if key == "slow":
            await self.never.wait()
        if key == "flaky":
            self.flaky_calls += 1
            if self.flaky_calls == 1:
                return aiohttp.web.Response(status=503, headers={"Retry-After": "0"})
        info = PRODUCTS.get(int(key)) if key.isdigit() else {"name": f"Item {key}", "sku": f"SHOP-{key}"}
        price = self.prices.get(int(key) if key.isdigit() else key, "1.00")
        if key == "absurd":
            price = "99999999999999.99"  # beyond what a price may be: an error, not the end of the run
        ld = {"@context": "https://schema.org", "@type": "Product", "name": info["name"], "sku": info["sku"],
              "offers": {"@type": "Offer", "price": price, "priceCurrency": "EUR",
                         "availability": "https://schema.org/InStock"}}
        html = (f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head>'
                f'<body><h1>{info["name"]}</h1></body></html>')
        return aiohttp.web.Response(text=html, content_type="text/html")


@pytest.fixture(scope="module")
async def shop():
    s = Shop()
    runner = aiohttp.web.AppRunner(s.app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    s.base = f"http://127.0.0.1:{port}"
    yield s
    s.never.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
async def scraper(services, shop, tmp_path_factory, system):
    config = tmp_path_factory.mktemp("scrape") / "sources.toml"
    config.write_text(f"""
[sources.testshop]
start_urls = ["{shop.base}/shop/page-1.html"]
allowed_host = "127.0.0.1"
currency = "EUR"
delay_seconds = 0.0

[sources.testshop.listing]
product_links = "a.product"
next_page = "a.next"
""")
    worker = ScraperWorker(services.database_url, services.rabbitmq_url, sources_file=str(config), timeout=1.0,
                           retries=1)
    await worker.start()
    yield worker
    await worker.stop()


async def finished_runs(pool, source: str = "testshop") -> list[dict]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT data FROM events WHERE type = 'scrape.finished' AND data->>'source' = %s"
                                 " ORDER BY position", (source,))
        return [r[0] for r in await cur.fetchall()]


async def scraped_events(pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM events WHERE type = 'product.scraped' AND data->>'source' = 'testshop'")
        return (await cur.fetchone())[0]


async def scrape_once(services, pool, request: ScrapeRequest | None = None) -> dict:
    request = request or ScrapeRequest(source="testshop")
    before = len(await finished_runs(pool, request.source))
    await publish_request(services.rabbitmq_url, request)

    async def done():
        runs = await finished_runs(pool, request.source)
        return runs[-1] if len(runs) > before else None
    return await eventually(done, timeout=60, what="the scrape run to finish")


async def test_a_published_request_scrapes_the_site_into_the_catalog(services, pool, shop, scraper, system):
    run = await scrape_once(services, pool)
    assert run["products_new"] == 7  # six products and the page that answered 503 first
    assert run["errors"] >= 1  # the page that never answers
    assert "/private/secret.html" not in shop.hits  # robots.txt
    assert "/shop/p/elsewhere.html" not in shop.hits  # never leaves the host, not even through a redirect
    assert shop.flaky_calls == 2

    async def listed():
        r = await system.get("/products", params={"source": "testshop", "limit": 100})
        return r.json()["items"] if len(r.json()["items"]) == 7 else None
    items = await eventually(listed, what="the scraped products in GET /products")
    by_sku = {i["sku"]: i for i in items}
    assert by_sku["SHOP-3"]["price"] == "13.50" and by_sku["SHOP-3"]["currency"] == "EUR"
    assert by_sku["SHOP-3"]["source"] == "testshop" and by_sku["SHOP-3"]["seller_id"] is None
    assert by_sku["SHOP-3"]["stock"] > 0


async def test_an_item_without_a_usable_price_counts_as_an_error_of_the_run(services, pool, shop, scraper):
    # The shipped gantoum source's rules on the local copy of its listing.
    run = await scrape_once(services, pool, ScrapeRequest(source="gantoum", url=f"{shop.base}/gantoum/search?pageId=1"))
    assert run["pages"] == 2 and run["products_new"] == 2
    assert run["errors"] == 1  # the honey, "ناموجود" (unavailable) where the price would be


async def test_a_second_identical_run_records_no_product_events(services, pool, shop, scraper):
    before = await scraped_events(pool)
    run = await scrape_once(services, pool)
    assert run["products_new"] == 0 and run["products_changed"] == 0 and run["products_unchanged"] == 7
    assert await scraped_events(pool) == before


async def test_a_price_change_on_the_site_records_exactly_one_event(services, pool, shop, scraper, system):
    before = await scraped_events(pool)
    shop.prices[3] = "12.25"
    run = await scrape_once(services, pool)
    assert run["products_changed"] == 1 and run["products_unchanged"] == 6
    assert await scraped_events(pool) == before + 1

    async def repriced():
        r = await system.get("/products", params={"source": "testshop", "q": "item", "limit": 100})
        return any(i["sku"] == "SHOP-3" and i["price"] == "12.25" for i in r.json()["items"])
    await eventually(repriced, what="the new price in the read table")


async def test_a_scraped_product_can_be_ordered_like_any_other(pool, scraper, system):
    buyer = await account(system, "buyer")
    items = (await system.get("/products", params={"source": "testshop", "limit": 1})).json()["items"]
    product = items[0]
    r = await system.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product["id"], "quantity": 1}],
        "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "DE"}})
    assert r.status_code == 201, r.text
    assert Decimal(r.json()["total"]) == Decimal(product["price"])
    assert (await system.get(f"/products/{product['id']}")).json()["stock"] == product["stock"] - 1


async def test_an_unknown_source_is_dead_lettered_with_the_reason(services, scraper):
    import aio_pika

    await publish_request(services.rabbitmq_url, ScrapeRequest(source="no-such-shop"))
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue("scraper.requests.dlq", passive=True)

        async def dead():
            return await dlq.get(fail=False)
        message = await eventually(dead, what="the request in scraper.requests.dlq")
        await message.ack()
    assert "no-such-shop" in message.headers["x-error"]


def test_orders_scrape_needs_a_source_or_a_url(services):
    result = subprocess.run([sys.executable, "-m", "workers.cli", "scrape"], env=services.env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--source" in result.stderr




async def test_a_sources_schedule_publishes_requests_that_the_worker_runs(services, pool, scraper):
    before = len(await finished_runs(pool))
    stop = asyncio.Event()
    schedule = asyncio.create_task(scraper._schedule("testshop", 0.01, stop))  # every 0.6 s
    try:
        async def ran():
            return len(await finished_runs(pool)) > before
        await eventually(ran, timeout=60, what="a scheduled scrape")
    finally:
        stop.set()
        await schedule
