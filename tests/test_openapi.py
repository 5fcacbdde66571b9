"""The OpenAPI document is true to the API: every answer the main routes give, in success and in
failure, is documented for its operation (status, media type, headers); and the docs pages load
everything they need from the app itself."""

import re
import uuid

import httpx
import pytest

from api.app import create_app
from tests.support import PASSWORD, account, bearer, limits, serve

ADDRESS = {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "FR"}
# Headers whose presence in an answer the document must announce (the rest are HTTP's own).
ANNOUNCED = {"etag", "location", "idempotent-replayed", "retry-after", "www-authenticate", "x-correlation-id"}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
                    "0000000a4944415478da6360000000020001e527defc0000000049454e44ae426082")  # one grey pixel
PUBLIC = {"health", "ready", "metrics", "register", "login", "refresh", "listProducts", "getProduct",
          "paymentWebhook", "getTestPaymentSession", "actOnTestPaymentSession"}  # the provider has no token


@pytest.fixture(scope="module")
async def document(system):
    r = await system.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()


def operation(document: dict, method: str, path: str) -> dict:
    for template, item in document["paths"].items():
        if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), path) and method.lower() in item:
            return item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the document")


def undocumented(document: dict, answer: httpx.Response) -> list[str]:
    """What of this answer its operation does not document: the status, the media type, headers."""
    request = answer.request
    op = operation(document, request.method, request.url.path)
    where = f"{request.method} {request.url.path} -> {answer.status_code}"
    documented = op["responses"].get(str(answer.status_code))
    if documented is None:
        return [f"{where}: status not documented (has {sorted(op['responses'])})"]
    missing = []
    media = answer.headers.get("content-type", "").split(";")[0]
    if answer.content and media not in {m.split(";")[0] for m in documented.get("content", {})}:
        missing.append(f"{where}: {media} not documented")
    headers = {h.lower() for h in documented.get("headers", {})}
    missing += [f"{where}: header {h} not documented" for h in ANNOUNCED & set(answer.headers) - headers]
    return missing


@pytest.fixture(scope="module")
async def answers(system, pool, services):
    """The answers of the main routes, each way they can go, through one recording client."""
    seen: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response)

    async with httpx.AsyncClient(base_url=system.base_url, event_hooks={"response": [record]},
                                 limits=limits()) as c:
        await walk(c, pool, services)
    async with serve(create_app(services.settings(login_rate_limit=1, max_body_bytes=512,
                                                  rabbitmq_url="amqp://guest:guest@127.0.0.1:1/"))) as limited:
        async with httpx.AsyncClient(base_url=limited.base_url, event_hooks={"response": [record]},
                                     limits=limits()) as c:
            await c.get("/ready")  # 503: RabbitMQ unreachable
            await c.post("/auth/register", content=b"x" * 1024, headers={"content-type": "application/json"})  # 413
            for _ in range(2):
                await c.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong"})  # 429
    return seen


async def walk(c: httpx.AsyncClient, pool, services) -> None:
    from tests.support import admin_account

    await c.get("/health")
    await c.get("/ready")
    await c.get("/metrics")
    seller, buyer = await account(c, "seller"), await account(c, "buyer")
    admin = await admin_account(c, pool, services.settings())
    await c.post("/auth/register", json={"email": seller["email"], "password": PASSWORD, "name": "Again"})  # 409
    await c.post("/auth/register", json={"email": "not an email", "password": PASSWORD, "name": "X"})  # 422
    await c.post("/auth/register", content=b"{nope", headers={"content-type": "application/json"})  # 400
    await c.post("/auth/login", data={"username": buyer["email"], "password": PASSWORD})  # the form
    await c.post("/auth/login", json={"email": buyer["email"], "password": "wrong password"})  # 401
    await c.post("/auth/login", json={"email": buyer["email"]})  # 422
    refreshed = await c.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})
    await c.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})  # 401: spent
    buyer = {**buyer, **(await c.post("/auth/login", json={"email": buyer["email"], "password": PASSWORD})).json()}
    assert refreshed.status_code == 200
    await c.get("/auth/me", headers=bearer(buyer))
    await c.get("/auth/me")  # 401
    await c.get("/users", headers=bearer(admin))
    await c.get("/users", headers=bearer(buyer))  # 403
    await c.get("/users", params={"limit": 0}, headers=bearer(admin))  # 422
    await c.post(f"/users/{uuid.uuid4()}/role", headers=bearer(admin), json={"role": "seller"})  # 404

    made = await c.post("/products", headers=bearer(seller), json={"name": "Doc mug", "price": "3.00", "stock": 2})
    product = made.json()["id"]
    await c.post("/products", headers=bearer(buyer), json={"name": "X", "price": "1.00", "stock": 1})  # 403
    await c.post("/products", headers=bearer(seller), json={"name": "X", "price": "1.00"})  # 422
    got = await c.get(f"/products/{product}")
    await c.get(f"/products/{product}", headers={"If-None-Match": got.headers["etag"]})  # 304
    await c.get(f"/products/{uuid.uuid4()}")  # 404
    await c.get("/products/not-a-uuid")  # 404
    page = (await c.get("/products", params={"limit": 1})).json()
    await c.get("/products", params={"limit": 1, "sort": "price", "cursor": page["next_cursor"] or "x"})  # 422
    await c.patch(f"/products/{product}", headers={**bearer(seller), "If-Match": '"1"'}, json={"price": "3.50"})
    await c.patch(f"/products/{product}", headers={**bearer(seller), "If-Match": '"1"'}, json={"price": "4"})  # 412
    await c.post(f"/products/{product}/restock", headers=bearer(seller), json={"quantity": 3})
    image = await c.post(f"/products/{product}/images", headers=bearer(seller), files={"file": ("a.png", PNG)})
    await c.post(f"/products/{product}/images", headers=bearer(seller), files={"file": ("a.png", b"text")})  # 415
    await c.delete(f"/products/{product}/images/{image.json()['images'][0]['id']}", headers=bearer(seller))

    await c.put(f"/cart/items/{product}", headers=bearer(buyer), json={"quantity": 1})
    await c.get("/cart", headers=bearer(buyer))
    await c.put(f"/cart/items/{uuid.uuid4()}", headers=bearer(buyer), json={"quantity": 1})  # 404
    await c.post("/cart/checkout", headers=bearer(buyer), json={"shipping_address": ADDRESS})
    await c.post("/cart/checkout", headers=bearer(buyer), json={"shipping_address": ADDRESS})  # 422: empty

    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"items": [{"product_id": product, "quantity": 1}], "shipping_address": ADDRESS}
    placed = await c.post("/orders", headers={**bearer(buyer), **key}, json=body)
    await c.post("/orders", headers={**bearer(buyer), **key}, json=body)  # replayed
    await c.post("/orders", headers=bearer(buyer), json={**body, "items": [{"product_id": product, "quantity": 99}]})
    order = placed.json()["id"]
    await c.get(f"/orders/{order}", headers={**bearer(buyer), "If-None-Match": placed.headers["etag"]})  # 304
    await c.get(f"/orders/{order}", headers=bearer(seller))
    await c.get(f"/orders/{order}", headers=bearer(await account(c, "buyer")))  # 404
    await c.get("/orders", headers=bearer(buyer))
    await c.post(f"/orders/{order}/ship", headers=bearer(buyer))  # 403
    await c.post(f"/orders/{order}/pay", headers=bearer(buyer))  # no body
    await c.post(f"/orders/{order}/pay", headers=bearer(buyer), json={"reference": "again"})  # 409
    await c.post(f"/orders/{order}/ship", headers=bearer(admin))
    await c.post(f"/orders/{order}/deliver", headers=bearer(seller))
    await c.post(f"/orders/{order}/cancel", headers=bearer(buyer), json={"reason": "late"})  # 409
    await c.get("/admin/events", params={"limit": 2}, headers=bearer(admin))
    await c.get("/admin/projections", headers=bearer(admin))
    await c.delete(f"/products/{product}", headers=bearer(seller))
    await c.post("/auth/logout", headers=bearer(buyer))


def test_the_document_is_valid_openapi(document):
    from openapi_spec_validator import validate

    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_every_answer_of_the_main_routes_is_documented_for_its_operation(document, answers):
    statuses = {a.status_code for a in answers}
    assert statuses >= {200, 201, 204, 304, 400, 401, 403, 404, 409, 412, 413, 422, 429, 503}, statuses
    assert [m for a in answers for m in undocumented(document, a)] == []


def test_errors_are_documented_as_problems_and_validation_as_422(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status >= "400":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            if any(p.get("in") == "query" for p in op.get("parameters", [])):
                assert "422" in op["responses"] and "400" not in op["responses"], (method, path)


def test_only_the_routes_that_need_a_token_ask_for_one(document):
    ops = {op["operationId"]: op for item in document["paths"].values() for op in item.values()}
    assert {name for name, op in ops.items() if "security" not in op} == PUBLIC
    assert all(op["security"] == [{"bearer": []}] and "401" in op["responses"]
               for name, op in ops.items() if name not in PUBLIC)
    assert "security" not in document


def test_bodies_headers_enums_and_descriptions_are_documented(document):
    login = operation(document, "POST", "/auth/login")["requestBody"]["content"]
    assert set(login) == {"application/json", "application/x-www-form-urlencoded"}
    assert operation(document, "POST", f"/orders/{uuid.uuid4()}/pay")["requestBody"]["required"] is False
    schemas = document["components"]["schemas"]
    assert schemas["OrderOut"]["properties"]["status"]["enum"] == [
        "pending", "paid", "shipped", "delivered", "cancelled", "expired"]
    assert schemas["UserOut"]["properties"]["role"]["enum"] == ["buyer", "seller", "admin"]
    placing = operation(document, "POST", "/orders")
    assert {"Idempotency-Key"} <= {p.get("name") for p in placing["parameters"]}
    assert set(placing["responses"]["201"]["headers"]) >= {"ETag", "Location", "Idempotent-Replayed"}
    assert "If-Match" in {p.get("name") for p in operation(document, "PATCH", f"/products/{uuid.uuid4()}")["parameters"]}
    assert "Retry-After" in operation(document, "POST", "/auth/login")["responses"]["429"]["headers"]
    assert document["info"]["description"]
    assert all(op.get("description") for item in document["paths"].values() for op in item.values())


def test_bodies_that_refuse_unknown_fields_are_documented_as_closed(document):
    """A field a body does not know is a 422 ("is not a field of this request"): the document says so
    (`additionalProperties: false`), or a client or fuzzer working from it sends extra fields in good faith."""
    schemas = document["components"]["schemas"]
    closed = ("RegisterIn", "ProductIn", "ProductPatch", "OrderIn", "ItemIn", "AddressIn", "PayIn", "RoleIn")
    assert {name: schemas[name].get("additionalProperties") for name in closed} == dict.fromkeys(closed, False)
    assert "additionalProperties" not in schemas["LoginIn"] | schemas["RefreshIn"]  # these ignore extra fields


async def test_the_docs_pages_and_every_asset_they_reference_come_from_the_app(system):
    for page in ("/schema", "/schema/swagger"):
        html = await system.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert len(references) >= 3 and all(ref.startswith("/schema/") for ref in references), references
        for ref in references:
            asset = await system.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 1000, ref


def test_the_image_upload_documents_its_multipart_body(document):
    op = operation(document, "POST", f"/products/{uuid.uuid4()}/images")
    (media,) = op["requestBody"]["content"]
    assert media == "multipart/form-data" and op["requestBody"]["required"] is True
    schema = document["components"]["schemas"][op["requestBody"]["content"][media]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["file"] and schema["properties"]["file"]["format"] == "binary"
    assert {"413", "415"} <= set(op["responses"])
