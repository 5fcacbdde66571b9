"""Input no handler should ever see: NUL characters, deep or ambiguous JSON, other media types,
numbers written as strings. Each is a 4xx problem naming the field, and changes nothing."""

import json
import uuid

import pytest

from api.app import create_app
from tests.support import account, admin_account, bearer, serve

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
           "country": "GB"}
NUL = "a\u0000b"


@pytest.fixture(scope="module")
async def client(services):
    async with serve(create_app(services.settings(ryw_timeout=0))) as c:
        yield c


@pytest.fixture(scope="module")
async def shop(client, pool, services):
    """A seller's product, a buyer with a pending order of it, an admin."""
    seller, buyer = await account(client, "seller"), await account(client, "buyer")
    admin = await admin_account(client, pool, services.settings())
    product = (await client.post("/products", json={"name": "Mug", "price": "5.00", "stock": 100},
                                 headers=bearer(seller))).json()
    order = (await client.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 1}],
                                                "shipping_address": ADDRESS}, headers=bearer(buyer))).json()
    return {"seller": seller, "buyer": buyer, "admin": admin, "product": product["id"], "order": order["id"]}


async def head(pool) -> int:
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT coalesce(max(position), 0) FROM events")).fetchone())[0]


def nul_cases():
    """(who, method, path, json body or query params, the field a 422 must name)"""
    product = {"name": "Mug", "price": "5.00", "stock": 1}
    order = {"items": [{"product_id": "PRODUCT", "quantity": 1}], "shipping_address": ADDRESS}
    yield None, "GET", "/products", {"q": NUL}, "q"
    yield None, "GET", "/products", {"source": NUL}, "source"
    yield None, "POST", "/auth/login", {"email": f"{NUL}@example.com", "password": "x"}, "email"
    yield None, "POST", "/auth/login", {"email": "a@example.com", "password": NUL}, "password"
    for field in ("name", "email"):
        body = {"email": f"{uuid.uuid4().hex}@example.com", "password": "correct horse battery", "name": "Ada"}
        yield None, "POST", "/auth/register", {**body, field: NUL + ("@example.com" if field == "email" else "")}, field
    for field in ("name", "description", "sku", "image_url"):
        yield "seller", "POST", "/products", {**product, field: "https://x.example/" + NUL}, field
    yield "seller", "PATCH", "/products/PRODUCT", {"name": NUL}, "name"
    for field in ADDRESS:
        yield "buyer", "POST", "/orders", {**order, "shipping_address": {**ADDRESS, field: NUL}}, \
            f"shipping_address.{field}"
    yield "buyer", "POST", "/orders/ORDER/pay", {"reference": NUL}, "reference"
    yield "buyer", "POST", "/orders/ORDER/cancel", {"reason": NUL}, "reason"
    yield "admin", "GET", "/admin/events", {"stream_id": NUL}, "stream_id"
    yield "admin", "GET", "/admin/events", {"type": NUL}, "type"


@pytest.mark.parametrize("who, method, path, payload, field", list(nul_cases()))
async def test_a_nul_character_anywhere_is_a_422_naming_the_field(client, shop, pool, who, method, path, payload,
                                                                 field):
    path = path.replace("PRODUCT", shop["product"]).replace("ORDER", shop["order"])
    payload = json.loads(json.dumps(payload).replace("PRODUCT", shop["product"]))
    before = await head(pool)
    kwargs = {"params": payload} if method == "GET" else {"json": payload}
    r = await client.request(method, path, headers=bearer(shop[who]) if who else {}, **kwargs)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert await head(pool) == before


async def test_a_nul_character_in_the_login_form_is_a_422_naming_the_field(client):
    r = await client.post("/auth/login", data={"username": f"{NUL}@example.com", "password": "x"})
    assert r.status_code == 422 and r.json()["field"] == "username"


@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
@pytest.mark.parametrize("who, path", [(None, "/auth/login"), ("buyer", "/orders"), (None, "/auth/refresh")])
async def test_json_nested_past_32_levels_is_a_400(client, shop, pool, who, path, depth):
    before = await head(pool)
    body = b'{"a": ' * depth + b"1" + b"}" * depth
    r = await client.post(path, content=body, headers={"content-type": "application/json",
                                                       **(bearer(shop[who]) if who else {})})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "32 levels" in r.json()["detail"]
    assert await head(pool) == before


async def test_json_nested_32_levels_is_read_as_usual(client):
    body = b'{"email": "a@example.com", "password": "x", "extra": ' + b"[" * 31 + b"]" * 31 + b"}"
    r = await client.post("/auth/login", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text


def bodies() -> dict[str, dict]:
    """The same order in the encodings a JSON endpoint must refuse (httpx keyword arguments)."""
    order = json.dumps({"items": [], "shipping_address": ADDRESS})
    return {
        "text/plain": {"content": order, "headers": {"content-type": "text/plain"}},
        "xml": {"content": "<order/>", "headers": {"content-type": "application/xml"}},
        "form": {"data": {"items": "[]"}},
        "multipart": {"files": {"items": ("items.json", order, "application/json")}},
        "no content type": {"content": order.encode()},
    }


@pytest.mark.parametrize("encoding", list(bodies()))
async def test_json_endpoints_refuse_other_media_types_with_415(client, shop, pool, encoding):
    before = await head(pool)
    for who, path in (("buyer", "/orders"), (None, "/auth/register"), ("seller", "/products"), (None, "/auth/refresh")):
        request = bodies()[encoding]
        request["headers"] = {**request.get("headers", {}), **(bearer(shop[who]) if who else {})}
        r = await client.post(path, **request)
        assert r.status_code == 415, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert await head(pool) == before


async def test_login_takes_json_or_the_documented_form_and_nothing_else(client, shop):
    credentials = {"email": shop["buyer"]["email"], "password": "correct horse battery"}
    assert (await client.post("/auth/login", json=credentials)).status_code == 200
    form = {"username": credentials["email"], "password": credentials["password"]}
    assert (await client.post("/auth/login", data=form)).status_code == 200
    for encoding in ("text/plain", "xml", "multipart", "no content type"):
        assert (await client.post("/auth/login", **bodies()[encoding])).status_code == 415, encoding


async def test_a_body_less_command_needs_no_content_type(client, shop):
    pay = await client.post(f"/orders/{shop['order']}/pay", headers=bearer(shop["buyer"]))
    assert pay.status_code in (200, 409), pay.text  # 409 when a test before paid or cancelled it


@pytest.mark.parametrize("raw, field", [
    ('{"name": "Mug", "name": "Cup", "price": "5.00", "stock": 1}', "name"),
    ('{"name": "Mug", "price": "5.00", "stock": 1, "sku": "A", "sku": "B"}', "sku"),
])
async def test_a_key_repeated_in_a_json_object_is_a_422_naming_it(client, shop, pool, raw, field):
    before = await head(pool)
    r = await client.post("/products", content=raw, headers={"content-type": "application/json",
                                                             **bearer(shop["seller"])})
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert await head(pool) == before


async def test_a_repeated_key_is_named_by_its_path(client, shop):
    raw = ('{"items": [{"product_id": "%s", "quantity": 1}], "shipping_address": {"name": "A", "line1": "B",'
           ' "city": "C", "city": "D", "postal_code": "E", "country": "GB"}}' % shop["product"])
    r = await client.post("/orders", content=raw, headers={"content-type": "application/json",
                                                          **bearer(shop["buyer"])})
    assert r.status_code == 422 and r.json()["field"] == "shipping_address.city", r.text


@pytest.mark.parametrize("quantity", ["1", 1.0, "1_000", "١", True])
async def test_a_count_must_be_a_json_integer(client, shop, pool, quantity):
    before = await head(pool)
    r = await client.post("/orders", json={"items": [{"product_id": shop["product"], "quantity": quantity}],
                                           "shipping_address": ADDRESS}, headers=bearer(shop["buyer"]))
    assert r.status_code == 422 and r.json()["field"] == "items[0].quantity", r.text
    assert await head(pool) == before


@pytest.mark.parametrize("limit", ["1e1", "10.0", "١٠", "1_0", " 10"])
async def test_an_integer_in_a_query_must_be_ascii_digits(client, limit):
    r = await client.get("/products", params={"limit": limit})
    assert r.status_code == 422 and r.json()["field"] == "limit", r.text
