"""Throughput of the write spine (event store appends, outbox relay), each figure beside a ceiling
measured in the same run on the same servers. Run by hand: python -m tests.bench.bench_spine

Not a test (pytest does not collect it): the numbers depend on the machine, so it prints rather than
asserts. It uses a database and a vhost of its own and removes both, even when it fails.
"""

import asyncio
import os
import time
import uuid

import aio_pika
import msgspec
from psycopg.conninfo import make_conninfo

from events import store
from events.db import drop_database, make_pool, migrate
from tests.support import ADMIN_DATABASE_URL, RABBITMQ_HOST, Happened, RabbitAdmin
from workers import topology
from workers.relay import CHECKPOINT, Relay, message

SECONDS = 5.0  # per append measurement: long enough to span several WAL flushes and checkpoints of noise
WRITERS = (1, 16)
RELAY_EVENTS = 20_000
PUBLISH_BATCH = 1000  # the relay's default batch_size, so the ceiling publishes the way the relay does
TARGET = 0.70

PLAIN_TABLE = """CREATE TABLE plain_inserts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, u uuid NOT NULL, t text NOT NULL, j jsonb NOT NULL)"""


async def run_writers(pool, writers: int, make_work) -> tuple[int, float, float]:
    """Commits done by `writers` concurrent connections in SECONDS; returns (commits, wall, client CPU share)."""
    conns = [await pool.getconn() for _ in range(writers)]  # taken before the clock starts
    counts = [0] * writers

    async def writer(i: int) -> None:
        work = make_work(i)
        while time.monotonic() < deadline:
            await work(conns[i])
            counts[i] += 1

    cpu, start = time.process_time(), time.monotonic()
    deadline = start + SECONDS
    try:
        await asyncio.gather(*(writer(i) for i in range(writers)))
    finally:
        for c in conns:
            await pool.putconn(c)
    wall = time.monotonic() - start
    return sum(counts), wall, (time.process_time() - cpu) / wall


def plain_insert(i: int):
    async def work(conn) -> None:
        # The same transaction wrapper as an append, so the ratio measures the store, not the driver.
        async with conn.transaction():
            await conn.execute("INSERT INTO plain_inserts (u, t, j) VALUES (%s, %s, %s::jsonb)",
                               (uuid.uuid4(), f"plain-{i}", msgspec.json.encode(Happened(writer=i)).decode()))
    return work


def store_append(batch: int):
    def make(i: int):
        # One stream per writer: concurrent writers never conflict, so every attempt is a commit.
        stream, version = f"bench-{uuid.uuid4()}", 0

        async def work(conn) -> None:
            nonlocal version
            async with conn.transaction():
                version = await store.append(conn, stream, version,
                                             [Happened(writer=i, seq=version + k) for k in range(batch)])
        return work
    return make


async def append_rows(pool, label: str) -> list[tuple]:
    """Rows of (label, writers, events/s, commits/s, ceiling commits/s, client CPU)."""
    rows = []
    for n in WRITERS:
        # The ceiling is measured right before the appends it is compared with, under the same table sizes.
        commits, wall, _ = await run_writers(pool, n, plain_insert)
        ceiling = commits / wall
        for batch in (1, 10):
            commits, wall, cpu = await run_writers(pool, n, store_append(batch))
            rows.append((f"{label}, {batch} event(s)/commit", n, commits * batch / wall, commits / wall, ceiling, cpu))
    return rows


async def fill(pool, count: int) -> tuple[int, int]:
    """Append `count` events after the relay checkpoint, which is moved to the head first so that the
    relay publishes exactly these and not the append measurements' events."""
    async with pool.connection() as conn:
        await store.save_checkpoint(conn, CHECKPOINT, await store.head(conn))
        for s in range(count // 100):
            async with conn.transaction():
                await store.append(conn, f"relay-{s}-{uuid.uuid4()}", 0, [Happened(writer=s, seq=k) for k in range(100)])
        return await store.head(conn)


async def sink(channel, exchange: str, name: str):
    """A durable classic queue taking everything: unroutable messages are dropped cheaply and would
    flatter both figures."""
    queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
    await queue.bind(exchange, routing_key="#")
    return queue


async def routed(channel, queue) -> int:
    count = (await channel.declare_queue(queue.name, passive=True)).declaration_result.message_count
    await queue.delete(if_unused=False, if_empty=False)
    return count


async def relay_rate(database_url: str, rabbitmq_url: str, pool, head: tuple[int, int]) -> tuple[float, float]:
    relay, stop = Relay(database_url, rabbitmq_url, batch_size=PUBLISH_BATCH), asyncio.Event()
    cpu, start = time.process_time(), time.monotonic()
    task = asyncio.create_task(relay.run(stop))
    while relay.published < RELAY_EVENTS and not task.done():
        await asyncio.sleep(0.005)
    wall = time.monotonic() - start
    cpu = (time.process_time() - cpu) / wall
    stop.set()
    await asyncio.wait_for(task, 30)
    async with pool.connection() as conn:
        checkpoint = await store.load_checkpoint(conn, CHECKPOINT)
    assert relay.published == RELAY_EVENTS and checkpoint == head, (relay.published, checkpoint, head)
    return RELAY_EVENTS / wall, cpu


async def aio_pika_rate(rabbitmq_url: str, messages: list[tuple[aio_pika.Message, str]]) -> tuple[float, float]:
    cpu, start = time.process_time(), time.monotonic()
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("bench.plain")
        for i in range(0, len(messages), PUBLISH_BATCH):
            await asyncio.gather(*(exchange.publish(m, routing_key=k) for m, k in messages[i:i + PUBLISH_BATCH]))
        wall = time.monotonic() - start
    return len(messages) / wall, (time.process_time() - cpu) / wall


async def relay_rows(database_url: str, rabbitmq_url: str, pool) -> list[tuple]:
    async with await aio_pika.connect(rabbitmq_url) as admin:
        channel = await admin.channel()
        # Declared beforehand so the relay's own declare is the cheap idempotent kind, as in production.
        await topology.declare(channel)
        plain = await channel.declare_exchange("bench.plain", aio_pika.ExchangeType.TOPIC, durable=True)

        async with pool.connection() as conn:
            start = await store.head(conn)
        head = await fill(pool, RELAY_EVENTS)
        records, checkpoint = [], start
        async with pool.connection() as conn:
            while batch := await store.read_all(conn, checkpoint, 5000):
                records += batch
                checkpoint = batch[-1].checkpoint
        messages = [(message(e), e.type) for e in records]  # the relay's exact bodies and properties

        queue = await sink(channel, plain.name, "bench.plain.sink")
        ceiling, ceiling_cpu = await aio_pika_rate(rabbitmq_url, messages)
        ceiling_routed = await routed(channel, queue)

        queue = await sink(channel, topology.EVENTS, "bench.relay.sink")
        rate, cpu = await relay_rate(database_url, rabbitmq_url, pool, head)
        relay_routed = await routed(channel, queue)
    assert ceiling_routed == relay_routed == RELAY_EVENTS, (ceiling_routed, relay_routed)
    return [("aio-pika confirmed publish (ceiling)", ceiling, ceiling, ceiling_cpu),
            ("workers.relay.Relay", rate, ceiling, cpu)]


def verdict(ratio: float) -> str:
    return "PASS" if ratio >= TARGET else "MISS"


def print_tables(machine: str, appends: list[tuple], relays: list[tuple]) -> None:
    print(f"\n{machine}\n")
    print("| appends (1 run, {:.0f} s each) | writers | events/s | commits/s | plain INSERT commits/s "
          "| events ratio | commits ratio | client CPU | target ≥70% @16 |".format(SECONDS))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, n, events, commits, ceiling, cpu in appends:
        ratio = events / ceiling
        target = verdict(ratio) if n == 16 and "no NOTIFY" not in label else ""
        print(f"| {label} | {n} | {events:,.0f} | {commits:,.0f} | {ceiling:,.0f} | {ratio:.2f} "
              f"| {commits / ceiling:.2f} | {cpu:.0%} | {target} |")
    print(f"\n| relay ({RELAY_EVENTS:,} events, batches of {PUBLISH_BATCH}) | events/s | ceiling events/s "
          "| ratio | client CPU | target ≥70% |")
    print("|---|---:|---:|---:|---:|---|")
    for label, rate, ceiling, cpu in relays:
        ratio = rate / ceiling
        print(f"| {label} | {rate:,.0f} | {ceiling:,.0f} | {ratio:.2f} | {cpu:.0%} "
              f"| {verdict(ratio) if label.startswith('workers') else ''} |")


async def main() -> None:
    run_id = uuid.uuid4().hex[:10]
    database_url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_bench_{run_id}")
    vhost = f"orders_bench_{run_id}"
    rabbitmq_url = f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{vhost}"
    admin = RabbitAdmin()
    await admin.create_vhost(vhost)
    try:
        await migrate(database_url)
        pool = make_pool(database_url, min_size=max(WRITERS), max_size=max(WRITERS) + 2)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                await conn.execute(PLAIN_TABLE)
                pg = (await (await conn.execute("SHOW server_version")).fetchone())[0]
            rabbit = (await admin._call("GET", "/api/overview"))["rabbitmq_version"]
            machine = f"nproc {os.cpu_count()}, PostgreSQL {pg}, RabbitMQ {rabbit}"
            appends = await append_rows(pool, "store.append")
            relays = await relay_rows(database_url, rabbitmq_url, pool)
            # Last, because the relay is woken by this trigger; dropped in this run's database only.
            async with pool.connection() as conn:
                await conn.execute("DROP TRIGGER events_notify ON events")
            appends += await append_rows(pool, "store.append, no NOTIFY trigger")
        finally:
            await pool.close()
        print_tables(machine, appends, relays)
    finally:
        await drop_database(database_url)
        await admin.delete_vhost(vhost)


if __name__ == "__main__":
    asyncio.run(main())
