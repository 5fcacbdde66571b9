"""Throughput of the write spine (event store appends, outbox relay), each figure beside a ceiling
measured in the same run on the same servers. Run by hand: python -m tests.bench.bench_spine

Not a test (pytest does not collect it): the numbers depend on the machine, so it prints rather than
asserts. It uses a database and a vhost of its own and removes both, even when it fails.
"""

import asyncio
import os
import time
import uuid
from pathlib import Path

import aio_pika
import msgspec
from psycopg.conninfo import make_conninfo

from events import store
from events.db import drop_database, make_pool, migrate
from tests.support import ADMIN_DATABASE_URL, RABBITMQ_HOST, Happened, RabbitAdmin
from workers import topology
from workers.relay import CHECKPOINT, Relay, message

# The machine may be shared (a test suite, other brokers), so absolute rates drift. Each figure is
# taken in slices interleaved with its ceiling's, so both see the same background load and the
# ratio stays fair.
SLICES, SLICE_SECONDS = 5, 1.0
WRITERS = (1, 16)
RELAY_EVENTS, RELAY_ROUNDS = 20_000, 2
PUBLISH_BATCH = 1000  # the relay's default batch_size, so the ceiling publishes the way the relay does
TARGET = 0.70

PLAIN_TABLE = """CREATE TABLE plain_inserts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, u uuid NOT NULL, t text NOT NULL, j jsonb NOT NULL)"""


def on_cpu(pids: list[int]) -> float:
    """CPU seconds of our own PostgreSQL backends only, so other databases' load is not counted
    (schedstat is in ns; /proc/pid/stat only has 10 ms ticks). NaN when the server is on another host."""
    try:
        return sum(int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) for pid in pids) / 1e9
    except OSError:
        return float("nan")


async def run_writers(pool, writers: int, make_work, pids: list[int]) -> tuple[int, float, float, float]:
    """(commits, wall s, client CPU s, server CPU s) of `writers` connections committing for a slice."""
    conns = [await pool.getconn() for _ in range(writers)]  # taken before the clock starts
    counts = [0] * writers

    async def writer(i: int) -> None:
        work = make_work(i)
        while time.monotonic() < deadline:
            await work(conns[i])
            counts[i] += 1

    cpu, server, start = time.process_time(), on_cpu(pids), time.monotonic()
    deadline = start + SLICE_SECONDS
    try:
        await asyncio.gather(*(writer(i) for i in range(writers)))
    finally:
        for c in conns:
            await pool.putconn(c)
    return sum(counts), time.monotonic() - start, time.process_time() - cpu, on_cpu(pids) - server


def plain_insert(i: int):
    async def work(conn) -> None:
        # The same transaction wrapper as an append, so the ratio measures the store, not the driver.
        async with conn.transaction():
            await conn.execute("INSERT INTO plain_inserts (u, t, j) VALUES (%s, %s, %s::jsonb)",
                               (uuid.uuid4(), f"plain-{i}", msgspec.json.encode(Happened(writer=i)).decode()))
    return work


def store_append(batch: int):
    def make(i: int):
        # One stream per writer: writers never conflict, so every attempt is a commit.
        stream, version = f"bench-{uuid.uuid4()}", 0

        async def work(conn) -> None:
            nonlocal version
            async with conn.transaction():
                version = await store.append(conn, stream, version,
                                             [Happened(writer=i, seq=version + k) for k in range(batch)])
        return work
    return make


async def append_rows(pool, pids: list[int]) -> list[tuple]:
    """Rows of (label, writers, events per commit, commits, wall, client CPU, server CPU, ceiling commits/s)."""
    # (The NOTIFY trigger this once compared against is gone: sql/005_relay_wakeup_outside_commits.sql.)
    contenders = [("plain INSERT (ceiling)", 1, plain_insert)]
    contenders += [(f"store.append, {batch} event(s)/commit", batch, store_append(batch)) for batch in (1, 10)]
    rows = []
    for n in WRITERS:
        totals = [[0, 0.0, 0.0, 0.0] for _ in contenders]
        for _ in range(SLICES):  # interleaved, so each figure and its ceiling see the same background load
            for total, (_, _, make) in zip(totals, contenders):
                for k, v in enumerate(await run_writers(pool, n, make, pids)):
                    total[k] += v
        ceiling = totals[0][0] / totals[0][1]
        rows += [(label, n, batch, *total, ceiling) for (label, batch, _), total in zip(contenders, totals)]
    return rows


async def fill(pool, count: int) -> tuple[tuple[int, int], list]:
    """Append `count` events and return (head, their records). The relay checkpoint is moved to the
    head first, so the relay publishes exactly these and not the append measurements' events."""
    async with pool.connection() as conn:
        start = await store.head(conn)
        await store.save_checkpoint(conn, CHECKPOINT, start)
        for s in range(count // 100):
            async with conn.transaction():
                await store.append(conn, f"relay-{s}-{uuid.uuid4()}", 0,
                                   [Happened(writer=s, seq=k) for k in range(100)])
        records = []
        while batch := await store.read_all(conn, records[-1].checkpoint if records else start, 5000):
            records += batch
        return await store.head(conn), records


async def run_relay(database_url: str, rabbitmq_url: str, pool, head: tuple[int, int]) -> float:
    relay, stop = Relay(database_url, rabbitmq_url, batch_size=PUBLISH_BATCH), asyncio.Event()
    start = time.monotonic()
    task = asyncio.create_task(relay.run(stop))
    # The relay retries failures forever; a bound turns a broken setup into an error, not a hang.
    while relay.published < RELAY_EVENTS and not task.done() and time.monotonic() < start + 120:
        await asyncio.sleep(0.005)
    wall = time.monotonic() - start
    stop.set()
    await asyncio.wait_for(task, 30)
    async with pool.connection() as conn:
        checkpoint = await store.load_checkpoint(conn, CHECKPOINT)
    assert relay.published == RELAY_EVENTS and checkpoint == head, (relay.published, checkpoint, head)
    return wall


async def run_aio_pika(rabbitmq_url: str, messages: list[aio_pika.Message], keys: list[str]) -> float:
    start = time.monotonic()  # connecting is timed, as it is in the relay's figure
    async with await aio_pika.connect(rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("bench.plain")
        for i in range(0, len(messages), PUBLISH_BATCH):
            await asyncio.gather(*(exchange.publish(m, routing_key=k)
                                   for m, k in zip(messages[i:i + PUBLISH_BATCH], keys[i:i + PUBLISH_BATCH])))
        return time.monotonic() - start


async def relay_rows(database_url: str, rabbitmq_url: str, pool) -> list[tuple]:
    """Rows of (label, events stored in the queue, wall, client CPU)."""
    ceiling, relay = "aio-pika confirmed publish (ceiling)", "workers.relay.Relay"
    totals = {ceiling: [0, 0.0, 0.0], relay: [0, 0.0, 0.0]}
    async with await aio_pika.connect(rabbitmq_url) as admin:
        channel = await admin.channel()
        # Declared beforehand so the relay's own declare is the cheap idempotent kind, as in production.
        await topology.declare(channel)
        await channel.declare_exchange("bench.plain", aio_pika.ExchangeType.TOPIC, durable=True)
        for r in range(RELAY_ROUNDS):
            head, records = await fill(pool, RELAY_EVENTS)
            messages, keys = [message(e) for e in records], [e.type for e in records]  # the relay's exact messages
            runs = [(ceiling, "bench.plain", lambda: run_aio_pika(rabbitmq_url, messages, keys)),
                    (relay, topology.EVENTS, lambda: run_relay(database_url, rabbitmq_url, pool, head))]
            for label, exchange, run in runs[::-1] if r % 2 else runs:  # alternate who goes first
                # A durable classic queue takes every message: the broker drops unroutable ones
                # cheaply, which would flatter both figures.
                queue = await channel.declare_queue(f"bench.sink.{exchange}", durable=True,
                                                    arguments={"x-queue-type": "classic"})
                await queue.bind(exchange, routing_key="#")
                cpu = time.process_time()
                totals[label][1] += await run()
                totals[label][2] += time.process_time() - cpu
                stored = await channel.declare_queue(queue.name, passive=True)
                totals[label][0] += stored.declaration_result.message_count
                await queue.delete(if_unused=False, if_empty=False)
    assert all(t[0] == RELAY_EVENTS * RELAY_ROUNDS for t in totals.values()), totals
    return [(label, *total) for label, total in totals.items()]


def print_tables(machine: str, appends: list[tuple], relays: list[tuple]) -> None:
    print(f"\n{machine}\n")
    print(f"| appends ({SLICES} x {SLICE_SECONDS:.0f} s each) | writers | events/s | commits/s "
          "| plain INSERT commits/s | events/s ratio | commits/s ratio | client µs/commit | server µs/commit "
          "| ≥70% events/s @16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, n, batch, commits, wall, cpu, server, ceiling in appends:
        ratio = commits * batch / wall / ceiling
        judged = n == 16 and label.startswith("store") and "NOTIFY" not in label  # as deployed, at 16 writers
        target = ("PASS" if ratio >= TARGET else "MISS") if judged else ""
        print(f"| {label} | {n} | {commits * batch / wall:,.0f} | {commits / wall:,.0f} | {ceiling:,.0f} "
              f"| {ratio:.2f} | {commits / wall / ceiling:.2f} | {cpu / commits * 1e6:,.0f} "
              f"| {server / commits * 1e6:,.0f} | {target} |")
    ceiling = relays[0][1] / relays[0][2]
    print(f"\n| relay ({RELAY_ROUNDS} x {RELAY_EVENTS:,} events, batches of {PUBLISH_BATCH}) | events/s "
          "| aio-pika events/s | ratio | client µs/event | ≥70% |")
    print("|---|---:|---:|---:|---:|---|")
    for label, events, wall, cpu in relays:
        ratio = events / wall / ceiling
        target = ("PASS" if ratio >= TARGET else "MISS") if label.startswith("workers") else ""
        print(f"| {label} | {events / wall:,.0f} | {ceiling:,.0f} | {ratio:.2f} "
              f"| {cpu / events * 1e6:,.0f} | {target} |")


async def main() -> None:
    run_id = uuid.uuid4().hex[:10]
    database_url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_bench_{run_id}")
    vhost = f"orders_bench_{run_id}"
    rabbitmq_url = f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{vhost}"
    admin = RabbitAdmin()
    await admin.create_vhost(vhost)
    try:
        async with await aio_pika.connect(rabbitmq_url) as connection:
            rabbit = connection.transport.connection.server_properties["version"]
        await migrate(database_url)
        # A fixed size: the backends whose CPU is counted must not change during the run.
        pool = make_pool(database_url, min_size=max(WRITERS) + 1, max_size=max(WRITERS) + 1)
        await pool.open(wait=True)
        try:
            async with pool.connection() as conn:
                await conn.execute(PLAIN_TABLE)
                pg = (await (await conn.execute("SHOW server_version")).fetchone())[0]
                cur = await conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                pids = [r[0] for r in await cur.fetchall()]
            load = f"load average {os.getloadavg()[0]:.2f} before"
            appends = await append_rows(pool, pids)
            relays = await relay_rows(database_url, rabbitmq_url, pool)
            load += f", {os.getloadavg()[0]:.2f} after"
        finally:
            await pool.close()
        print_tables(f"nproc {os.cpu_count()}, PostgreSQL {pg}, RabbitMQ {rabbit}, {load}", appends, relays)
    finally:
        try:
            await drop_database(database_url)
        finally:
            await admin.delete_vhost(vhost)


if __name__ == "__main__":
    asyncio.run(main())
