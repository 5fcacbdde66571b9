"""The least the event pipeline can cost per order on this machine, with no database at all: what is
left for the API once the relay, the broker and the two projection consumers have had their share.

Run by hand, never in CI: python -m tests.bench.bench_broker_floor [--seconds 10] [--pairs 20000]

A publisher process does only what the relay must do to the broker: it publishes each order's two
events (`order.placed`, `product.stock_reserved`, bodies and headers as the relay builds them) to
`orders.events`, persistent, in batches with publisher confirms. Two consumer processes do only what
a projection worker must do: they receive from `projections.orders` and `projections.catalog` through
FastStream (the quorum queues of workers/topology.py, the workers' prefetch) and ack. No event store
read, no read table, no checkpoint. Measured twice: acking each message, as the workers do, and with
one `multiple` ack per 64 messages. Reports CPU ms per order (two events) by process and the rate.

Its own vhost, removed at the end even on failure.
"""

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from events import orders, products
from events.base import Recorded
from tests.bench.bench_orders import cpu_seconds, rabbitmq_pids
from tests.support import RABBITMQ_HOST, RabbitAdmin
from workers import topology

ADDRESS = orders.Address(name="A", line1="B", city="C", postal_code="1", country="GB")


def order_events(i: int) -> list[Recorded]:
    """One order's two events, as the relay reads them from the events table."""
    order_id, product_id, buyer_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    placed = orders.OrderPlaced(
        order_id=order_id, buyer_id=buyer_id, currency="EUR", total=Decimal("9.99"), shipping_address=ADDRESS,
        placed_at=now, lines=[orders.Line(product_id=product_id, seller_id=uuid.uuid4(), name="Bench product 1",
                                          quantity=1, unit_price=Decimal("9.99"), line_total=Decimal("9.99"))])
    reserved = products.StockReserved(product_id=product_id, order_id=order_id, quantity=1)
    return [Recorded(id=uuid.uuid4(), stream_id=stream, version=version, type=e.type, position=2 * i + n,
                     tx_id=1000 + i, recorded_at=now, correlation_id=uuid.uuid4(), actor=f"user:{buyer_id}",
                     data=msgspec.Raw(msgspec.json.encode(e)))
            for n, (stream, version, e) in enumerate([(products.stream(product_id), 7, reserved),
                                                     (orders.stream(order_id), 1, placed)])]


def consume(url: str, name: str, expected: int, ack_every: int, ready, done) -> None:
    """A projection worker minus the projection: FastStream subscriber, manual acks."""
    import logging

    import uvloop
    from faststream import AckPolicy
    from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
    from faststream.rabbit.schemas import QueueType

    async def main() -> None:
        broker = RabbitBroker(url, apply_types=False, logger=None, log_level=logging.WARNING)
        seen, finished = 0, asyncio.Event()

        async def body(msg: RabbitMessage) -> bytes:
            return msg.body

        @broker.subscriber(RabbitQueue(topology.projection_queue(name), queue_type=QueueType.QUORUM, declare=False),
                           ack_policy=AckPolicy.MANUAL, decoder=body, channel=Channel(prefetch_count=256))
        async def handle(_body: bytes) -> None:
            nonlocal seen
            msg = broker.context.get_local("message")
            msgspec.json.decode(msg.body, type=Recorded)  # the least a worker does with an event
            seen += 1
            if ack_every == 1:
                await msg.ack()
            elif seen % ack_every == 0 or seen == expected:
                raw = msg.raw_message
                await raw.channel.basic_ack(raw.delivery_tag, multiple=True)
            if seen == expected:
                finished.set()

        await broker.start()
        ready.set()
        await finished.wait()
        done.set()
        await broker.stop()

    uvloop.run(main())


def publish(url: str, pairs: int, batch: int, ready) -> None:
    """The relay's publishing, nothing else: batches of `batch` events, every confirm awaited."""
    import aio_pika
    import uvloop

    from workers.relay import message

    async def main() -> None:
        events = [e for i in range(pairs) for e in order_events(i)]
        connection = await aio_pika.connect(url)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.EVENTS)
        ready.set()
        for start in range(0, len(events), batch):
            chunk = events[start:start + batch]
            await asyncio.gather(*(exchange.publish(message(e), routing_key=e.type) for e in chunk))
        await connection.close()

    uvloop.run(main())


async def declare(url: str) -> None:
    import aio_pika
    async with await aio_pika.connect(url) as connection:
        await topology.declare(await connection.channel())


def run(url: str, pairs: int, batch: int, ack_every: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    done = {name: ctx.Event() for name in ("orders", "catalog")}
    ready = [ctx.Event() for _ in range(3)]
    consumers = {name: ctx.Process(target=consume, args=(url, name, pairs, ack_every, ready[i], done[name]))
                 for i, name in enumerate(done)}
    for p in consumers.values():
        p.start()
    for e in ready[:2]:
        if not e.wait(60):
            raise RuntimeError("a consumer did not start")
    publisher = ctx.Process(target=publish, args=(url, pairs, batch, ready[2]))
    publisher.start()
    if not ready[2].wait(120):
        raise RuntimeError("the publisher did not start")
    # The publisher has built its events: from here on it only publishes.
    groups = {"publisher": [publisher.pid], **{f"consumer {n}": [p.pid] for n, p in consumers.items()},
              "rabbitmq": rabbitmq_pids()}
    before, t0 = {g: cpu_seconds(p) for g, p in groups.items()}, time.monotonic()
    for name, event in done.items():
        if not event.wait(600):
            raise RuntimeError(f"consumer {name} did not receive every message")
    seconds = time.monotonic() - t0
    used = {g: sum(v - before[g].get(pid, 0.0) for pid, v in cpu_seconds(p).items()) for g, p in groups.items()}
    for p in [publisher, *consumers.values()]:
        p.join(30)
        if p.exitcode is None:
            p.kill()
    return {"rate": pairs / seconds, "ms": {g: s / pairs * 1000 for g, s in used.items()}}


async def main(pairs: int, batch: int) -> None:
    vhost = f"orders_bench_floor_{uuid.uuid4().hex[:10]}"
    admin = RabbitAdmin()
    await admin.create_vhost(vhost)
    url = f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{vhost}"
    try:
        results = []
        for ack_every in (1, 64):
            await declare(url)
            results.append((ack_every, await asyncio.to_thread(run, url, pairs, batch, ack_every)))
    finally:
        with suppress(Exception):
            await admin.delete_vhost(vhost)
    groups = ["publisher", "consumer orders", "consumer catalog", "rabbitmq"]
    print(f"\nnproc {os.cpu_count()}, {pairs:,} orders (2 events each), published in batches of {batch}\n")
    print(f"| acks | orders/s | {' | '.join(groups)} | total CPU ms per order |\n|---|---:|{'---:|' * (len(groups) + 1)}")
    for ack_every, r in results:
        label = "one per message" if ack_every == 1 else f"one per {ack_every} (multiple)"
        print(f"| {label} | {r['rate']:,.0f} | " + " | ".join(f"{r['ms'][g]:.2f}" for g in groups)
              + f" | {sum(r['ms'].values()):.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=20_000, help="orders, two events each")
    parser.add_argument("--batch", type=int, default=64, help="events per publish batch (confirms awaited)")
    args = parser.parse_args()
    asyncio.run(main(args.pairs, args.batch))
    sys.exit(0)
