import asyncio
import uuid
from decimal import Decimal

import pytest

from events import products, store
from events.base import replay
from events.products import Product
from projections import catalog
from tests.support import account, bearer, eventually


@pytest.fixture(scope="module")
async def client(system):
    return system


def product(**overrides) -> dict:
    return {"name": "Blue mug", "description": "A mug, blue.", "price": "19.99", "currency": "EUR",
            "stock": 5, **overrides}


async def create(client, who, **overrides) -> dict:
    r = await client.post("/products", json=product(**overrides), headers=bearer(who))
    assert r.status_code == 201, r.text
    return r.json()


async def test_a_seller_creates_a_product_with_an_exact_price(client, seller):
    r = await client.post("/products", json=product(sku="MUG-1", image_url="https://img.example/mug.png"),
                          headers=bearer(seller))
    assert r.status_code == 201
    body = r.json()
    assert body["price"] == "19.99" and body["currency"] == "EUR" and body["stock"] == 5
    assert body["source"] == "manual" and body["seller_id"] == seller["id"] and body["version"] == 1
    assert r.headers["etag"] == '"1"' and r.headers["location"] == f"/products/{body['id']}"
    got = await client.get(f"/products/{body['id']}")
    assert got.status_code == 200 and got.json()["price"] == "19.99" and got.headers["etag"] == '"1"'


async def test_optional_fields_may_be_left_out_and_the_default_currency_applies(client, seller):
    r = await client.post("/products", json={"name": "Plain", "price": "3", "stock": 0}, headers=bearer(seller))
    assert r.status_code == 201
    assert r.json()["price"] == "3.00" and r.json()["currency"] == "USD" and r.json()["sku"] is None


@pytest.mark.parametrize("change, field", [
    ({"price": "-1.00"}, "price"),
    ({"price": "0"}, "price"),
    ({"price": "1.999"}, "price"),
    ({"price": "abc"}, "price"),
    ({"price": 19.99}, "price"),  # money is a string, never a JSON number
    ({"price": "1_000"}, "price"),
    ({"price": "١٠"}, "price"),
    ({"price": " 1.00"}, "price"),
    ({"price": "1e3"}, "price"),
    ({"price": "10000000000"}, "price"),
    ({"stock": "5"}, "stock"),
    ({"currency": "XYZ"}, "currency"),
    ({"stock": -1}, "stock"),
    ({"image_url": "ftp://x.example/a.png"}, "image_url"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "\u200b\u00a0"}, "name"),
])
async def test_bad_product_input_is_a_422_naming_the_field(client, seller, change, field):
    r = await client.post("/products", json=product(**change), headers=bearer(seller))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field


async def test_only_sellers_and_admins_create_products(client, admin):
    buyer = await account(client, "buyer")
    assert (await client.post("/products", json=product(), headers=bearer(buyer))).status_code == 403
    assert (await client.post("/products", json=product())).status_code == 401
    assert (await client.post("/products", json=product(), headers=bearer(admin))).status_code == 201


async def test_sku_is_unique_per_seller(client, seller):
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    await create(client, seller, sku=sku)
    r = await client.post("/products", json=product(sku=sku), headers=bearer(seller))
    assert r.status_code == 409 and r.json()["field"] == "sku"
    other = await account(client, "seller")
    await create(client, other, sku=sku)


async def test_owner_and_admin_patch_another_seller_gets_403(client, seller, admin):
    p = await create(client, seller)
    r = await client.patch(f"/products/{p['id']}", json={"price": "17.50", "name": "Green mug"},
                           headers={**bearer(seller), "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["price"] == "17.50" and r.json()["name"] == "Green mug" and r.headers["etag"] == '"2"'
    other = await account(client, "seller")
    assert (await client.patch(f"/products/{p['id']}", json={"name": "Mine"}, headers=bearer(other))).status_code == 403
    r = await client.patch(f"/products/{p['id']}", json={"description": "by admin"}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["version"] == 3
    stale = await client.patch(f"/products/{p['id']}", json={"name": "late"}, headers={**bearer(seller), "If-Match": '"1"'})
    assert stale.status_code == 412
    bad = await client.patch(f"/products/{p['id']}", json={"price": "1.001"}, headers=bearer(seller))
    assert bad.status_code == 422 and bad.json()["field"] == "price"
    blank = await client.patch(f"/products/{p['id']}", json={"name": " \t "}, headers=bearer(seller))
    assert blank.status_code == 422 and blank.json()["field"] == "name"
    assert (await client.patch(f"/products/{uuid.uuid4()}", json={"name": "x"}, headers=bearer(seller))).status_code == 404


async def test_of_two_concurrent_patches_with_the_same_if_match_exactly_one_wins(client, seller):
    p = await create(client, seller)
    results = await asyncio.gather(*(
        client.patch(f"/products/{p['id']}", json={"name": f"name {i}"}, headers={**bearer(seller), "If-Match": '"1"'})
        for i in range(2)))
    assert sorted(r.status_code for r in results) == [200, 412]


async def test_restock_adds_stock_and_refuses_non_positive_quantities(client, seller):
    p = await create(client, seller, stock=2)
    r = await client.post(f"/products/{p['id']}/restock", json={"quantity": 3}, headers=bearer(seller))
    assert r.status_code == 200 and r.json()["stock"] == 5
    r = await client.post(f"/products/{p['id']}/restock", json={"quantity": 0}, headers=bearer(seller))
    assert r.status_code == 422 and r.json()["field"] == "quantity"


async def test_a_discontinued_product_leaves_listings_and_reads_404(client, seller):
    p = await create(client, seller)
    assert (await client.delete(f"/products/{p['id']}", headers=bearer(seller))).status_code == 204
    assert (await client.get(f"/products/{p['id']}")).status_code == 404
    listed = (await client.get("/products", params={"seller_id": seller["id"], "limit": 100})).json()["items"]
    assert p["id"] not in {i["id"] for i in listed}
    assert (await client.patch(f"/products/{p['id']}", json={"name": "x"}, headers=bearer(seller))).status_code == 404


async def test_a_seller_reads_its_own_writes_in_the_listing_at_once(client):
    seller = await account(client, "seller")
    for i in range(3):
        p = await create(client, seller, name=f"fresh {i}")
        listed = (await client.get("/products", params={"seller_id": seller["id"]})).json()["items"]
        assert p["id"] in {x["id"] for x in listed}
        r = await client.patch(f"/products/{p['id']}", json={"price": "5.55"}, headers=bearer(seller))
        listed = (await client.get("/products", params={"seller_id": seller["id"], "sort": "price"})).json()["items"]
        assert next(x for x in listed if x["id"] == p["id"])["price"] == "5.55" == r.json()["price"]


async def test_250_products_page_through_every_sort_each_seen_once(client):
    seller = await account(client, "seller")
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> dict:
        async with sem:
            return await create(client, seller, name=f"item {i % 17:02d}", price=f"{1 + i % 23}.{i % 100:02d}")
    made = {p["id"] for p in await asyncio.gather(*(one(i) for i in range(250)))}
    for sort in ("-created_at", "price", "-price", "name"):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"seller_id": seller["id"], "sort": sort, "limit": 37, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/products", params=params)
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            seen += items
            pages += 1
            if pages == 2:  # products added while paging do not disturb the pages of the others
                await create(client, seller, name="item 00", price="1.00")
            cursor = r.json()["next_cursor"]
            if not cursor:
                break
        ids = [i["id"] for i in seen]
        assert len(ids) == len(set(ids)), sort
        assert made <= set(ids), sort
        key = {"-created_at": lambda i: i["created_at"], "price": lambda i: Decimal(i["price"]),
               "-price": lambda i: Decimal(i["price"]), "name": lambda i: i["name"]}[sort]
        values = [key(i) for i in seen]
        assert values == sorted(values, reverse=sort.startswith("-")), sort


async def test_filters_narrow_the_listing(client):
    seller = await account(client, "seller")
    word = f"zq{uuid.uuid4().hex[:8]}"
    cheap = await create(client, seller, name=f"cheap {word}", price="2.00", stock=0, currency="USD")
    dear = await create(client, seller, name="dear thing", description=f"very {word}", price="200.00", currency="EUR")

    async def ids(**params) -> set[str]:
        r = await client.get("/products", params={"seller_id": seller["id"], **params})
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert await ids(q=word) == {cheap["id"], dear["id"]}
    assert await ids(min_price="10") == {dear["id"]}
    assert await ids(max_price="10") == {cheap["id"]}
    assert await ids(currency="usd") == {cheap["id"]}
    assert await ids(in_stock="true") == {dear["id"]}
    assert await ids(in_stock="false") == {cheap["id"]}
    assert await ids(source="manual") == {cheap["id"], dear["id"]}
    assert await ids(source="gantoum") == set()


@pytest.mark.parametrize("params, field", [
    ({"limit": 1000}, "limit"),
    ({"limit": 0}, "limit"),
    ({"cursor": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "cursor"),
    ({"min_price": "cheap"}, "min_price"),
    ({"min_price": "1e999999999"}, "min_price"),
    ({"max_price": "1e999999999"}, "max_price"),
    ({"min_price": "1e-999999999"}, "min_price"),
    ({"max_price": "9" * 100}, "max_price"),
    ({"max_price": "0.001"}, "max_price"),
    ({"min_price": "١"}, "min_price"),
    ({"sort": "popularity"}, "sort"),
    ({"currency": "XXX1"}, "currency"),
])
async def test_bad_listing_parameters_are_a_422_naming_the_field(client, params, field):
    r = await client.get("/products", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


async def test_a_cursor_of_another_sort_or_edited_is_refused(client, seller):
    for _ in range(3):
        await create(client, seller)
    r = await client.get("/products", params={"limit": 1})
    cursor = r.json()["next_cursor"]
    assert (await client.get("/products", params={"limit": 1, "sort": "price", "cursor": cursor})).status_code == 422
    edited = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    assert (await client.get("/products", params={"limit": 1, "cursor": edited})).status_code == 422


async def test_the_products_read_table_equals_what_the_events_say(client, pool):
    async def caught_up():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM product_state s LEFT JOIN products p ON p.id = s.product_id"
                " WHERE p.version IS DISTINCT FROM s.version")
            return (await cur.fetchone())[0] == 0
    await eventually(caught_up, what="the catalog projection")
    async with pool.connection() as conn:
        ids = [r[0] for r in await (await conn.execute("SELECT id FROM products")).fetchall()]
        assert ids
        for product_id in ids:
            folded = replay(products.evolve, await store.read_stream(conn, products.stream(product_id)))
            row = await catalog.load(conn, product_id)
            assert row == folded
            assert isinstance(row, Product)


async def test_a_cursor_only_continues_the_query_that_made_it(client, seller, admin):
    word = uuid.uuid4().hex[:8]
    for i in range(3):
        await create(client, seller, name=f"{word} mug {i}", price=f"{i + 1}.00")
    first = (await client.get("/products", params={"q": word, "sort": "price", "limit": 1})).json()
    same = await client.get("/products", params={"q": word, "sort": "price", "limit": 1, "cursor": first["next_cursor"]})
    assert same.status_code == 200 and same.json()["items"][0]["name"] == f"{word} mug 1"
    unfiltered = await client.get("/products", params={"sort": "price", "cursor": first["next_cursor"]})
    assert unfiltered.status_code == 422 and unfiltered.json()["field"] == "cursor"
    assert "filters" in unfiltered.json()["detail"]
    users = await client.get("/users", params={"cursor": first["next_cursor"]}, headers=bearer(admin))
    assert users.status_code == 422 and users.json()["field"] == "cursor"
