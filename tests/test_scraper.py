"""End to end: a scrape request published on the real broker, a local shop site, the read table."""

import asyncio
import json
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import aio_pika
import aiohttp.web
import pytest

from tests.shop_pages import SAVED, products
from tests.support import ADMIN_DATABASE_URL, account, bearer, eventually, free_port  # noqa: F401
from workers import topology
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


class TeaShop:
    """The saved pages of tests/fixtures/shop, served as they are; every path asked for is in `hits`."""

    def __init__(self):
        self.hits: list[str] = []
        self.app = aiohttp.web.Application()
        self.app.router.add_get("/{path:.*}", self.page)

    async def page(self, request):
        self.hits.append(request.path_qs)
        path = (SAVED / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(SAVED) or not path.is_file():
            raise aiohttp.web.HTTPNotFound()
        kind = "text/plain" if path.suffix == ".txt" else "text/html"
        return aiohttp.web.Response(text=path.read_text(encoding="utf-8"), content_type=kind)


async def serving(app: aiohttp.web.Application):
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def shop():
    s = Shop()
    runner, s.base = await serving(s.app)
    yield s
    s.never.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
async def teashop():
    s = TeaShop()
    runner, s.base = await serving(s.app)
    yield s
    await runner.cleanup()


@pytest.fixture(scope="module")
def sources_file(shop, teashop, tmp_path_factory) -> Path:
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

[sources.teashop]  # no listing selectors: automatic
start_urls = ["{teashop.base}/shop/page-1.html"]
allowed_host = "127.0.0.1"
currency = "EUR"
delay_seconds = 0.0
""")
    return config


@pytest.fixture(scope="module")
async def scraper(services, sources_file, system):
    config = sources_file
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


async def outcome(pool, request_id: uuid.UUID) -> tuple[str, dict] | None:
    """The type and data of the request's last event, once its run finished or failed."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT type, data FROM events WHERE correlation_id = %s"
                                 " AND type IN ('scrape.finished', 'scrape.failed')", (request_id,))
        return await cur.fetchone()


async def scrape(services, pool, **fields) -> tuple[str, dict]:
    """Publish a request with these fields and a new request id; wait for its run's outcome."""
    request = ScrapeRequest(request_id=uuid.uuid4(), **fields)
    await publish_request(services.rabbitmq_url, request)
    return await eventually(lambda: outcome(pool, request.request_id), timeout=60, what="the run's outcome")


async def scrape_once(services, pool, **fields) -> dict:
    kind, run = await scrape(services, pool, **({"source": "testshop"} | fields))
    assert kind == "scrape.finished", run
    return run


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
    run = await scrape_once(services, pool, source="gantoum", url=f"{shop.base}/gantoum/search?pageId=1")
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


async def dead_letters(services, ids: set[str]) -> dict[str, aio_pika.abc.AbstractIncomingMessage]:
    """Takes what scraper.requests.dlq holds until the messages with these ids are among it; returns those.
    Acks all it takes, so the tests leave the dead-letter queue empty behind them."""
    found = {}
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(topology.dlq(topology.SCRAPER_QUEUE), passive=True)

        async def all_there():
            while (message := await dlq.get(fail=False)) is not None:
                await message.ack()
                found[message.message_id] = message
            return ids <= found.keys()
        await eventually(all_there, timeout=60, what=f"{sorted(ids - found.keys())} in scraper.requests.dlq")
    return {i: found[i] for i in ids}


async def test_an_unknown_source_is_dead_lettered_with_the_reason(services, pool, scraper):
    request_id = await publish_request(services.rabbitmq_url, ScrapeRequest(source="no-such-shop"))
    message = (await dead_letters(services, {str(request_id)}))[str(request_id)]
    assert "no-such-shop" in message.headers["x-error"]
    kind, data = await outcome(pool, request_id)  # recorded too, so `orders scrape --wait` learns of it
    assert kind == "scrape.failed" and "unknown source 'no-such-shop'" in data["reason"]


def test_orders_scrape_needs_a_source_or_a_url(services):
    result = subprocess.run([sys.executable, "-m", "workers.cli", "scrape"], env=services.env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "--source" in result.stderr


# ------------------------------------------------------------------------------ limits and start URLs

async def test_a_listing_of_64_products_is_scraped_whole_with_the_default_limits(services, pool, teashop, scraper):
    kind, run = await scrape(services, pool, source="teashop")
    assert kind == "scrape.finished"
    assert (run["products_new"], run["errors"], run["stopped"]) == (64, 0, "exhausted")
    # 68 pages fetched, more than max_pages (50): that counts listing pages, of which there are 4.
    assert (run["listing_pages"], run["pages"]) == (4, 68)


async def test_a_product_page_url_takes_one_fetch_and_records_its_product(services, pool, teashop, scraper):
    teashop.hits.clear()
    kind, run = await scrape(services, pool, url=f"{teashop.base}/product/darjeeling-classic.html")
    assert kind == "scrape.finished" and teashop.hits == ["/robots.txt", "/product/darjeeling-classic.html"]
    assert (run["source"], run["products_new"], run["pages"], run["listing_pages"]) == ("127.0.0.1", 1, 1, 0)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT data FROM events WHERE type = 'product.scraped' AND data->>'url' = %s"
                                 " AND data->>'source' = '127.0.0.1'", (f"{teashop.base}/product/darjeeling-classic.html",))
        [(product,)] = await cur.fetchall()
    assert (product["name"], product["price"], product["stock"]) == ("Darjeeling Classic", "34.80", 7)


async def test_a_listing_url_leads_to_its_products_and_next_pages_only(services, pool, teashop, scraper):
    teashop.hits.clear()
    kind, run = await scrape(services, pool, source="teashop", url=f"{teashop.base}/shop/page-3.html")
    assert kind == "scrape.finished" and run["stopped"] == "exhausted"
    listed = {f"/product/{p['slug']}.html" for p in products()[32:]}
    assert set(teashop.hits) == {"/robots.txt", "/shop/page-3.html", "/shop/page-4.html"} | listed
    assert len(teashop.hits) == 35  # no page twice; no category, navigation, cart or "Previous" page
    assert run["products_new"] + run["products_unchanged"] == 32


async def test_follow_crawls_the_hosts_links_breadth_first_within_the_limits(services, pool, teashop, scraper):
    teashop.hits.clear()
    kind, run = await scrape(services, pool, source="teashop", url=f"{teashop.base}/index.html", follow=True,
                             max_pages=3)
    assert kind == "scrape.finished" and (run["stopped"], run["listing_pages"]) == ("page_limit", 3)
    # The home page's links in page order: itself (the logo, "Home"), "Shop", "About", ...
    assert teashop.hits == ["/robots.txt", "/index.html", "/shop/page-1.html", "/about.html"]
    kind, run = await scrape(services, pool, source="teashop", url=f"{teashop.base}/index.html", follow=True,
                             max_products=2)
    assert kind == "scrape.finished" and run["stopped"] == "product_limit"
    assert run["products_new"] + run["products_unchanged"] == 2
    assert "/category/green-tea.html" in teashop.hits  # not a listing's product or next page: followed all the same


async def test_limits_cut_a_run_short_and_it_says_which(services, pool, teashop, scraper):
    kind, run = await scrape(services, pool, source="teashop", max_pages=2)
    assert (kind, run["stopped"], run["listing_pages"], run["pages"]) == ("scrape.finished", "page_limit", 2, 34)
    kind, run = await scrape(services, pool, source="teashop", max_products=20)
    assert (kind, run["stopped"], run["pages"]) == ("scrape.finished", "product_limit", 22)


# ------------------------------------------------------------------------------------------ failed runs

async def test_a_run_whose_every_fetch_fails_records_scrape_failed_and_is_dead_lettered(services, pool, scraper):
    unreachable = f"http://127.0.0.1:{free_port()}/shop/"  # nobody listens there
    request_id = uuid.uuid4()
    await publish_request(services.rabbitmq_url, ScrapeRequest(url=unreachable, request_id=request_id))
    message = (await dead_letters(services, {str(request_id)}))[str(request_id)]
    kind, run = await outcome(pool, request_id)
    assert kind == "scrape.failed" and run["reason"].startswith(f"nothing fetched: {unreachable}")
    assert (run["pages"], run["errors"]) == (0, 1)
    assert message.headers["x-error"] == run["reason"]
    assert json.loads(message.body) == {"url": unreachable, "request_id": str(request_id)}


async def test_a_run_that_robots_txt_forbids_entirely_fails(services, pool, shop, scraper):
    request_id = uuid.uuid4()
    await publish_request(services.rabbitmq_url, ScrapeRequest(source="testshop", url=f"{shop.base}/private/1.html",
                                                               request_id=request_id))
    message = (await dead_letters(services, {str(request_id)}))[str(request_id)]
    kind, run = await outcome(pool, request_id)
    assert kind == "scrape.failed" and run["reason"] == f"nothing fetched: robots.txt forbids {shop.base}/private/1.html"
    assert message.headers["x-error"] == run["reason"]


# ------------------------------------------------------------------------------------- poison requests

POISON = {
    "not JSON, said to be JSON": (b"{not json", "application/json", "malformed"),
    "not JSON, no content type": (b"{not json", None, "malformed"),
    "another content type": (b"\x00\x01\x02", "application/octet-stream", "malformed"),
    "a JSON array": (b'[{"source": "teashop"}]', "application/json", "got `array`"),
    "an unknown field": (b'{"source": "teashop", "pages": 3}', "application/json", "unknown field `pages`"),
    "a wrong type": (b'{"source": "teashop", "max_pages": "ten"}', "application/json", "at `$.max_pages`"),
    "a limit below 1": (b'{"source": "teashop", "max_products": 0}', "application/json", ">= 1"),
    "a 1 MB body": (b'{"source": "' + b"x" * 1_000_000 + b'"}', "application/json", "1000014 bytes"),
}


async def test_poison_requests_are_dead_lettered_at_once_and_the_next_request_runs(services, pool, teashop, scraper):
    ids = {name: uuid.uuid4().hex for name in POISON}
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(topology.COMMANDS)
        for name, (body, content_type, _) in POISON.items():
            await commands.publish(aio_pika.Message(body, content_type=content_type, message_id=ids[name]),
                                   routing_key=topology.SCRAPE_REQUESTED)
    kind, _ = await scrape(services, pool, url=f"{teashop.base}/product/sencha-classic.html")
    assert kind == "scrape.finished"  # published after them all, and run
    dead = await dead_letters(services, set(ids.values()))
    for name, (body, _, reason) in POISON.items():
        assert reason in dead[ids[name]].headers["x-error"], name
        assert dead[ids[name]].body == body, name


async def test_a_crash_while_running_dead_letters_the_request_and_the_queue_flows(services, pool, teashop, scraper,
                                                                                monkeypatch):
    async def crash(request):
        raise RuntimeError("the scraper broke")
    monkeypatch.setattr(scraper.scraper, "run", crash)
    request_id = await publish_request(services.rabbitmq_url, ScrapeRequest(source="teashop"))
    message = (await dead_letters(services, {str(request_id)}))[str(request_id)]
    assert message.headers["x-error"] == "RuntimeError: the scraper broke"
    monkeypatch.undo()
    kind, _ = await scrape(services, pool, url=f"{teashop.base}/product/sencha-classic.html")
    assert kind == "scrape.finished"


# ---------------------------------------------------------------------------------------- orders scrape

@pytest.mark.parametrize("args, named", [
    (["--source", "nope"], "argument --source: unknown source 'nope'"),
    (["--url", "notaurl"], "argument --url: not an http(s) URL with a host: 'notaurl'"),
    (["--url", "ftp://x"], "argument --url: not an http(s) URL with a host: 'ftp://x'"),
    (["--source", "gantoum", "--max-pages", "0"], "argument --max-pages: must be at least 1, got 0"),
    (["--source", "gantoum", "--max-pages", "-3"], "argument --max-pages: must be at least 1, got -3"),
    (["--source", "gantoum", "--max-products", "0"], "argument --max-products: must be at least 1, got 0"),
])
def test_orders_scrape_refuses_bad_input_before_publishing(services, args, named):
    result = subprocess.run([sys.executable, "-m", "workers.cli", "scrape", *args], env=services.env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1  # one line, no usage block
    assert result.stderr.startswith(f"orders scrape: {named}")
    assert result.stdout == ""


async def orders_scrape(services, sources_file, *args) -> tuple[int, str, str]:
    """`orders scrape ...` as a subprocess, without blocking this event loop (the worker runs in it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "scrape", *args, env=services.env(SCRAPER_SOURCES=str(sources_file)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_orders_scrape_prints_the_request_id_and_wait_follows_the_run(services, pool, sources_file, scraper):
    code, out, err = await orders_scrape(services, sources_file, "--source", "teashop", "--max-products", "30",
                                         "--wait")
    assert code == 0, err
    lines = out.splitlines()
    request_id = re.fullmatch(r"published scrape request ([0-9a-f-]{36}) .*", lines[0]).group(1)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT data FROM events WHERE type = 'scrape.started' AND correlation_id = %s",
                                 (request_id,))
        [(started,)] = await cur.fetchall()
    assert started["request_id"] == request_id
    assert lines[1].startswith(f"run {started['run_id']} started: teashop from ")
    assert re.fullmatch(r"  32 pages \(2 listing\), products \d+ new, 0 changed, \d+ unchanged, 0 errors", lines[2])
    assert re.fullmatch(r"finished \(product_limit\): 32 pages \(2 listing\), .* 0 errors", lines[-1])


async def test_orders_scrape_without_wait_publishes_and_says_how_to_find_the_run(services, pool, sources_file,
                                                                                teashop, scraper):
    code, out, _ = await orders_scrape(services, sources_file, "--url", f"{teashop.base}/product/sencha-classic.html")
    request_id = re.fullmatch(r"published scrape request ([0-9a-f-]{36}) .*", out.splitlines()[0]).group(1)
    assert code == 0 and f"correlation_id={request_id}" in out
    assert (await eventually(lambda: outcome(pool, uuid.UUID(request_id)), what="the run"))[0] == "scrape.finished"


async def test_orders_scrape_wait_exits_non_zero_when_the_run_failed(services, pool, sources_file, shop, scraper):
    code, out, _ = await orders_scrape(services, sources_file, "--source", "testshop", "--url",
                                       f"{shop.base}/private/2.html", "--wait")
    request_id = re.fullmatch(r"published scrape request ([0-9a-f-]{36}) .*", out.splitlines()[0]).group(1)
    assert code == 1
    assert out.splitlines()[-1] == (f"failed: nothing fetched: robots.txt forbids {shop.base}/private/2.html; 0 pages"
                                    " (0 listing), products 0 new, 0 changed, 0 unchanged, 0 errors;"
                                    " the request is in scraper.requests.dlq")
    await dead_letters(services, {request_id})


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
