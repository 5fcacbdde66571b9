"""Operations: rebuild live, status, the event log."""

import asyncio
import json
import random
import re
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest

from projections.rebuild import rebuild
from tests.support import account, bearer, eventually, free_port

ADDRESS = {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "FR"}


@pytest.fixture(scope="module")
async def client(system):
    return system


async def workload(client, admin, seller, rounds: int = 6) -> None:
    """Registrations, products, orders and transitions, in a random mix."""
    rng = random.Random(42)
    buyers = [await account(client, "buyer") for _ in range(3)]
    made = []
    for i in range(rounds):
        r = await client.post("/products", headers=bearer(seller), json={
            "name": f"Ops thing {i}", "price": f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}", "currency": "EUR",
            "stock": rng.randint(3, 9)})
        made.append(r.json()["id"])
        if rng.random() < 0.5:
            await client.patch(f"/products/{made[-1]}", headers=bearer(seller), json={"price": "5.00"})
    for buyer in buyers:
        for _ in range(rounds // 2):
            r = await client.post("/orders", headers=bearer(buyer), json={
                "items": [{"product_id": rng.choice(made), "quantity": 1}], "shipping_address": ADDRESS})
            if r.status_code != 201:
                continue
            order = r.json()["id"]
            step = rng.random()
            if step < 0.3:
                await client.post(f"/orders/{order}/cancel", headers=bearer(buyer))
            elif step < 0.8:
                await client.post(f"/orders/{order}/pay", headers=bearer(buyer))
                if step < 0.6:
                    await client.post(f"/orders/{order}/ship", headers=bearer(admin))
    await client.post(f"/users/{buyers[0]['id']}/role", headers=bearer(admin), json={"role": "seller"})


async def caught_up(client, admin) -> bool:
    statuses = (await client.get("/admin/projections", headers=bearer(admin))).json()
    return all(s["events_behind"] == 0 for s in statuses if s["name"] != "relay")


async def test_a_rebuild_after_a_random_workload_equals_the_live_tables(client, admin, seller, services):
    await workload(client, admin, seller)
    await eventually(lambda: caught_up(client, admin), what="the projections to catch up")
    dry = await rebuild(services.database_url, verify=True, dry_run=True, progress=None)
    assert dry["events"] > 40
    assert dry["differences"] == {t: 0 for t in ("users", "products", "orders", "order_lines")}
    # The path a long log takes: each projection split over processes by stream.
    parallel = await rebuild(services.database_url, verify=True, dry_run=True, progress=None, processes=2)
    assert parallel["differences"] == dry["differences"]
    schema = await table_definitions(services.database_url)
    real = await rebuild(services.database_url, ["catalog", "orders"], verify=True, progress=None, processes=2)
    assert real["differences"] == {"products": 0, "orders": 0, "order_lines": 0}
    assert await table_definitions(services.database_url) == schema  # indexes, keys, foreign keys
    r = await client.get("/products", params={"limit": 5})
    assert r.status_code == 200 and r.json()["items"]


async def test_a_rebuild_during_traffic_swaps_in_without_a_failed_request(client, admin, seller, services):
    buyer = await account(client, "buyer")
    product = (await client.post("/products", headers=bearer(seller), json={
        "name": "Busy thing", "price": "3.00", "currency": "EUR", "stock": 100000})).json()
    stop = asyncio.Event()
    codes: list[int] = []

    async def traffic():
        while not stop.is_set():
            r1 = await client.get("/products", params={"limit": 10})
            r2 = await client.post("/orders", headers=bearer(buyer), json={
                "items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": ADDRESS})
            r3 = await client.get("/orders", headers=bearer(buyer))
            codes.extend([r1.status_code, r2.status_code, r3.status_code])

    runners = [asyncio.create_task(traffic()) for _ in range(3)]
    try:
        await eventually(lambda: _value(len(codes) > 10), what="traffic")
        result = await rebuild(services.database_url, progress=None)
        before = len(codes)
        await eventually(lambda: _value(len(codes) > before + 10), what="traffic after the swap")
    finally:
        stop.set()
        await asyncio.gather(*runners)
    assert result["events"] > 0
    assert set(codes) <= {200, 201}, sorted(set(codes))
    await eventually(lambda: caught_up(client, admin), what="the projections to catch up")
    check = await rebuild(services.database_url, verify=True, dry_run=True, progress=None)
    assert check["differences"] == {t: 0 for t in ("users", "products", "orders", "order_lines")}


async def table_definitions(database_url: str) -> list[tuple]:
    """Every index and constraint of the read tables, as DDL."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid::regclass::text = ANY(%s)"
            " UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
            " ORDER BY 1, 2, 3", [["users", "products", "orders", "order_lines"]] * 2)
        return await cur.fetchall()


@pytest.mark.parametrize("processes", [1, 2])
async def test_an_unknown_event_type_fails_a_rebuild_loudly(services, pool, processes):
    stream = f"product-{uuid.uuid4()}"
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO events (event_id, stream_id, version, type, data, correlation_id)"
                           " VALUES (%s, %s, 1, 'product.teleported', '{}', %s)", (uuid.uuid4(), stream, uuid.uuid4()))
    try:
        with pytest.raises(LookupError, match="product.teleported"):
            await rebuild(services.database_url, ["catalog"], progress=None, processes=processes)
    finally:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM events WHERE stream_id = %s", (stream,))
            await conn.execute("DROP SCHEMA IF EXISTS rebuild CASCADE")


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_the_rebuild_command_names_an_unknown_event_type_in_one_line(services, pool, processes):
    stream = f"product-{uuid.uuid4()}"
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO events (event_id, stream_id, version, type, data, correlation_id)"
                           " VALUES (%s, %s, 1, 'product.weird', '{}', %s)", (uuid.uuid4(), stream, uuid.uuid4()))
    try:
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "workers.cli", "projections", "rebuild", "catalog",
                             "--processes", processes], env=services.env(), capture_output=True, text=True,
            timeout=120)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'rebuild'")
            shadow_schemas = (await cur.fetchone())[0]
    finally:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM events WHERE stream_id = %s", (stream,))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "connection is closed" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"rebuild stopped: unknown event type 'product.weird' in stream {stream} at version 1;"), result.stderr
    assert shadow_schemas == 0


def test_redrive_names_the_known_projections_when_given_an_unknown_one(services):
    result = subprocess.run([sys.executable, "-m", "workers.cli", "projections", "redrive", "nosuch"],
                            env=services.env(), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "unknown projection(s): nosuch; known: users, catalog, orders"


async def test_status_shows_each_projection_from_the_cli_and_the_api(client, admin, services):
    r = await client.get("/admin/projections", headers=bearer(admin))
    assert r.status_code == 200
    names = {s["name"]: s for s in r.json()}
    assert set(names) == {"relay", "users", "orders", "catalog"}
    assert names["users"]["queued"] is not None and names["users"]["dead_lettered"] == 0
    result = subprocess.run([sys.executable, "-m", "workers.cli", "projections", "status"], env=services.env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("relay", "users", "orders", "catalog"))
    buyer = await account(client, "buyer")
    assert (await client.get("/admin/projections", headers=bearer(buyer))).status_code == 403


async def test_verify_shows_a_damaged_row_and_a_rebuild_repairs_it(client, admin, seller, services, pool):
    product = (await client.post("/products", headers=bearer(seller), json={
        "name": "Pristine", "price": "2.00", "currency": "EUR", "stock": 3})).json()
    await eventually(lambda: caught_up(client, admin), what="the projections to catch up")
    async with pool.connection() as conn:
        await conn.execute("UPDATE products SET name = 'Damaged' WHERE id = %s", (product["id"],))
    check = await rebuild(services.database_url, ["catalog"], verify=True, dry_run=True, progress=None)
    assert check["differences"] == {"products": 2}  # the row as rebuilt, and the row as it is live
    assert any("Pristine" in row and row.startswith("rebuilt only") for row in check["examples"]["products"])
    assert any("Damaged" in row and row.startswith("live only") for row in check["examples"]["products"])
    await rebuild(services.database_url, ["catalog"], progress=None)
    assert (await client.get(f"/products/{product['id']}")).json()["name"] == "Pristine"


async def test_the_rebuild_command_verifies_in_processes_with_progress_lines_that_agree_with_its_summary(
        client, admin, services):
    await eventually(lambda: caught_up(client, admin), what="the projections to catch up")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "workers.cli", "projections", "rebuild", "--dry-run", "--verify",
                         "--processes", "2"], env=services.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("rebuild: ")]
    assert progress and "\r" not in result.stderr  # not a terminal: plain lines, no bar
    done, total = re.match(r"rebuild: ([\d,]+)/([\d,]+) events \(100%\), [\d,]+ events/s$", progress[-1]).groups()
    assert done == total == re.search(r"^replayed ([\d,]+) events into the read tables", result.stdout, re.M)[1]
    for table in ("users", "products", "orders", "order_lines"):
        assert f"{table}: equal to the live table" in result.stdout


async def test_the_event_log_filters_by_stream_type_correlation_and_position(client, admin, seller):
    correlation = str(uuid.uuid4())
    r = await client.post("/products", headers={**bearer(seller), "X-Correlation-ID": correlation},
                          json={"name": "Logged", "price": "1.00", "currency": "EUR", "stock": 1})
    product = r.json()["id"]
    page = (await client.get("/admin/events", params={"correlation_id": correlation}, headers=bearer(admin))).json()
    assert [e["type"] for e in page["items"]] == ["product.created"]
    event = page["items"][0]
    assert event["stream_id"] == f"product-{product}" and event["data"]["name"] == "Logged"
    assert event["actor"] == f"user:{seller['id']}"
    by_stream = (await client.get("/admin/events", params={"stream_id": f"product-{product}"},
                                  headers=bearer(admin))).json()["items"]
    assert [e["version"] for e in by_stream] == [1]
    typed = (await client.get("/admin/events", params={"type": "product.created", "limit": 2},
                              headers=bearer(admin))).json()
    assert all(e["type"] == "product.created" for e in typed["items"]) and typed["next_cursor"]
    later = (await client.get("/admin/events", params={"type": "product.created", "cursor": typed["next_cursor"]},
                              headers=bearer(admin))).json()["items"]
    assert later and later[0]["position"] > typed["items"][-1]["position"]
    by_position = (await client.get("/admin/events", params={"type": "product.created",
                                                             "after": typed["items"][-1]["position"]},
                                    headers=bearer(admin))).json()["items"]
    assert by_position == later[:len(by_position)]
    other = await client.get("/admin/events", params={"type": "order.placed", "cursor": typed["next_cursor"]},
                             headers=bearer(admin))
    assert other.status_code == 422 and other.json()["field"] == "cursor"
    assert (await client.get("/admin/events", headers=bearer(seller))).status_code == 403


async def _value(v):
    return v


async def test_metrics_are_served_in_the_prometheus_format(client):
    await client.get("/products", params={"limit": 1})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'orders_http_requests_total{method="GET",route="/products",status="200"}' in text
    assert 'orders_http_request_seconds_bucket{le="+Inf",method="GET",route="/products"}' in text
    for name in ("orders_events_appended", "orders_events_published", "orders_relay_lag_seconds",
                 'orders_projection_behind_events{projection="orders"}',
                 'orders_projection_dead_lettered_messages{projection="catalog"}',
                 'orders_projection_lag_seconds{projection="users"}', "orders_oldest_transaction_seconds"):
        assert name in text, name
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(len(line.rsplit(" ", 1)) == 2 and float(line.rsplit(" ", 1)[1]) >= 0 for line in samples)


async def test_a_requests_correlation_id_reaches_its_events_logs_and_the_projection_worker(client, admin, seller,
                                                                                          caplog):
    import logging

    from events.context import JsonFormatter

    caplog.set_level(logging.DEBUG)
    cid = str(uuid.uuid4())
    r = await client.post("/products", headers={**bearer(seller), "X-Correlation-ID": cid},
                          json={"name": "Traced", "price": "1.00", "currency": "EUR", "stock": 1})
    assert r.headers["x-correlation-id"] == cid
    events = (await client.get("/admin/events", params={"correlation_id": cid}, headers=bearer(admin))).json()
    assert [e["type"] for e in events["items"]] == ["product.created"]
    # the catalog worker applied it (the 201 waited for that) with the id in its context
    worker_lines = [JsonFormatter().format(rec) for rec in caplog.records if rec.name == "workers.consumer"]
    assert any(f'"correlation_id": "{cid}"' in line and "product.created" in line for line in worker_lines)


async def test_a_401_from_the_bearer_auth_is_measured_as_401_and_carries_the_correlation_id(client):
    cid = str(uuid.uuid4())
    r = await client.get("/cart", headers={"X-Correlation-ID": cid})
    assert r.status_code == 401 and r.headers.get("x-correlation-id") == cid
    text = (await client.get("/metrics")).text
    assert 'orders_http_requests_total{method="GET",route="/cart",status="401"}' in text
    assert 'route="/cart",status="500"' not in text


async def test_the_api_process_logs_json_lines_with_the_requests_correlation_id(services):
    port, cid = free_port(), str(uuid.uuid4())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.cli", "api", "--port", str(port), env=services.env(LOG_LEVEL="DEBUG"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []

    async def collect():
        async for line in proc.stdout:
            lines.append(line.decode())
    reader = asyncio.create_task(collect())  # read as it comes: debug logging would fill the pipe

    async def ready():
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{port}/ready", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return proc.returncode is not None  # stop waiting on a process that died
    try:
        await eventually(ready, timeout=60, what="the API to answer /ready")
        async with httpx.AsyncClient() as http:  # /metrics logs per request: it asks RabbitMQ for queues
            r = await http.get(f"http://127.0.0.1:{port}/metrics", headers={"X-Correlation-ID": cid}, timeout=30)
        assert r.status_code == 200
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
            await reader
    entries = []
    for line in filter(str.strip, lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line of the API is not JSON: {line!r}")
    assert any(e["message"] == "Application startup complete." for e in entries), lines
    assert any(e.get("correlation_id") == cid for e in entries), lines
