import asyncio
import contextlib
import uuid
from collections import Counter

import pytest

from projections import orders as order_rows
from tests.support import account, bearer, eventually

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
           "country": "gb"}


@pytest.fixture(scope="module")
async def client(system):
    return system


@pytest.fixture(scope="module")
async def buyer(client):
    return await account(client, "buyer")


async def new_product(client, seller, **overrides) -> dict:
    body = {"name": "Teapot", "price": "24.50", "currency": "EUR", "stock": 10, **overrides}
    r = await client.post("/products", json=body, headers=bearer(seller))
    assert r.status_code == 201, r.text
    return r.json()


async def order(client, buyer, items, **headers):
    return await client.post("/orders", json={"items": items, "shipping_address": ADDRESS},
                             headers={**bearer(buyer), **headers})


async def stock(client, product_id) -> int:
    return (await client.get(f"/products/{product_id}")).json()["stock"]


async def test_an_order_takes_prices_from_the_catalog_and_reserves_stock(client, seller, buyer):
    mug = await new_product(client, seller, price="19.99", stock=5)
    pot = await new_product(client, seller, price="24.50", stock=3)
    r = await order(client, buyer, [{"product_id": mug["id"], "quantity": 2}, {"product_id": pot["id"], "quantity": 1},
                                    {"product_id": mug["id"], "quantity": 1}])
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/orders/{body['id']}"
    assert body["status"] == "pending" and body["currency"] == "EUR" and body["buyer_id"] == buyer["id"]
    lines = {i["product_id"]: i for i in body["items"]}
    assert lines[mug["id"]]["quantity"] == 3 and lines[mug["id"]]["unit_price"] == "19.99"
    assert lines[mug["id"]]["line_total"] == "59.97" and lines[pot["id"]]["line_total"] == "24.50"
    assert body["total"] == "84.47" and body["version"] == 1
    assert await stock(client, mug["id"]) == 2 and await stock(client, pot["id"]) == 2
    # a price change later does not touch the order
    await client.patch(f"/products/{mug['id']}", json={"price": "99.00"}, headers=bearer(seller))
    assert (await client.get(f"/orders/{body['id']}", headers=bearer(buyer))).json()["total"] == "84.47"


@pytest.mark.parametrize("items, field", [
    ([], "items"),
    ([{"product_id": "PRODUCT", "quantity": 0}], "items[0].quantity"),
    ([{"product_id": "PRODUCT", "quantity": 1001}], "items[0].quantity"),
    ([{"product_id": "not-a-uuid", "quantity": 1}], "items[0].product_id"),
])
async def test_bad_orders_are_a_422_naming_the_field(client, seller, buyer, items, field):
    p = await new_product(client, seller)
    items = [{**i, "product_id": p["id"] if i["product_id"] == "PRODUCT" else i["product_id"]} for i in items]
    r = await order(client, buyer, items)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert await stock(client, p["id"]) == 10


@pytest.mark.parametrize("field", ["name", "line1", "city", "postal_code"])
async def test_an_address_line_of_only_spaces_is_a_422_naming_it(client, seller, buyer, field):
    p = await new_product(client, seller)
    r = await client.post("/orders", json={"items": [{"product_id": p["id"], "quantity": 1}],
                                           "shipping_address": {**ADDRESS, field: " \u200b "}}, headers=bearer(buyer))
    assert r.status_code == 422 and r.json()["field"] == f"shipping_address.{field}", r.text
    assert await stock(client, p["id"]) == 10


async def test_unknown_discontinued_and_mixed_currency_orders_are_refused_whole(client, seller, buyer):
    good = await new_product(client, seller, stock=4)
    gone = await new_product(client, seller)
    await client.delete(f"/products/{gone['id']}", headers=bearer(seller))
    dollars = await new_product(client, seller, currency="USD")
    unknown = str(uuid.uuid4())
    for bad in (unknown, gone["id"]):
        r = await order(client, buyer, [{"product_id": good["id"], "quantity": 1}, {"product_id": bad, "quantity": 1}])
        assert r.status_code == 422 and r.json()["product_id"] == bad, r.text
    r = await order(client, buyer, [{"product_id": good["id"], "quantity": 1}, {"product_id": dollars["id"], "quantity": 1}])
    assert r.status_code == 422 and r.json()["field"] == "items"
    r = await order(client, buyer, [{"product_id": good["id"], "quantity": 3}, {"product_id": dollars["id"], "quantity": 99}])
    assert r.status_code in (409, 422)
    assert await stock(client, good["id"]) == 4  # all lines or none


async def test_sellers_cannot_order_and_anonymous_callers_are_401(client, seller):
    p = await new_product(client, seller)
    assert (await order(client, seller, [{"product_id": p["id"], "quantity": 1}])).status_code == 403
    r = await client.post("/orders", json={"items": [{"product_id": p["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert r.status_code == 401


async def test_200_concurrent_orders_against_stock_50_sell_exactly_50(client, seller, pool):
    p = await new_product(client, seller, stock=50)
    buyers = await asyncio.gather(*(account(client, "buyer") for _ in range(20)))
    results = await asyncio.gather(*(order(client, buyers[i % 20], [{"product_id": p["id"], "quantity": 1}])
                                     for i in range(200)))
    codes = Counter(r.status_code for r in results)
    assert codes == {201: 50, 409: 150}, codes
    refused = next(r for r in results if r.status_code == 409)
    assert refused.json()["product_id"] == p["id"]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert await stock(client, p["id"]) == 0
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM events WHERE stream_id = %s AND type = 'product.stock_reserved'",
                                 (f"product-{p['id']}",))
        assert (await cur.fetchone())[0] == 50

    async def read_table_at_zero():
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT stock FROM products WHERE id = %s", (p["id"],))
            return (await cur.fetchone())[0] == 0
    await eventually(read_table_at_zero, what="the catalog projection to show stock 0")


async def test_a_retry_with_the_same_idempotency_key_returns_the_same_order(client, seller, pool):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller, stock=10)
    items = [{"product_id": p["id"], "quantity": 2}]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await order(client, buyer, items, **key)
    again = await order(client, buyer, items, **key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    concurrent = await asyncio.gather(*(order(client, buyer, items, **{"Idempotency-Key": "same-time"}) for _ in range(2)))
    assert [r.status_code for r in concurrent] == [201, 201]
    assert concurrent[0].json()["id"] == concurrent[1].json()["id"]
    other = await order(client, buyer, [{"product_id": p["id"], "quantity": 3}], **key)
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    assert await stock(client, p["id"]) == 6  # two orders of two, nothing more
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM events WHERE type = 'order.placed' AND data->>'buyer_id' = %s",
                                 (buyer["id"],))
        assert (await cur.fetchone())[0] == 2


async def test_the_lifecycle_and_every_forbidden_transition(client, seller, admin):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller)
    o = (await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])).json()
    url = f"/orders/{o['id']}"

    async def step(action, who, expected, **body):
        r = await client.post(f"{url}/{action}", json=body or None, headers=bearer(who))
        assert r.status_code == expected, (action, r.text)
        return r.json()

    for action, who in (("ship", admin), ("deliver", admin)):
        assert (await step(action, who, 409))["current_status"] == "pending"
    paid = await step("pay", buyer, 200)
    assert paid["status"] == "paid" and paid["payment_reference"].startswith("test_") and paid["version"] == 2
    assert (await step("pay", buyer, 409))["current_status"] == "paid"
    assert (await step("deliver", admin, 409))["current_status"] == "paid"
    assert (await step("ship", seller, 200))["status"] == "shipped"  # the seller of every line
    for action, who in (("pay", buyer), ("ship", admin), ("cancel", buyer), ("cancel", admin)):
        assert (await step(action, who, 409))["current_status"] == "shipped"
    assert (await step("deliver", admin, 200))["status"] == "delivered"
    for action, who in (("pay", buyer), ("ship", admin), ("deliver", admin), ("cancel", admin)):
        assert (await step(action, who, 409))["current_status"] == "delivered"


async def test_cancelling_releases_stock_and_refunds_a_paid_order(client, seller, admin):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller, stock=5)
    pending = (await order(client, buyer, [{"product_id": p["id"], "quantity": 2}])).json()
    paid = (await order(client, buyer, [{"product_id": p["id"], "quantity": 3}])).json()
    assert await stock(client, p["id"]) == 0
    r = await client.post(f"/orders/{pending['id']}/cancel", json={"reason": "changed my mind"}, headers=bearer(buyer))
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["refund"] is None
    await client.post(f"/orders/{paid['id']}/pay", headers=bearer(buyer))
    r = await client.post(f"/orders/{paid['id']}/cancel", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["refund"] == paid["total"]
    assert await stock(client, p["id"]) == 5
    assert (await client.post(f"/orders/{paid['id']}/cancel", headers=bearer(buyer))).json()["current_status"] == "cancelled"


async def test_each_user_sees_only_the_orders_it_may(client, admin):
    alice, bob = await account(client, "buyer"), await account(client, "buyer")
    shop, other_shop = await account(client, "seller"), await account(client, "seller")
    p = await new_product(client, shop)
    q = await new_product(client, other_shop)
    mine = (await order(client, alice, [{"product_id": p["id"], "quantity": 1}])).json()
    mixed = (await order(client, alice, [{"product_id": p["id"], "quantity": 1}, {"product_id": q["id"], "quantity": 1}])).json()

    async def listed(who, **params) -> set[str]:
        r = await client.get("/orders", params={"limit": 100, **params}, headers=bearer(who))
        assert r.status_code == 200, r.text
        return {o["id"] for o in r.json()["items"]}

    assert await listed(alice) == {mine["id"], mixed["id"]}
    assert await listed(bob) == set()
    assert await listed(shop) == {mine["id"], mixed["id"]}
    assert await listed(other_shop) == {mixed["id"]}
    assert {mine["id"], mixed["id"]} <= await listed(admin)
    for who, code in ((alice, 200), (bob, 404), (shop, 200), (other_shop, 404), (admin, 200)):
        assert (await client.get(f"/orders/{mine['id']}", headers=bearer(who))).status_code == code
    assert (await client.get(f"/orders/{uuid.uuid4()}", headers=bearer(alice))).status_code == 404
    # a stranger cannot act on it either, and learns nothing
    assert (await client.post(f"/orders/{mine['id']}/pay", headers=bearer(bob))).status_code == 404
    assert (await client.post(f"/orders/{mine['id']}/cancel", headers=bearer(other_shop))).status_code == 404
    # a seller with only some lines may not ship
    await client.post(f"/orders/{mixed['id']}/pay", headers=bearer(alice))
    assert (await client.post(f"/orders/{mixed['id']}/ship", headers=bearer(shop))).status_code == 403
    assert await listed(alice, status="paid") == {mixed["id"]}
    assert await listed(alice, status="pending") == {mine["id"]}
    assert await listed(alice, created_from="2999-01-01T00:00:00Z") == set()


async def test_a_seller_sees_only_its_own_lines_of_a_mixed_order_and_not_the_buyers_address(client, admin):
    buyer = await account(client, "buyer")
    shop, other_shop = await account(client, "seller"), await account(client, "seller")
    mug = await new_product(client, shop, price="10.00")
    pot = await new_product(client, other_shop, price="25.00")
    mixed = (await order(client, buyer, [{"product_id": mug["id"], "quantity": 2},
                                         {"product_id": pot["id"], "quantity": 1}])).json()
    own = (await order(client, buyer, [{"product_id": mug["id"], "quantity": 1}])).json()
    await client.post(f"/orders/{mixed['id']}/pay", headers=bearer(buyer))

    seen = (await client.get(f"/orders/{mixed['id']}", headers=bearer(shop))).json()
    assert [i["product_id"] for i in seen["items"]] == [mug["id"]] and seen["total"] == "20.00"
    assert seen["shipping_address"] is None and seen["payment_reference"] is None and seen["partial"] is True
    listed = (await client.get("/orders", params={"limit": 100}, headers=bearer(other_shop))).json()["items"]
    assert [(o["total"], o["shipping_address"], [i["product_id"] for i in o["items"]]) for o in listed
            if o["id"] == mixed["id"]] == [("25.00", None, [pot["id"]])]
    for whole in (buyer, admin):  # the buyer and admins see all of it
        r = (await client.get(f"/orders/{mixed['id']}", headers=bearer(whole))).json()
        assert len(r["items"]) == 2 and r["total"] == "45.00" and r["shipping_address"]["city"] == "London"
        assert r["payment_reference"] and r["partial"] is False
    # the seller of every line ships the order, so it sees where to
    single = (await client.get(f"/orders/{own['id']}", headers=bearer(shop))).json()
    assert single["shipping_address"]["city"] == "London" and single["partial"] is False


async def test_a_client_reads_its_own_writes_right_after_each_command(client, seller):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller)
    for _ in range(3):
        o = (await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])).json()
        assert (await client.get(f"/orders/{o['id']}", headers=bearer(buyer))).json()["status"] == "pending"
        assert o["id"] in {x["id"] for x in (await client.get("/orders", headers=bearer(buyer))).json()["items"]}
        await client.post(f"/orders/{o['id']}/pay", headers=bearer(buyer))
        assert (await client.get(f"/orders/{o['id']}", headers=bearer(buyer))).json()["status"] == "paid"
        listed = (await client.get("/orders", params={"status": "paid"}, headers=bearer(buyer))).json()["items"]
        assert o["id"] in {x["id"] for x in listed}


async def test_orders_page_with_a_cursor(client, seller):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller, stock=100)
    made = {(await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])).json()["id"] for _ in range(7)}
    seen, cursor = [], None
    while True:
        r = (await client.get("/orders", params={"limit": 3, **({"cursor": cursor} if cursor else {})},
                              headers=bearer(buyer))).json()
        seen += [o["id"] for o in r["items"]]
        if not (cursor := r["next_cursor"]):
            break
    assert len(seen) == len(set(seen)) and set(seen) == made


async def test_the_cart_checks_out_into_an_order_and_empties(client, seller):
    buyer = await account(client, "buyer")
    a = await new_product(client, seller, price="2.50")
    b = await new_product(client, seller, price="1.25")
    assert (await client.put(f"/cart/items/{a['id']}", json={"quantity": 2}, headers=bearer(buyer))).status_code == 200
    await client.put(f"/cart/items/{b['id']}", json={"quantity": 4}, headers=bearer(buyer))
    await client.put(f"/cart/items/{b['id']}", json={"quantity": 1}, headers=bearer(buyer))
    cart = (await client.get("/cart", headers=bearer(buyer))).json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(a["id"], 2), (b["id"], 1)]
    assert cart["total"] == "6.25"
    assert (await client.put(f"/cart/items/{uuid.uuid4()}", json={"quantity": 1}, headers=bearer(buyer))).status_code == 404
    assert (await client.put(f"/cart/items/{a['id']}", json={"quantity": 1001}, headers=bearer(buyer))).status_code == 422
    key = {"Idempotency-Key": str(uuid.uuid4())}
    r = await client.post("/cart/checkout", json={"shipping_address": ADDRESS}, headers={**bearer(buyer), **key})
    assert r.status_code == 201 and r.json()["total"] == "6.25"
    again = await client.post("/cart/checkout", json={"shipping_address": ADDRESS}, headers={**bearer(buyer), **key})
    assert again.status_code == 201 and again.json()["id"] == r.json()["id"]
    assert (await client.get("/cart", headers=bearer(buyer))).json()["items"] == []
    empty = await client.post("/cart/checkout", json={"shipping_address": ADDRESS}, headers=bearer(buyer))
    assert empty.status_code == 422 and empty.json()["field"] == "cart"
    await client.put(f"/cart/items/{a['id']}", json={"quantity": 1}, headers=bearer(buyer))
    assert (await client.delete(f"/cart/items/{a['id']}", headers=bearer(buyer))).status_code == 204
    await client.put(f"/cart/items/{a['id']}", json={"quantity": 1}, headers=bearer(buyer))
    assert (await client.delete("/cart", headers=bearer(buyer))).status_code == 204
    assert (await client.get("/cart", headers=bearer(buyer))).json()["items"] == []
    assert (await client.get("/cart", headers=bearer(seller))).status_code == 403


async def test_the_orders_read_tables_equal_what_the_events_say(client, pool):
    from events.commands.ordering import load

    async def caught_up():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT stream_id, max(version) v FROM events WHERE stream_id LIKE 'order-%%'"
                " GROUP BY stream_id) e LEFT JOIN orders o ON o.id::text = substr(e.stream_id, 7)"
                " WHERE o.version IS DISTINCT FROM e.v")
            return (await cur.fetchone())[0] == 0
    await eventually(caught_up, what="the orders projection")
    async with pool.connection() as conn:
        ids = [r[0] for r in await (await conn.execute("SELECT id FROM orders")).fetchall()]
        assert len(ids) > 50
        for order_id in ids:
            assert await order_rows.load(conn, order_id) == await load(conn, order_id)
        cur = await conn.execute("SELECT count(*) FROM events WHERE type = 'order.placed'")
        assert (await cur.fetchone())[0] == len(ids)



async def test_the_fulfilment_worker_ships_and_delivers_paid_orders(client, seller, services, pool):
    from workers.fulfilment import Fulfilment

    buyer = await account(client, "buyer")
    p = await new_product(client, seller)
    o = (await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])).json()
    pending = (await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])).json()
    await client.post(f"/orders/{o['id']}/pay", headers=bearer(buyer))
    worker = Fulfilment(services.database_url, ship_after=0.05, deliver_after=0.05, poll_seconds=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async def delivered():
            r = await client.get(f"/orders/{o['id']}", headers=bearer(buyer))
            return r.json()["status"] == "delivered"
        await eventually(delivered, what="the order to be delivered")
    finally:
        stop.set()
        await task
    assert (await client.get(f"/orders/{pending['id']}", headers=bearer(buyer))).json()["status"] == "pending"
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT type, actor FROM events WHERE stream_id = %s ORDER BY version",
                                 (f"order-{o['id']}",))
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == ["order.placed", "order.paid", "order.shipped", "order.delivered"]
    assert rows[2][1] == rows[3][1] == "system:fulfilment" and rows[1][1] == f"user:{buyer['id']}"


async def test_an_order_whose_total_the_books_cannot_hold_is_refused(client, seller, buyer):
    p = await new_product(client, seller, price="9999999999.99", stock=1000)
    r = await order(client, buyer, [{"product_id": p["id"], "quantity": 101}])
    assert r.status_code == 422 and r.json()["field"] == "items"
    assert await stock(client, p["id"]) == 1000


async def test_a_cursor_of_another_listing_is_a_422(client, seller, buyer):
    for _ in range(2):
        await new_product(client, seller)
    cursor = (await client.get("/products", params={"limit": 1})).json()["next_cursor"]
    r = await client.get("/orders", params={"cursor": cursor}, headers=bearer(buyer))
    assert r.status_code == 422 and r.json()["field"] == "cursor"


# Read-your-writes without a query: a command watches its order's notifications before it commits.

@pytest.fixture(scope="module")
async def watched(services, projections_running):
    """An API of its own, whose read-your-writes machinery a test may observe and disturb; a 5 s timeout,
    so that a wait left hanging by a lost notification shows."""
    from api.app import create_app
    from tests.support import serve

    app = create_app(services.settings(ryw_timeout=5.0))
    async with serve(app) as c:
        async def listening():
            return app.state.projected.listening
        await eventually(listening, what="the read-your-writes LISTEN connection")
        yield app, c


def version_reads(monkeypatch, app) -> list[str]:
    """The streams whose read-table version the API queries from now on (both projections)."""
    reads = []
    for projector in (app.state.orders_projector, app.state.catalog_projector):
        async def version(conn, stream, real=projector.version):
            reads.append(stream)
            return await real(conn, stream)
        monkeypatch.setattr(projector, "version", version)
    return reads


async def listed_ids(client, buyer, **params) -> set[str]:
    return {o["id"] for o in (await client.get("/orders", params=params, headers=bearer(buyer))).json()["items"]}


async def test_order_commands_read_their_writes_without_querying_the_read_table(watched, seller, monkeypatch):
    app, c = watched
    buyer = await account(c, "buyer")
    p = await new_product(c, seller)
    reads = version_reads(monkeypatch, app)
    items = [{"product_id": p["id"], "quantity": 1}]
    o = (await order(c, buyer, items)).json()
    assert o["id"] in await listed_ids(c, buyer, status="pending")
    assert (await c.post(f"/orders/{o['id']}/pay", headers=bearer(buyer))).status_code == 200
    assert o["id"] in await listed_ids(c, buyer, status="paid")
    assert (await c.post(f"/orders/{o['id']}/cancel", headers=bearer(buyer))).status_code == 200
    assert o["id"] in await listed_ids(c, buyer, status="cancelled")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = (await order(c, buyer, items, **key)).json()
    assert first["id"] in await listed_ids(c, buyer, status="pending")
    assert reads == []
    # a replay answers an earlier order, which it did not watch: it checks the read table
    again = await order(c, buyer, items, **key)
    assert again.json()["id"] == first["id"] and again.headers["idempotent-replayed"] == "true"
    assert reads == [f"order-{first['id']}"]
    assert app.state.projected._watches == {}  # every watch was unregistered


async def row_version(pool, order_id) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT version FROM orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
        return row[0] if row else 0


@pytest.mark.parametrize("command", ["place", "pay"])
@pytest.mark.parametrize("outage", ["reconnected meanwhile", "down at the watch"])
async def test_a_listener_outage_falls_back_to_reading_the_version(watched, seller, pool, monkeypatch, outage, command):
    """Notifications sent while the LISTEN connection is down are lost: the command's notification is lost
    here, so only the query after the commit can tell that the projection applied it (a wait alone would
    last the whole 5 s)."""
    from events.commands import ordering

    app, c = watched
    projected = app.state.projected
    buyer = await account(c, "buyer")
    p = await new_product(c, seller)
    pending = (await order(c, buyer, [{"product_id": p["id"], "quantity": 1}])).json()
    reads = version_reads(monkeypatch, app)
    restored = []

    def during_an_outage(use_case):
        async def run(*args, **kwargs):
            projected._wake = lambda payload: None  # the notifications of this commit are lost
            result = await use_case(*args, **kwargs)
            o = result[0] if command == "place" else result

            async def applied():
                return await row_version(pool, o.id) >= o.version
            await eventually(applied, what="the projection to apply the command")
            del projected._wake
            projected._connected()  # what the listener does when it is back
            restored.append(asyncio.get_running_loop().time())
            return result
        return run

    name = "place" if command == "place" else "transition"
    monkeypatch.setattr(ordering, name, during_an_outage(getattr(ordering, name)))
    if outage == "down at the watch":
        projected.listening = False
    epoch = projected.epoch
    try:
        if command == "place":
            r = await order(c, buyer, [{"product_id": p["id"], "quantity": 1}])
            assert r.status_code == 201, r.text
            order_id, status = r.json()["id"], "pending"
        else:
            r = await c.post(f"/orders/{pending['id']}/pay", headers=bearer(buyer))
            assert r.status_code == 200, r.text
            order_id, status = pending["id"], "paid"
    finally:
        projected.__dict__.pop("_wake", None)
        projected.listening = True
    assert asyncio.get_running_loop().time() - restored[0] < 2.5  # not the 5 s timeout
    assert projected.epoch == epoch + 1
    assert reads == [f"order-{order_id}"]
    assert order_id in await listed_ids(c, buyer, status=status)


async def test_without_a_read_your_writes_timeout_commands_neither_query_nor_wait(services, projections_running,
                                                                                 seller, monkeypatch):
    from api.app import create_app
    from tests.support import serve

    app = create_app(services.settings(ryw_timeout=0))
    async with serve(app) as c:
        buyer = await account(c, "buyer")
        reads = version_reads(monkeypatch, app)
        waits = []
        monkeypatch.setattr(app.state.projected, "on_wait", lambda: waits.append(1))
        p = await new_product(c, seller)
        items = [{"product_id": p["id"], "quantity": 1}]
        key = {"Idempotency-Key": str(uuid.uuid4())}
        o = await order(c, buyer, items, **key)
        assert o.status_code == 201
        assert (await order(c, buyer, items, **key)).headers["idempotent-replayed"] == "true"
        assert (await c.post(f"/orders/{o.json()['id']}/pay", headers=bearer(buyer))).status_code == 200
        assert (await c.post(f"/orders/{o.json()['id']}/cancel", headers=bearer(buyer))).status_code == 200
        assert reads == [] and waits == []
        assert (await c.get(f"/orders/{o.json()['id']}", headers=bearer(buyer))).json()["status"] == "cancelled"


async def _notify(pool, payload: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("SELECT pg_notify('projected', %s)", (payload,))


async def test_a_malformed_notification_is_skipped_and_the_listener_lives_on(watched, seller, pool, monkeypatch,
                                                                               caplog):
    """Anyone may NOTIFY `projected`: a line the listener cannot parse must not end it (read-your-writes
    would then fall back to queries, and to the timeout, in every later command of the process)."""
    app, c = watched
    projected = app.state.projected
    buyer = await account(c, "buyer")
    p = await new_product(c, seller)
    task, epoch = projected._task, projected.epoch
    probe = f"order-probe-{uuid.uuid4()}"
    with projected.watch("orders", probe) as w:
        await _notify(pool, "bad payload")
        # in one payload: a line of the right shape with no version, then a good line for the same stream
        await _notify(pool, f"orders {probe} not-a-version\norders {probe} 7")

        async def seen():
            return w.seen == 7
        await eventually(seen, timeout=5, what="the good line after the malformed ones")
    assert not task.done() and projected._task is task
    assert projected.listening and projected.epoch == epoch  # skipped, not even a reconnection
    assert "malformed notification" in caplog.text

    reads = version_reads(monkeypatch, app)
    started = asyncio.get_running_loop().time()
    r = await order(c, buyer, [{"product_id": p["id"], "quantity": 1}])
    assert r.status_code == 201, r.text
    assert asyncio.get_running_loop().time() - started < 2.5  # not the 5 s timeout
    assert reads == []  # woken by its notification: no query of the read table
    assert r.json()["id"] in await listed_ids(c, buyer, status="pending")


async def test_an_unexpected_error_in_the_listener_reconnects_it(watched, pool, monkeypatch):
    app, _ = watched
    projected = app.state.projected
    task, epoch = projected._task, projected.epoch
    wake = projected._wake

    def buggy(payload):
        if payload == "boom":
            raise RuntimeError("a bug in the listener")
        wake(payload)
    monkeypatch.setattr(projected, "_wake", buggy)
    await _notify(pool, "boom")

    async def reconnected():
        return projected.epoch == epoch + 1 and projected.listening
    await eventually(reconnected, timeout=10, what="the listener to reconnect")
    assert not task.done() and projected._task is task
    probe = f"order-probe-{uuid.uuid4()}"
    with projected.watch("orders", probe) as w:
        await _notify(pool, f"orders {probe} 3")

        async def seen():
            return w.seen == 3
        await eventually(seen, timeout=5, what="a notification after the reconnection")


async def test_a_quiet_listener_checks_its_connection_and_goes_on_listening(services, pool, monkeypatch):
    """A half-open connection delivers nothing and reports nothing: after a quiet while the listener sends a
    query, which such a connection cannot answer. Seen here in pg_stat_activity as its last query."""
    from psycopg.conninfo import make_conninfo

    from api import consistency

    monkeypatch.setattr(consistency, "HEARTBEAT_SECONDS", 0.2)
    name = f"ryw-heartbeat-{uuid.uuid4().hex[:8]}"
    projected = consistency.Projected(make_conninfo(services.database_url, application_name=name))
    await projected.start()
    try:
        async def last_query_is(query):
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT query FROM pg_stat_activity WHERE application_name = %s", (name,))
                return [r[0] for r in await cur.fetchall()] == [query]
        await eventually(lambda: last_query_is("LISTEN projected"), timeout=5, what="the listener to connect")
        await eventually(lambda: last_query_is("SELECT 1"), timeout=5, what="a heartbeat query")
        probe = f"order-probe-{uuid.uuid4()}"
        with projected.watch("orders", probe) as w:
            await _notify(pool, f"orders {probe} 2")

            async def seen():
                return w.seen == 2
            await eventually(seen, timeout=5, what="a notification after the heartbeats")
        assert projected.epoch == 1 and projected.listening  # the heartbeats reconnected nothing
    finally:
        await projected.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await projected._task
    assert projected._task.cancelled() and not projected.listening


async def test_at_the_deadline_a_watch_asks_the_read_table_once(watched, seller, monkeypatch):
    """A notification can go astray (a rebuild's swap applies versions and notifies nobody): at the deadline
    the read table has the last word. Here the watch begins after the order's notification was sent, while
    the listener was up, so nothing wakes it and nothing asks the table before the deadline."""
    app, c = watched
    projected = app.state.projected
    buyer = await account(c, "buyer")
    p = await new_product(c, seller)
    o = (await order(c, buyer, [{"product_id": p["id"], "quantity": 1}])).json()  # applied and notified
    stream = f"order-{o['id']}"
    reads = version_reads(monkeypatch, app)

    def read_version(conn):
        return app.state.orders_projector.version(conn, stream)

    loop = asyncio.get_running_loop()
    with projected.watch("orders", stream) as w:
        assert w.epoch == projected.epoch
        started = loop.time()
        assert await projected.reached(w, o["version"], 0.3, app.state.pool, read_version)
        assert loop.time() - started > 0.25  # it waited for a notification first
        assert reads == [stream]
        reads.clear()
        started = loop.time()
        assert not await projected.reached(w, o["version"] + 1, 0.3, app.state.pool, read_version)
        assert loop.time() - started > 0.25
        assert reads == [stream]


async def test_concurrent_keyed_orders_and_checkouts_of_one_product_are_all_placed(client, seller):
    """Each with its own Idempotency-Key, all of one product: the keyed path writes nothing before the
    product's lock, so none of them is refused for a transaction id taken too early."""
    p = await new_product(client, seller, stock=1000)
    buyers = await asyncio.gather(*(account(client, "buyer") for _ in range(8)))
    for b in buyers[4:]:  # half check out a cart instead
        await client.put(f"/cart/items/{p['id']}", json={"quantity": 1}, headers=bearer(b))

    async def buy(i: int):
        b = buyers[i % 8]
        key = {"Idempotency-Key": str(uuid.uuid4())}
        if i % 8 < 4:
            return await order(client, b, [{"product_id": p["id"], "quantity": 1}], **key)
        return await client.post("/cart/checkout", json={"shipping_address": ADDRESS}, headers={**bearer(b), **key})
    results = await asyncio.gather(*(buy(i) for i in range(40)))
    placed = [r for r in results if r.status_code == 201]
    # Orders of items all succeed; a checkout succeeds once per cart, later ones find it empty.
    assert Counter(r.status_code for r in results) == {201: 20 + 4, 422: 16}, [r.text for r in results
                                                                              if r.status_code not in (201, 422)]
    assert all(r.json()["field"] == "cart" for r in results if r.status_code == 422)
    assert await stock(client, p["id"]) == 1000 - len(placed)


@contextlib.contextmanager
def api_statements(monkeypatch):
    """The statements the API process sends (its pool's connections are named orders-api)."""
    import psycopg

    sent, execute = [], psycopg.AsyncConnection.execute

    async def counting(conn, query, *args, **kwargs):
        if conn.info.parameter_status("application_name") == "orders-api":
            sent.append(query)
        return await execute(conn, query, *args, **kwargs)
    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counting)
    yield sent


async def test_a_page_of_orders_takes_the_same_two_statements_however_long(client, seller, monkeypatch):
    buyer = await account(client, "buyer")
    p = await new_product(client, seller, stock=100)
    for _ in range(21):
        await order(client, buyer, [{"product_id": p["id"], "quantity": 1}])
    counts = {}
    for limit in (1, 20):
        await client.get("/auth/me", headers=bearer(buyer))  # the caller is remembered before counting
        with api_statements(monkeypatch) as sent:
            r = await client.get("/orders", params={"limit": limit}, headers=bearer(buyer))
        assert len(r.json()["items"]) == limit
        counts[limit] = len(sent)
    assert counts == {1: 2, 20: 2}  # the page's orders, then their lines


async def test_checkout_orders_exactly_the_lines_it_takes_out_of_the_cart(client, seller, monkeypatch):
    """A line put in the cart while a checkout is on its way (after it read the cart) stays in the cart."""
    from events.commands import ordering

    buyer = await account(client, "buyer")
    first, second = await new_product(client, seller), await new_product(client, seller)
    await client.put(f"/cart/items/{first['id']}", json={"quantity": 2}, headers=bearer(buyer))
    load_many = ordering.product_state.load_many

    async def meanwhile(conn, ids):  # the checkout holds its locks: another request adds a line now
        r = await client.put(f"/cart/items/{second['id']}", json={"quantity": 1}, headers=bearer(buyer))
        assert r.status_code == 200
        return await load_many(conn, ids)
    monkeypatch.setattr(ordering.product_state, "load_many", meanwhile)
    r = await client.post("/cart/checkout", json={"shipping_address": ADDRESS}, headers=bearer(buyer))
    monkeypatch.undo()
    assert r.status_code == 201, r.text
    assert [(i["product_id"], i["quantity"]) for i in r.json()["items"]] == [(first["id"], 2)]
    cart = (await client.get("/cart", headers=bearer(buyer))).json()["items"]
    assert [(i["product_id"], i["quantity"]) for i in cart] == [(second["id"], 1)]
