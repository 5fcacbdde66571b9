import uuid

import pytest
from tests.support import serve

from api.app import create_app


@pytest.fixture
async def client(services):
    async with serve(create_app(services.settings())) as c:
        yield c


async def test_health_answers_without_dependencies(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_ready_answers_200_when_postgres_and_rabbitmq_are_reachable(client):
    r = await client.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"] == {"postgres": "ok", "rabbitmq": "ok"}


async def test_ready_answers_503_as_a_problem_when_rabbitmq_is_unreachable(services):
    app = create_app(services.settings(rabbitmq_url="amqp://guest:guest@127.0.0.1:1/"))
    async with serve(app) as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["checks"] == {"postgres": "ok", "rabbitmq": "unreachable"}


async def test_openapi_document_is_served_under_schema(client):
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    assert "/health" in r.json()["paths"]


async def test_an_unknown_path_is_a_404_problem(client):
    r = await client.get("/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 404 and r.json()["title"] == "Not found"


@pytest.mark.parametrize("path, methods", [
    ("/products", "GET, HEAD, OPTIONS, POST"),
    ("/products/ID", "DELETE, GET, HEAD, OPTIONS, PATCH"),
    ("/orders", "GET, HEAD, OPTIONS, POST"),
    ("/cart", "DELETE, GET, HEAD, OPTIONS"),
    ("/cart/items/ID", "DELETE, OPTIONS, PUT"),
    ("/orders/ID", "GET, HEAD, OPTIONS"),
])
async def test_options_lists_every_method_of_the_resource(client, path, methods):
    r = await client.options(path.replace("ID", str(uuid.uuid4())))
    assert r.status_code == 204 and r.headers["allow"] == methods
