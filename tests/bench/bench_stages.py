"""Stage capacity with a backlog: seed N events with every worker stopped, then start one stage at a
time and time how fast it drains. Run by hand, never in CI:

    python -m tests.bench.bench_stages [--events 200000] [--partitions 2]

1. the relay alone, from the first event to the last confirmed by RabbitMQ (events/s published);
2. each projection worker alone (users, catalog, orders), from start to its checkpoint at the head
   (events/s applied, counting the events of its kinds);
3. the orders projection again with PROJECTION_PARTITIONS=P: the relay republishes into P queues (timed
   too), then P workers drain them at once.

Each stage runs as the real `orders ...` process. CPU seconds are reported per process (the stage's
own, PostgreSQL's backends of this database, RabbitMQ), beside the rate. The events are bench_rebuild's
realistic mix (users, products, orders with their stock moves), written with COPY. Its own database
and vhosts, removed at the end even on failure.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from events import store
from events.db import drop_database, migrate
from events.topics import matches_any
from projections import registry
from tests.bench.bench_orders import backends, cpu_seconds, rabbitmq_pids, spawn, stop
from tests.bench.bench_rebuild import seed
from tests.support import ADMIN_DATABASE_URL, RABBITMQ_HOST, RabbitAdmin

TARGETS = {"relay": 20_000, "projection": 10_000}


async def checkpoint(database_url: str, name: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await store.load_checkpoint(conn, name)


async def last_of(database_url: str, bindings: tuple[str, ...]) -> tuple[tuple[int, int], int]:
    """The checkpoint of the last event of these kinds, and how many there are."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT type, count(*), max(ARRAY[tx_id, position]) FROM events GROUP BY type")
        rows = [(n, tuple(last)) for t, n, last in await cur.fetchall() if matches_any(bindings, t)]
    return max(last for _, last in rows), sum(n for n, _ in rows)


async def drain(env: dict, database_url: str, argvs: list[list[str]], name: str, target: tuple[int, int],
                bindings: tuple[str, ...], deadline: float = 600) -> dict:
    """Start the processes and time how fast checkpoint `name` moves to `target`: from its first move
    (the processes have started: Python's imports and the connections are not the stage's speed) to
    the target, counting the events of `bindings` in between. CPU by group over the same stretch."""
    procs = [await spawn(env, "workers.cli", *argv) for argv in argvs]
    try:
        start = await checkpoint(database_url, name)
        moved_at = started = time.monotonic()
        before = None
        while (now := await checkpoint(database_url, name)) < target:
            if before is None and now > start:  # the first batch is in: the clock starts here
                moved_at, start = time.monotonic(), now
                before = {"stage": sum(sum(cpu_seconds([p.pid]).values()) for p in procs),
                          "postgres": cpu_seconds(await backends(database_url)), "rabbitmq": cpu_seconds(rabbitmq_pids())}
            if any(p.returncode is not None for p in procs):
                raise RuntimeError(f"{' '.join(argvs[0])} exited early")
            if time.monotonic() - started > deadline:
                raise RuntimeError(f"{name} did not reach the head within {deadline}s")
            await asyncio.sleep(0.02)  # polling interval of a deadline-bounded wait
        elapsed = time.monotonic() - moved_at
        before = before or {"stage": 0.0, "postgres": {}, "rabbitmq": {}}
        cpu = {"stage": sum(sum(cpu_seconds([p.pid]).values()) for p in procs) - before["stage"],
               "postgres": _delta(cpu_seconds(await backends(database_url)), before["postgres"]),
               "rabbitmq": _delta(cpu_seconds(rabbitmq_pids()), before["rabbitmq"])}
        events = await count_between(database_url, start, target, bindings)
    finally:
        await stop(procs)
    return {"seconds": elapsed, "cpu": cpu, "events": events}


async def count_between(database_url: str, after: tuple[int, int], upto: tuple[int, int],
                        bindings: tuple[str, ...]) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT type, count(*) FROM events WHERE (tx_id, position) > (%s, %s)"
                                 " AND (tx_id, position) <= (%s, %s) GROUP BY type", (*after, *upto))
        return sum(n for t, n in await cur.fetchall() if matches_any(bindings, t))


def _delta(after: dict[int, float], before: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def line(stage: str, result: dict, target: int | None) -> str:
    events = result["events"]
    rate = events / result["seconds"]
    verdict = "" if target is None else f" {'PASS' if rate >= target else 'MISS'} (≥ {target:,})"
    cpu = ", ".join(f"{g} {v:.1f}" for g, v in result["cpu"].items())
    return (f"| {stage} | {events:,} | {result['seconds']:.1f} | {rate:,.0f}{verdict} | {cpu} "
            f"| {sum(result['cpu'].values()) / events * 1e6:.0f} |")


async def main(events: int, partitions: int) -> None:
    run_id = uuid.uuid4().hex[:10]
    database_url = make_conninfo(ADMIN_DATABASE_URL, dbname=f"orders_stages_{run_id}")
    admin, vhosts = RabbitAdmin(), [f"orders_stages_{run_id}", f"orders_stages_{run_id}_p{partitions}"]
    for vhost in vhosts:
        await admin.create_vhost(vhost)
    try:
        await migrate(database_url)
        t = time.monotonic()
        await seed(database_url, events)
        print(f"seeded {events:,} events in {time.monotonic() - t:.1f}s; nproc {os.cpu_count()}")
        env = {**os.environ, "DATABASE_URL": database_url, "ORDERS_DEV_MODE": "1", "LOG_LEVEL": "WARNING",
               "RABBITMQ_URL": f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{vhosts[0]}"}
        head, _ = await last_of(database_url, ("#",))
        rows = [line("relay", await drain(env, database_url, [["relay"]], "relay", head, ("#",)), TARGETS["relay"])]
        for name, projector in registry().items():
            last, _ = await last_of(database_url, projector.bindings)
            result = await drain(env, database_url, [["worker", name]], name, last, projector.bindings)
            rows.append(line(f"projection {name}", result, TARGETS["projection"]))

        # The orders projection again, partitioned: a fresh vhost, the relay and the projection from the start.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("TRUNCATE orders, order_lines")
            await conn.execute("DELETE FROM checkpoints WHERE name IN ('relay', 'orders')")
        penv = {**env, "PROJECTION_PARTITIONS": str(partitions),
                "RABBITMQ_URL": f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{vhosts[1]}"}
        rows.append(line(f"relay, P={partitions}", await drain(penv, database_url, [["relay"]], "relay", head, ("#",)),
                         TARGETS["relay"]))
        bindings = registry()["orders"].bindings
        last, _ = await last_of(database_url, bindings)
        result = await drain(penv, database_url, [["worker", "orders"]] * partitions, "orders", last, bindings)
        rows.append(line(f"projection orders, P={partitions} ({partitions} workers)", result, None))
        print("\n| stage | events timed | seconds | events/s | CPU s | CPU µs per event |\n|---|---:|---:|---:|---|---:|")
        print("\n".join(rows))
    finally:
        await drop_database(database_url)
        for vhost in vhosts:
            await admin.delete_vhost(vhost)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=2)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.events, args.partitions)))
