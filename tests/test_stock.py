"""Stock has one owner per meaning: on-hand (the seller's or the scraped site's word) and reserved (what
open orders hold). Scrapes, orders, shipments and expiries each move only their own figure."""

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from events import orders, products
from events.base import Meta
from projections.rebuild import rebuild
from tests.support import account, bearer, eventually
from workers.expiry import Expiry
from workers.scrape_parse import Item
from workers.scraper import Scraper
from workers.sources import Source

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
           "country": "GB"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fold(*events) -> products.Product:
    state = None
    for version, e in enumerate(events, start=1):
        state = products.evolve(state, e, version, T0)
    return state


PID, OID = uuid.uuid4(), uuid.uuid4()


def scraped(stock: int) -> products.ProductScraped:
    return products.ProductScraped(product_id=PID, source="shop", url="http://shop/p/1", run_id=uuid.uuid4(),
                                   name="Mug", price=Decimal("5.00"), currency="EUR", stock=stock, scraped_at=T0)


def test_a_rescrape_sets_on_hand_and_leaves_reservations_alone():
    p = fold(scraped(20), products.StockReserved(product_id=PID, order_id=OID, quantity=2), scraped(20))
    assert (p.on_hand, p.reserved, p.stock) == (20, 2, 18)
    p = fold(scraped(20), products.StockReserved(product_id=PID, order_id=OID, quantity=2), scraped(25),
             products.StockReleased(product_id=PID, order_id=OID, quantity=2))
    assert (p.on_hand, p.reserved, p.stock) == (25, 0, 25)


def test_available_stock_never_goes_below_zero_when_the_site_sells_out():
    p = fold(scraped(20), products.StockReserved(product_id=PID, order_id=OID, quantity=5), scraped(3))
    assert (p.on_hand, p.reserved, p.stock) == (3, 5, 0)
    with pytest.raises(Exception, match="not enough stock"):
        products.reserve(p, PID, uuid.uuid4(), 1)
    shipped = products.evolve(p, products.StockShipped(product_id=PID, order_id=OID, quantity=5), 4, T0)
    assert (shipped.on_hand, shipped.reserved, shipped.stock) == (0, 0, 0)


def test_a_shipment_takes_its_units_out_of_on_hand_and_reserved():
    p = fold(scraped(10), products.StockReserved(product_id=PID, order_id=OID, quantity=4),
             products.StockShipped(product_id=PID, order_id=OID, quantity=4))
    assert (p.on_hand, p.reserved, p.stock) == (6, 0, 6)


def test_an_order_expires_only_when_pending_and_past_its_deadline():
    placed = orders.OrderPlaced(order_id=OID, buyer_id=uuid.uuid4(), lines=[], total=Decimal("1.00"), currency="EUR",
                                shipping_address=orders.Address(name="A", line1="B", city="C", postal_code="1",
                                                                country="GB"), placed_at=T0)
    order = orders.evolve(None, placed, 1, T0)
    timeout = timedelta(minutes=30)
    with pytest.raises(Exception, match="due at"):
        orders.expire(order, T0 + timedelta(minutes=29), timeout)
    [expired] = orders.expire(order, T0 + timedelta(minutes=30), timeout)
    assert orders.evolve(order, expired, 2, T0).status == "expired"
    paid = orders.evolve(order, orders.OrderPaid(order_id=OID, amount=Decimal("1.00"), reference="r"), 2, T0)
    with pytest.raises(Exception, match="the order is paid"):
        orders.expire(paid, T0 + timedelta(hours=2), timeout)


# Real services from here on.

SOURCE = Source(name="stock-shop", start_urls=[], allowed_host="shop.example", currency="EUR")


@pytest.fixture(scope="module")
async def client(system):
    return system


async def scrape(pool, sku: str, stock: int) -> str:
    item = Item(url=f"http://shop.example/p/{sku}", name=f"Scraped {sku}", price=Decimal("4.00"), currency="EUR",
                in_stock=True, stock=stock, sku=sku)
    return await Scraper(pool, {SOURCE.name: SOURCE}).record(SOURCE, item, uuid.uuid4(), Meta(actor="test"))


async def scraped_product(client, sku: str) -> dict:
    async def listed():
        r = await client.get("/products", params={"source": SOURCE.name, "q": sku, "limit": 1})
        return r.json()["items"][0] if r.json()["items"] else None
    return await eventually(listed, what=f"scraped product {sku} in the catalog")


async def product(client, product_id: str) -> dict:
    return (await client.get(f"/products/{product_id}")).json()


async def place(client, buyer, product_id: str, quantity: int):
    return await client.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product_id, "quantity": quantity}], "shipping_address": ADDRESS})


async def caught_up(pool) -> None:
    """Wait until the catalog read table holds every product's newest version."""
    async def equal():
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM product_state s LEFT JOIN products p ON p.id = s.product_id"
                                     " WHERE p.version IS DISTINCT FROM s.version")
            return (await cur.fetchone())[0] == 0
    await eventually(equal, what="the catalog projection to catch up")


async def test_scrape_reserve_rescrape_cancel_keeps_the_documented_stock_and_a_rebuild_agrees(
        client, pool, services):
    sku = f"S-{uuid.uuid4().hex[:8]}"
    assert await scrape(pool, sku, 20) == "new"
    p = await scraped_product(client, sku)
    buyer = await account(client, "buyer")
    o = await place(client, buyer, p["id"], 2)
    assert o.status_code == 201, o.text
    assert {k: (await product(client, p["id"]))[k] for k in ("on_hand", "reserved", "stock")} == \
        {"on_hand": 20, "reserved": 2, "stock": 18}
    assert await scrape(pool, sku, 20) == "unchanged"  # the site says what it said: nothing to record
    assert await scrape(pool, sku, 25) == "changed"
    assert {k: (await product(client, p["id"]))[k] for k in ("on_hand", "reserved", "stock")} == \
        {"on_hand": 25, "reserved": 2, "stock": 23}
    r = await client.post(f"/orders/{o.json()['id']}/cancel", headers=bearer(buyer))
    assert r.status_code == 200
    assert {k: (await product(client, p["id"]))[k] for k in ("on_hand", "reserved", "stock")} == \
        {"on_hand": 25, "reserved": 0, "stock": 25}
    await caught_up(pool)
    result = await rebuild(services.database_url, ["catalog"], verify=True, dry_run=True, progress=None)
    assert result["differences"] == {"products": 0}, result.get("examples")


async def test_200_concurrent_orders_against_a_scraped_stock_of_50_sell_exactly_50(client, pool):
    sku = f"S-{uuid.uuid4().hex[:8]}"
    await scrape(pool, sku, 50)
    p = await scraped_product(client, sku)
    buyers = await asyncio.gather(*(account(client, "buyer") for _ in range(20)))
    results = await asyncio.gather(*(place(client, buyers[i % 20], p["id"], 1) for i in range(200)))
    assert Counter(r.status_code for r in results) == {201: 50, 409: 150}
    assert await scrape(pool, sku, 50) == "unchanged"  # the site's count is not what orders took
    after = await product(client, p["id"])
    assert (after["on_hand"], after["reserved"], after["stock"]) == (50, 50, 0)


async def test_shipping_takes_the_units_out_of_on_hand(client, seller, admin):
    buyer = await account(client, "buyer")
    r = await client.post("/products", headers=bearer(seller), json={
        "name": "Kettle", "price": "30.00", "currency": "EUR", "stock": 5})
    pid = r.json()["id"]
    o = (await place(client, buyer, pid, 2)).json()
    assert (await client.post(f"/orders/{o['id']}/pay", headers=bearer(buyer))).status_code == 200
    assert (await client.post(f"/orders/{o['id']}/ship", headers=bearer(admin))).status_code == 200
    after = await product(client, pid)
    assert (after["on_hand"], after["reserved"], after["stock"]) == (3, 0, 3)


async def test_restocking_past_the_limit_is_refused_with_the_limit(client, seller):
    r = await client.post("/products", headers=bearer(seller), json={
        "name": "Sand", "price": "1.00", "currency": "EUR", "stock": 999_999_999})
    pid = r.json()["id"]
    r = await client.post(f"/products/{pid}/restock", json={"quantity": 1_000_000}, headers=bearer(seller))
    assert r.status_code == 409 and r.json()["limit"] == products.MAX_STOCK, r.text
    assert (await product(client, pid))["on_hand"] == 999_999_999


async def test_an_unpaid_order_expires_and_releases_its_stock_while_a_paid_one_stays(client, seller, services):
    buyer = await account(client, "buyer")
    r = await client.post("/products", headers=bearer(seller), json={
        "name": "Lamp", "price": "12.00", "currency": "EUR", "stock": 5})
    pid = r.json()["id"]
    paid = (await place(client, buyer, pid, 1)).json()
    assert (await client.post(f"/orders/{paid['id']}/pay", headers=bearer(buyer))).status_code == 200
    unpaid = (await place(client, buyer, pid, 3)).json()
    assert (await product(client, pid))["stock"] == 1

    expiry = Expiry(services.database_url, timeout=1.0, poll_seconds=0.1)  # test-lowered payment timeout
    stop = asyncio.Event()
    task = asyncio.create_task(expiry.run(stop))
    try:
        async def expired():
            r = await client.get(f"/orders/{unpaid['id']}", headers=bearer(buyer))
            return r.json() if r.json()["status"] == "expired" else None
        await eventually(expired, timeout=20, what="the unpaid order to expire")
    finally:
        stop.set()
        await task
    assert (await product(client, pid))["stock"] == 4  # the three units came back; the paid one is still held
    assert (await client.get(f"/orders/{paid['id']}", headers=bearer(buyer))).json()["status"] == "paid"
    late = await client.post(f"/orders/{unpaid['id']}/pay", headers=bearer(buyer))
    assert late.status_code == 409 and late.json()["current_status"] == "expired"
    r = await client.get("/orders", params={"status": "expired"}, headers=bearer(buyer))
    assert [o["id"] for o in r.json()["items"]] == [unpaid["id"]]


def test_orders_run_starts_the_expiry_worker():
    from workers.cli import components

    assert ("worker expiry", ["worker", "expiry"]) in components("127.0.0.1", 8000)


async def test_the_expiry_process_reads_its_timeout_from_order_payment_timeout(client, seller, services):
    import subprocess
    import sys

    buyer = await account(client, "buyer")
    r = await client.post("/products", headers=bearer(seller), json={
        "name": "Vase", "price": "9.00", "currency": "EUR", "stock": 3})
    unpaid = (await place(client, buyer, r.json()["id"], 1)).json()
    worker = subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", "expiry"],
                              env=services.env(ORDER_PAYMENT_TIMEOUT="1", LOG_LEVEL="WARNING"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async def expired():
            r = await client.get(f"/orders/{unpaid['id']}", headers=bearer(buyer))
            return r.json()["status"] == "expired"
        await eventually(expired, timeout=30, what="the order to expire a second after it was placed")
    finally:
        worker.terminate()
        worker.wait(15)
