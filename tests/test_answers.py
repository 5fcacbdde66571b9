"""One way of answering across the API: times in UTC with `Z`, one title per status, fields named
in the client's terms, ETags honoured with If-None-Match, HEAD on every GET route."""

import re
import uuid

import pytest

from tests.support import account, bearer

ADDRESS = {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "FR"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
async def client(system):
    return system


@pytest.fixture(scope="module")
async def product(client, seller):
    r = await client.post("/products", headers=bearer(seller),
                          json={"name": "Answer mug", "price": "4.00", "currency": "EUR", "stock": 5})
    assert r.status_code == 201, r.text
    return r.json()


def times(value: object) -> list[str]:
    """Every value of a `..._at` member, at any depth."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k.endswith("_at") and isinstance(v, str)] + \
            [t for v in value.values() for t in times(v)]
    if isinstance(value, list):
        return [t for v in value for t in times(v)]
    return []


async def test_every_time_is_utc_ending_in_z(client, admin, seller, product):
    buyer = await account(client, "buyer")
    order = await client.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    answers = [
        await client.get("/auth/me", headers=bearer(buyer)),
        await client.get("/users", headers=bearer(admin)),
        await client.get(f"/products/{product['id']}"),
        await client.get(f"/orders/{order.json()['id']}", headers=bearer(buyer)),
        await client.get("/admin/events", params={"limit": 5}, headers=bearer(admin)),
        await client.post(f"/users/{buyer['id']}/role", headers=bearer(admin), json={"role": "seller"}),
    ]
    found = [t for r in answers for t in times(r.json())]
    assert len(found) >= 8 and all(ISO_Z.match(t) for t in found), found


async def test_every_404_has_the_same_title(client, seller):
    stranger = await account(client, "buyer")
    answers = [await client.get("/nowhere"), await client.get(f"/products/{uuid.uuid4()}"),
               await client.get(f"/orders/{uuid.uuid4()}", headers=bearer(stranger)),
               await client.post(f"/orders/{uuid.uuid4()}/pay", headers=bearer(stranger))]
    assert {(r.status_code, r.json()["title"], r.json()["type"]) for r in answers} == {
        (404, "Not found", "/problems/not-found")}


async def test_a_refused_field_is_named_as_the_client_wrote_it_with_a_sentence(client, seller):
    unknown = await client.post("/auth/register", json={"email": "a@example.com", "password": "long enough pw",
                                                        "name": "A", "nickname": "x"})
    assert unknown.status_code == 422
    assert (unknown.json()["field"], unknown.json()["errors"][0]["message"]) == (
        "nickname", "is not a field of this request")
    nested = await client.post("/products", headers=bearer(seller), json={
        "name": "N", "price": "1.00", "stock": 1, "sku": " padded "})
    assert nested.json()["errors"][0] == {
        "field": "sku", "message": "must be a code without spaces at either end, such as MUG-1", "source": "body"}
    email = await client.post("/auth/register", json={"email": "not an email", "password": "long enough pw",
                                                      "name": "A"})
    assert email.json()["field"] == "email"  # checked on the write side, in its canonical form (events/users.py)
    assert email.json()["detail"].endswith("must be an email address such as ada@example.com")
    missing = await client.post("/auth/login", json={"email": "a@example.com"})
    assert missing.status_code == 422 and missing.json()["errors"] == [
        {"field": "password", "message": "is required", "source": None}]


async def test_if_none_match_answers_304_until_the_resource_changes(client, seller, product):
    first = await client.get(f"/products/{product['id']}")
    tag = first.headers["etag"]
    same = await client.get(f"/products/{product['id']}", headers={"If-None-Match": f'W/"0", {tag}'})
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", tag)
    await client.patch(f"/products/{product['id']}", headers=bearer(seller), json={"price": "4.50"})
    changed = await client.get(f"/products/{product['id']}", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag


async def test_orders_carry_an_etag_that_if_none_match_honours(client, product):
    buyer = await account(client, "buyer")
    placed = await client.post("/orders", headers=bearer(buyer), json={
        "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
    assert placed.headers["etag"] == '"1"'
    url = f"/orders/{placed.json()['id']}"
    held = await client.get(url, headers={**bearer(buyer), "If-None-Match": '"1"'})
    assert held.status_code == 304
    paid = await client.post(f"{url}/pay", headers=bearer(buyer))
    assert paid.headers["etag"] == '"2"'
    assert (await client.get(url, headers={**bearer(buyer), "If-None-Match": '"1"'})).status_code == 200


async def test_head_answers_every_get_route_with_the_headers_alone(client, admin, product):
    for path, headers in (("/health", {}), ("/products", {}), (f"/products/{product['id']}", {}),
                          ("/users", bearer(admin))):
        get, head = await client.get(path, headers=headers), await client.head(path, headers=headers)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-length"] == get.headers["content-length"], path
        assert head.headers["content-type"] == get.headers["content-type"], path
    assert (await client.head("/users")).status_code == 401
