"""A projection worker: consumes `projections.<name>` and applies each event to its projector.

Acks only after the projection's transaction commits. A message whose handling fails is published
again with an attempt count (to the back of the queue, so other streams keep flowing) and, after
`max_attempts`, to the dead-letter queue with the error in its headers. Losing the database is not
the message's fault: the worker waits for it and does not spend the message's attempts.
"""

import asyncio
import logging
from collections import Counter

import aio_pika
import msgspec
import psycopg
import psycopg_pool
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from events.base import Recorded
from events.db import make_pool
from projections import Outcome, Projector, project
from workers import topology
from workers.runtime import correlation_id

log = logging.getLogger(__name__)

_OUTAGES = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


class ProjectionConsumer:
    def __init__(self, projector: Projector, database_url: str, rabbitmq_url: str, *,
                 max_attempts: int = 5, prefetch: int = 64, bindings: tuple[str, ...] | None = None):
        self.projector = projector
        self.queue = topology.projection_queue(projector.name)
        self.bindings = bindings
        self.rabbitmq_url = rabbitmq_url
        self.max_attempts = max_attempts
        self.counts: Counter[str] = Counter()
        self.pool = make_pool(database_url, min_size=1, max_size=4)
        self.broker = RabbitBroker(rabbitmq_url, graceful_timeout=10, logger=log, log_level=logging.DEBUG)
        self.broker.subscriber(
            RabbitQueue(self.queue, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL,
            channel=Channel(prefetch_count=prefetch),
            title=self.queue,
            description=f"Applies events to the {projector.name} read tables.",
        )(self.handle)
        self._closing = False

    async def start(self) -> None:
        await self.pool.open()
        await declare_topology(self.rabbitmq_url, self.projector.name, self.bindings)
        await self.broker.start()
        log.info("projection %s consuming %s", self.projector.name, self.queue)

    async def stop(self) -> None:
        self._closing = True
        await self.broker.stop()
        await self.pool.close()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def handle(self, msg: RabbitMessage) -> None:
        correlation_id.set(msg.correlation_id)
        attempts = int((msg.headers or {}).get("x-attempts", 0)) + 1
        try:
            recorded = msgspec.json.decode(msg.body, type=Recorded)
            outcome = await self._apply(recorded)
        except asyncio.CancelledError:
            raise  # shutting down: not acked, so it is delivered again
        except Exception as exc:
            self.counts["failed"] += 1
            log.exception("projection %s failed on message %s (attempt %d)", self.projector.name,
                          msg.message_id, attempts)
            await self._retry_or_dead_letter(msg, attempts, exc)
        else:
            self.counts[outcome.value] += 1
            log.debug("projection %s: %s %s v%d %s", self.projector.name, recorded.type, recorded.stream_id,
                      recorded.version, outcome.value)
        await msg.ack()

    async def _apply(self, recorded: Recorded) -> Outcome:
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await project(conn, self.projector, recorded)
            except _OUTAGES as exc:
                if self._closing:
                    raise asyncio.CancelledError from exc
                log.warning("projection %s waits for the database (%s)", self.projector.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    async def _retry_or_dead_letter(self, msg: RabbitMessage, attempts: int, exc: Exception) -> None:
        headers = dict(msg.headers or {})
        raw = msg.raw_message
        headers.update({"x-attempts": attempts, "x-error": f"{type(exc).__name__}: {exc}"[:1000]})
        headers.setdefault("x-original-routing-key", raw.routing_key or "")  # retries go via the queue name
        common = dict(headers=headers, persist=True, message_id=msg.message_id, correlation_id=msg.correlation_id,
                      content_type=raw.content_type, message_type=raw.type, timestamp=raw.timestamp)
        if attempts >= self.max_attempts:
            self.counts["dead_lettered"] += 1
            await self.broker.publish(msg.body, exchange=topology.DLX, routing_key=self.queue, **common)
            log.error("projection %s dead-lettered message %s after %d attempts", self.projector.name,
                      msg.message_id, attempts)
        else:
            await asyncio.sleep(min(0.05 * 2**attempts, 2))  # bounded backoff: never a hot loop
            await self.broker.publish(msg.body, routing_key=self.queue, **common)


async def declare_topology(rabbitmq_url: str, extra_projection: str | None = None,
                           bindings: tuple[str, ...] | None = None) -> None:
    projections = dict(topology.PROJECTIONS)
    if extra_projection and bindings is not None:
        projections[extra_projection] = bindings
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        await topology.declare(await connection.channel(), projections)
