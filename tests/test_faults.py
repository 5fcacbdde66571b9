"""The API when PostgreSQL ends its connections or is down: no 500, and no acknowledged order lost."""

import asyncio
import contextlib
import time
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.app import API_CONNECTIONS, create_app
from tests.support import account, bearer, eventually, serve

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH",
           "country": "GB"}


async def terminate_api_sessions(pool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                 " WHERE application_name = %s AND datname = current_database()", (API_CONNECTIONS,))
        return (await cur.fetchone())[0]


async def _api_sessions_gone(pool) -> bool:
    """The server has ended every terminated session (pg_terminate_backend only asks them to end): each
    has told its client so, which is what the pool's check looks for without a round trip."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                 " AND datname = current_database()", (API_CONNECTIONS,))
        return (await cur.fetchone())[0] == 0


async def test_terminated_database_sessions_under_load_give_no_500_and_lose_no_order(services, pool):
    async with serve(create_app(services.settings(ryw_timeout=0))) as client:
        seller = await account(client, "seller")
        buyers = [await account(client, "buyer") for _ in range(4)]
        statuses, acknowledged, terminated = [], {}, []

        async def place(buyer, product) -> None:
            key = str(uuid.uuid4())
            for _ in range(20):  # a client retries a 503 with the same key, as it should
                r = await client.post("/orders", headers={**bearer(buyer), "Idempotency-Key": key},
                                      json={"items": [{"product_id": product["id"], "quantity": 1}],
                                            "shipping_address": ADDRESS})
                statuses.append(r.status_code)
                if r.status_code == 201:
                    acknowledged[key] = r.json()["id"]
                    if len(acknowledged) % 10 == 0:  # the fault, paced by progress
                        terminated.append(await terminate_api_sessions(pool))
                    return
                assert r.status_code == 503 and r.headers["retry-after"], r.text
            raise AssertionError(f"order {key} never placed")

        async def buy(buyer) -> None:
            # A product of its own for each buyer: keyed orders of one product racing each other are
            # another matter (see the report of issue 15), not this test's.
            product = (await client.post("/products", json={"name": "Mug", "price": "5.00", "stock": 100_000},
                                         headers=bearer(seller))).json()
            while len(acknowledged) < 40:
                await place(buyer, product)
                statuses.append((await client.get(f"/products/{product['id']}")).status_code)
                statuses.append((await client.get("/orders", headers=bearer(buyer))).status_code)

        await asyncio.gather(*(buy(b) for b in buyers))
        assert sum(terminated) > 0, terminated
        assert 500 not in statuses and set(statuses) <= {200, 201, 503}, sorted(set(statuses))
        for order_id in acknowledged.values():
            assert (await client.get(f"/orders/{order_id}", headers=bearer(seller))).status_code == 200
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT data->>'order_id' FROM events WHERE type = 'order.placed'"
                                 " AND data->>'buyer_id' = ANY(%s)", ([b["id"] for b in buyers],))
        placed = [r[0] for r in await cur.fetchall()]
    assert sorted(placed) == sorted(acknowledged.values())  # each once: no loss, no duplicate


async def test_connections_the_server_ended_while_idle_are_replaced_not_used(services, pool):
    async with serve(create_app(services.settings(ryw_timeout=0))) as client:
        buyer = await account(client, "buyer")
        # Reads that each take a connection (a caller is remembered, so /auth/me would need none): the pool grows.
        await asyncio.gather(*(client.get("/orders", headers=bearer(buyer)) for _ in range(12)))
        assert await terminate_api_sessions(pool) >= 4
        await eventually(lambda: _api_sessions_gone(pool), what="the terminated sessions to end")
        started = time.monotonic()
        statuses = [(await client.get("/orders", headers=bearer(buyer))).status_code for _ in range(5)]
        assert statuses == [200] * 5
        assert time.monotonic() - started < 3  # one wait of the pool's backoff, not one per dead connection


@contextlib.asynccontextmanager
async def connections_allowed_again(url: str):
    try:
        yield
    finally:
        await allow_connections(url, True)  # whatever happened, so that the database can be dropped


async def allow_connections(url: str, allowed: bool) -> None:
    name = conninfo_to_dict(url)["dbname"]
    async with await psycopg.AsyncConnection.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.Literal(allowed)))
        if not allowed:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


async def test_while_the_database_is_down_requests_get_503_with_retry_after(services, own_database):
    app = create_app(services.settings(database_url=own_database, database_timeout=1.0, ryw_timeout=0))
    async with serve(app) as client, connections_allowed_again(own_database):
        assert (await client.get("/products")).status_code == 200
        await allow_connections(own_database, False)
        for request in (client.get("/products"), client.post("/auth/login", json={"email": "a@example.com",
                                                                                  "password": "x"})):
            started = time.monotonic()
            r = await request
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["retry-after"]) >= 1
            assert time.monotonic() - started < 5
        assert (await client.get("/ready")).json()["checks"]["postgres"] == "unreachable"
        assert (await client.get("/health")).status_code == 200

        await allow_connections(own_database, True)

        async def back():
            return (await client.get("/products")).status_code == 200
        await eventually(back, what="the API to reach the database again")
