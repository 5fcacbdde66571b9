"""The RabbitMQ names operators see in the management UI, declared in one place.

The relay declares the whole topology before it publishes anything, and every worker declares it
before it consumes, so whichever starts first, no event is published to an exchange whose queues
do not exist yet (an unbound topic exchange drops messages). `redrive` is the way back from a `.dlq`.
"""

import aio_pika
from aio_pika.abc import AbstractChannel

from events.broker import (COMMANDS, DLX, EVENTS, SCRAPE_REQUESTED, SCRAPER_QUEUE, dlq, partition_bindings,
                           partition_queues, projection_queue, retry_queue)
from events.settings import settings
from projections import registry

__all__ = ["COMMANDS", "DLX", "EVENTS", "SCRAPER_QUEUE", "SCRAPE_REQUESTED", "declare", "dlq", "projection_queue",
           "redrive", "retry_queue", "subscriptions"]


def subscriptions() -> dict[str, tuple[str, ...]]:
    """Projection name -> its queue's binding keys on orders.events, as each projector declares them."""
    return {p.name: p.bindings for p in registry().values()}

# A safety net below our own bounded retries (see workers/consumer.py): quorum queues count
# deliveries themselves and dead-letter past this, even if a consumer crashes on every try.
DELIVERY_LIMIT = 20


def queue_arguments(queue: str) -> dict:
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": DLX,
        "x-dead-letter-routing-key": queue,
    }


async def _dead_lettered_queue(channel: AbstractChannel, name: str, dlx: aio_pika.abc.AbstractExchange):
    queue = await channel.declare_queue(name, durable=True, arguments=queue_arguments(name))
    dead = await channel.declare_queue(dlq(name), durable=True)
    await dead.bind(dlx, routing_key=name)
    return queue


async def _retry_queue(channel: AbstractChannel, queue: str) -> None:
    """A queue without consumers where a failed message waits out its backoff: it is published with a
    per-message TTL (`expiration`) and, once that expires, dead-lettered back to the end of `queue`."""
    await channel.declare_queue(retry_queue(queue), durable=True, arguments={
        "x-queue-type": "classic", "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue})


async def declare(channel: AbstractChannel, projections: dict[str, tuple[str, ...]] | None = None,
                  partitions: int | None = None) -> None:
    """Declare exchanges, queues and bindings; idempotent. `partitions`: PROJECTION_PARTITIONS."""
    partitions = settings().projection_partitions if partitions is None else partitions
    events = await channel.declare_exchange(EVENTS, aio_pika.ExchangeType.TOPIC, durable=True)
    commands = await channel.declare_exchange(COMMANDS, aio_pika.ExchangeType.DIRECT, durable=True)
    dlx = await channel.declare_exchange(DLX, aio_pika.ExchangeType.DIRECT, durable=True)
    for name, keys in (subscriptions() if projections is None else projections).items():
        for k, queue_name in enumerate(partition_queues(name, partitions)):
            queue = await _dead_lettered_queue(channel, queue_name, dlx)
            await _retry_queue(channel, queue_name)
            for key in partition_bindings(keys, k, partitions):
                await queue.bind(events, routing_key=key)
    scraper = await _dead_lettered_queue(channel, SCRAPER_QUEUE, dlx)
    await scraper.bind(commands, routing_key=SCRAPE_REQUESTED)


async def redrive(rabbitmq_url: str, queue: str) -> int:
    """Move the messages the queue's DLQ holds now back to the queue, attempts reset. Returns how many."""
    moved = 0
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=True)
        dead = await channel.declare_queue(dlq(queue), passive=True)
        # No more than were there at the start: one that dies again meanwhile (a consumer that rejects
        # it at once) would otherwise be moved again and again, and counted each time.
        for _ in range(dead.declaration_result.message_count):
            if (message := await dead.get(fail=False)) is None:
                break
            headers = {k: v for k, v in (message.headers or {}).items() if k not in ("x-attempts", "x-error")}
            await channel.default_exchange.publish(
                aio_pika.Message(message.body, headers=headers, content_type=message.content_type,
                                 message_id=message.message_id, correlation_id=message.correlation_id,
                                 type=message.type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)
            await message.ack()  # after the broker confirmed the copy: nothing is lost in between
            moved += 1
    return moved
