"""/ready and /metrics under many callers: one broker connection per API process, answers shared for a
second; /metrics behind a token when one is set."""

import asyncio
import os

import pytest

from api.app import create_app
from tests.support import eventually, serve

TOKEN = "a-metrics-token-for-prometheus-only"


@pytest.fixture
async def served(services):
    app = create_app(services.settings())
    async with serve(app) as client:
        yield app, client


async def api_connections(services) -> list[str]:
    return [c["client_properties"].get("connection_name") for c in await services.admin.connections(services.vhost)
            if c["client_properties"].get("connection_name") == f"orders-api-{os.getpid()}"]


async def test_fifty_concurrent_callers_of_metrics_and_ready_share_one_broker_connection(served, services):
    app, client = served
    answers = await asyncio.gather(*(client.get(path) for path in ("/metrics", "/ready") for _ in range(50)))
    assert [r.status_code for r in answers] == [200] * 100
    assert all("orders_projection_queued_messages" in r.text for r in answers[:50])
    assert app.state.broker.connects == 1
    assert app.state.system_figures.loads <= 3 and app.state.readiness.loads <= 3  # a second's worth of callers

    async def one_connection():
        return await api_connections(services) == [f"orders-api-{os.getpid()}"]
    await eventually(one_connection, what="one orders-api connection in the management API")


async def test_ready_reconnects_after_the_broker_drops_its_connection(served, services):
    app, client = served
    assert (await client.get("/ready")).status_code == 200
    await eventually(lambda: services.admin.close_connections(services.vhost, f"orders-api-{os.getpid()}"),
                     what="the management API to list the connection, and cut it")

    async def ready_again():
        return (await client.get("/ready")).status_code == 200 and app.state.broker.connects == 2
    await eventually(ready_again, what="/ready on a new connection")


async def test_metrics_answer_only_to_the_metrics_token_when_one_is_set(services):
    async with serve(create_app(services.settings(metrics_token=TOKEN))) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["www-authenticate"] == "Bearer"
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and "orders_events_appended" in r.text
        assert (await client.get("/ready")).status_code == 200  # readiness stays open to load balancers
