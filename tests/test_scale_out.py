"""Two copies of every worker and two relays, as real processes; one worker killed mid-stream."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from api.app import create_app
from projections.rebuild import rebuild
from tests.support import account, admin_account, bearer, eventually, serve

pytestmark = pytest.mark.slow
ADDRESS = {"name": "A", "line1": "B", "city": "C", "postal_code": "1", "country": "NL"}


def start(services, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.cli", *argv], env=services.env(LOG_LEVEL="WARNING"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_doubled_workers_and_relays_with_a_kill_leave_the_tables_exact(services, pool):
    procs = {name: [start(services, *argv) for _ in range(2)]
             for name, argv in (("relay", ["relay"]), ("users", ["worker", "users"]),
                                ("catalog", ["worker", "catalog"]), ("orders", ["worker", "orders"]))}
    try:
        async with serve(create_app(services.settings())) as client:
            admin = await admin_account(client, pool, services.settings())
            seller = await account(client, "seller")
            products = [(await client.post("/products", headers=bearer(seller), json={
                "name": f"Scale {i}", "price": "2.00", "currency": "EUR", "stock": 1000})).json()["id"]
                for i in range(5)]
            buyers = [await account(client, "buyer") for _ in range(4)]

            async def shop(buyer, n):
                for i in range(n):
                    r = await client.post("/orders", headers=bearer(buyer), json={
                        "items": [{"product_id": products[i % 5], "quantity": 1 + i % 3}], "shipping_address": ADDRESS})
                    assert r.status_code == 201, r.text
                    if i % 2:
                        await client.post(f"/orders/{r.json()['id']}/pay", headers=bearer(buyer))

            traffic = asyncio.gather(*(shop(b, 15) for b in buyers))

            async def mid_stream():
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT count(*) FROM events WHERE type = 'order.placed'")
                    return (await cur.fetchone())[0] >= 10
            await eventually(mid_stream, what="orders flowing")
            for victim in procs["orders"] + procs["catalog"][:1]:
                os.kill(victim.pid, signal.SIGKILL)  # the orders worker twice: active and standby both die
            procs["orders"] = [start(services, "worker", "orders")]
            await traffic

            async def caught_up():
                statuses = (await client.get("/admin/projections", headers=bearer(admin))).json()
                return all(s["events_behind"] == 0 and s["queued"] == 0 for s in statuses if s["name"] != "relay")
            await eventually(caught_up, timeout=60, what="every projection to catch up")
    finally:
        for group in procs.values():
            for p in group:
                if p.poll() is None:
                    p.terminate()
        for group in procs.values():
            for p in group:
                p.wait(15)
    check = await rebuild(services.database_url, verify=True, dry_run=True, progress=None)
    assert check["differences"] == {t: 0 for t in ("users", "products", "orders", "order_lines")}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM orders),"
            " (SELECT count(*) FROM events WHERE type = 'order.placed'),"
            " (SELECT count(*) FROM order_lines),"
            " (SELECT coalesce(sum(jsonb_array_length(data->'lines')), 0) FROM events WHERE type = 'order.placed')")
        orders, placed, lines, placed_lines = await cur.fetchone()
    assert orders == placed and lines == placed_lines
