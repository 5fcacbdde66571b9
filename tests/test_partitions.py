"""PROJECTION_PARTITIONS = 2: two workers of one projection each apply their partition, every stream in
order; when one is killed the other takes its partition over; the read tables equal a rebuild."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest

from events.base import Meta
from events.broker import partition_of
from events.commands import catalog, ordering
from events.db import drop_database, make_pool, migrate
from events.orders import Address, pay
from events.users import Actor
from projections.rebuild import rebuild
from tests.conftest import Services
from tests.support import eventually
from workers.partitions import _space
from workers.relay import Relay

pytestmark = pytest.mark.slow
ADDRESS = Address(name="A", line1="B", city="C", postal_code="1", country="NL")


@pytest.fixture(scope="module")
async def partitioned():
    """A database and a vhost of their own: this module's routing keys carry partitions."""
    s = Services(uuid.uuid4().hex[:10])
    await s.admin.create_vhost(s.vhost)
    await migrate(s.database_url)
    pool = make_pool(s.database_url, min_size=1, max_size=8)
    await pool.open()
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(s.database_url, s.rabbitmq_url, poll_seconds=0.2, partitions=2).run(stop))
    try:
        yield s, pool
    finally:
        stop.set()
        await relay
        await pool.close()
        await drop_database(s.database_url)
        await s.admin.delete_vhost(s.vhost)


def worker(services) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", "orders"],
                            env=services.env(PROJECTION_PARTITIONS="2", LOG_LEVEL="WARNING"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def holders(pool) -> dict[int, int]:
    """Partition -> the pid of the worker process consuming it (its lease connection's name says)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT l.objid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s"
            "   AND a.datname = current_database()", (_space("partition", "orders") % 2**32,))
        return {partition: int(name.rsplit("-", 1)[1]) for partition, name in await cur.fetchall()}


async def shop(pool, product, buyers: int, orders_each: int) -> list[uuid.UUID]:
    placed = []
    for b in range(buyers):
        buyer = Actor(uuid.uuid4(), "buyer")
        for i in range(orders_each):
            order, _ = await ordering.place(pool, buyer.id, [(product.id, 1)], ADDRESS, Meta(actor="test"))
            placed.append(order.id)
            if i % 2:  # a second event on the stream: its order must hold within the partition
                await ordering.transition(pool, order.id, buyer, lambda o, a=buyer: pay(o, a, "r"), Meta(),
                                          moves_stock=False)
    async with pool.connection() as conn:
        await conn.execute("NOTIFY orders_events")
    return placed


async def projected(pool, order_ids: list[uuid.UUID]) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM orders o WHERE o.id = ANY(%s) AND o.version ="
            " (SELECT max(version) FROM events WHERE stream_id = 'order-' || o.id)", (order_ids,))
        return (await cur.fetchone())[0] == len(order_ids)


async def test_two_workers_share_the_partitions_and_one_takes_over_when_the_other_dies(partitioned):
    services, pool = partitioned
    product = await catalog.create(pool, uuid.uuid4(), {"name": "Part", "price": Decimal("1.00"), "currency": "EUR",
                                                        "stock": 100_000}, Meta(actor="test"))
    workers = [worker(services), worker(services)]
    try:
        async def one_each():
            found = await holders(pool)
            return found if len(found) == 2 and set(found.values()) == {w.pid for w in workers} else None
        held = await eventually(one_each, timeout=30, what="each worker to hold one partition")
        first = await shop(pool, product, buyers=6, orders_each=10)
        assert {partition_of(f"order-{o}", 2) for o in first} == {0, 1}  # both partitions carry orders
        await eventually(lambda: projected(pool, first), timeout=60, what="both partitions applied")

        victim = workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        survivor = workers[1].pid

        async def taken_over():
            return await holders(pool) == {0: survivor, 1: survivor}
        await eventually(taken_over, timeout=30, what="the survivor to take both partitions")
        assert held  # before the kill: one partition each
        second = await shop(pool, product, buyers=4, orders_each=10)
        await eventually(lambda: projected(pool, first + second), timeout=60, what="every order after the kill")
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(15)
    check = await rebuild(services.database_url, ["orders"], verify=True, dry_run=True, progress=None)
    assert check["differences"] == {"orders": 0, "order_lines": 0}
