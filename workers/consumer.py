"""A projection worker: consumes a projection's queue and applies the events of whatever has arrived
in one transaction, then acks it with one ack.

A message carries one event or, under load, many (workers/relay.py packs them). The handler only
queues a delivery; a flusher applies everything queued so far, up to `batch_events` events, in one
transaction, so a quiet queue means a batch of one and a busy one large batches, with no waiting.

Deliveries are settled strictly in the order they arrive and none is ever left behind: a failure is
settled by publishing a copy (workers/dead_letters.py) before the batch is acked. So one `basic.ack`
with `multiple` for a batch's last delivery settles exactly that batch and what came before it.

When a batch fails, its streams are applied one by one, so a bad event holds back only its own stream:
that stream's events go on to `<queue>.retry` (back after a backoff) or, after `max_attempts` or when
they cannot even be decoded, to `<queue>.dlq`. Losing the database is not the message's fault: the
worker waits for it and spends no attempt.
"""

import asyncio
import logging
import os
import urllib.parse
from collections import Counter

import aio_pika
import msgspec
import psycopg
import psycopg_pool
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from events.base import Recorded, unpack
from events.broker import partition_queues
from events.context import correlation_id
from events.db import make_pool
from projections import Outcome, Projector
from projections.base import project_batch
from workers import topology
from workers.dead_letters import RetryPolicy, dead_letter, retry_later
from workers.partitions import PartitionLease

log = logging.getLogger(__name__)

_OUTAGES = (psycopg.OperationalError, psycopg_pool.PoolTimeout)
_encode = msgspec.json.encode


class ProjectionConsumer:
    def __init__(self, projector: Projector, database_url: str, rabbitmq_url: str, *,
                 max_attempts: int = 5, retry_seconds: float = 1.0, prefetch: int = 256, batch_events: int = 2000,
                 partitions: int = 1):
        self.projector = projector
        self.queues = partition_queues(projector.name, partitions)
        self.rabbitmq_url, self.partitions, self.prefetch = rabbitmq_url, partitions, prefetch
        self.policy = RetryPolicy(max_attempts, retry_seconds)
        self.batch_events = batch_events
        self.counts: Counter[str] = Counter()  # outcomes, failures, dead letters, and the acks sent
        self.pool = make_pool(database_url, min_size=1, max_size=4, name=f"orders-projection-{projector.name}-{os.getpid()}")
        # No dependency injection: the handler takes the message from the broker's context. FastStream
        # would otherwise resolve the message parameter in a thread for every message, and decode
        # the JSON body that msgspec decodes anyway.
        self.broker = RabbitBroker(_named(rabbitmq_url, f"orders-projection-{projector.name}-{os.getpid()}"),
                                   graceful_timeout=10, logger=log, log_level=logging.DEBUG, apply_types=False)
        # One queue: subscribed from the start (several workers are hot standbys by single-active-consumer).
        # Partitions: subscribed to as the lease hands them over (workers/partitions.py).
        self.subscribers = {0: self._subscriber(0)} if partitions <= 1 else {}
        self.lease = PartitionLease(database_url, projector.name, partitions, self._take, self._give) \
            if partitions > 1 else None
        self._leasing: asyncio.Task | None = None
        self._stop_leasing = asyncio.Event()
        self._closing = False
        self._pending: list[RabbitMessage] = []
        self._queue_of: dict[int, str] = {}  # a pending delivery -> the queue it came from
        self._flusher: asyncio.Task | None = None

    def _subscriber(self, partition: int):
        queue = self.queues[partition]
        subscriber = self.broker.subscriber(
            RabbitQueue(queue, queue_type=QueueType.QUORUM, declare=False), ack_policy=AckPolicy.MANUAL,
            decoder=_body, channel=Channel(prefetch_count=self.prefetch), title=queue,
            description=f"Applies events to the {self.projector.name} read tables.")
        subscriber(self._handler(queue))
        return subscriber

    async def start(self) -> None:
        await self.pool.open()
        await declare_topology(self.rabbitmq_url, self.projector, self.partitions)
        await self.broker.start()
        if self.lease is not None:
            self._leasing = asyncio.create_task(self.lease.run(self._stop_leasing))
        log.info("projection %s consuming %s", self.projector.name, ", ".join(self.queues))

    async def stop(self) -> None:
        self._closing = True
        if self._leasing is not None:
            self._stop_leasing.set()
            await self._leasing  # stops consuming every partition it held
        if self._flusher is not None:
            await asyncio.wait([self._flusher])  # the batch in hand commits (or rolls back); the rest comes again
        await self.broker.stop()
        await self.pool.close()

    async def _take(self, partition: int) -> None:
        if partition not in self.subscribers:
            self.subscribers[partition] = self._subscriber(partition)
        await self.subscribers[partition].start()

    async def _give(self, partition: int) -> None:
        """Stop consuming a partition, and hand back its deliveries not yet in a batch: the worker that
        takes it over gets them again (the batch in hand commits and acks as usual)."""
        await self.subscribers[partition].stop()
        queue = self.queues[partition]
        mine = [m for m in self._pending if self._queue_of.get(id(m)) == queue]
        self._pending = [m for m in self._pending if self._queue_of.get(id(m)) != queue]
        for msg in mine:
            self._queue_of.pop(id(msg), None)
        await _each(mine, lambda m: m.nack(requeue=True))

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _handler(self, queue: str):
        async def handle(_body: bytes) -> None:
            """Queue the delivery for the next batch; returning at once lets FastStream hand over the next."""
            msg = self.broker.context.get_local("message")
            self._queue_of[id(msg)] = queue
            self._pending.append(msg)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
        return handle

    async def _flush(self) -> None:
        while self._pending and not self._closing:
            batch, taken = [], 0
            while self._pending and (not batch or taken < self.batch_events):
                msg = self._pending.pop(0)
                batch.append(msg)
                taken += int((msg.headers or {}).get("x-events", 1))
            try:
                await self._settle(batch)
            finally:
                for msg in batch:
                    self._queue_of.pop(id(msg), None)

    async def _settle(self, messages: list[RabbitMessage]) -> None:
        """Apply a batch of deliveries and settle every one of them."""
        try:
            decoded = await self._decode(messages)
            events = [e for _, batch in decoded for e in batch]
            if events:
                try:
                    outcomes = await self._apply(events)
                except asyncio.CancelledError:
                    raise  # shutting down: nothing acked, everything comes again
                except Exception:
                    await self._stream_by_stream(decoded)
                else:
                    self._count(events, outcomes)
        except asyncio.CancelledError:
            raise
        except Exception:  # a copy could not be published: give the batch back, whatever of it is done
            log.exception("projection %s could not settle a batch; it will be delivered again",
                          self.projector.name)
            await _each(messages, lambda m: m.nack(requeue=True))
            return
        await self._ack(messages)

    async def _decode(self, messages: list[RabbitMessage]) -> list[tuple[RabbitMessage, list[Recorded]]]:
        decoded = []
        for msg in messages:
            try:
                decoded.append((msg, unpack(msg.body)))
            except ValueError as exc:  # not events: it would fail the same way every time
                self.counts["failed"] += 1
                await self._give_up(msg.body, msg, exc, _attempts(msg))
        return decoded

    async def _stream_by_stream(self, decoded: list[tuple[RabbitMessage, list[Recorded]]]) -> None:
        """One bad event must not hold up the others: apply each stream on its own, and send on only
        the events of the streams that fail."""
        streams: dict[str, list[tuple[RabbitMessage, Recorded]]] = {}
        for msg, events in decoded:
            for e in events:
                streams.setdefault(e.stream_id, []).append((msg, e))
        for stream_events in streams.values():
            events = [e for _, e in stream_events]
            try:
                self._count(events, await self._apply(events))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counts["failed"] += 1
                source = stream_events[0][0]
                attempts = max(_attempts(m) for m, _ in stream_events)
                correlation_id.set(source.correlation_id)
                log.error("projection %s failed on stream %s (attempt %d)", self.projector.name,
                          events[0].stream_id, attempts, exc_info=exc)
                body = _encode(events[0] if len(events) == 1 else events)
                if self.policy.gives_up(exc, attempts):
                    await self._give_up(body, source, exc, attempts, events)
                else:
                    await retry_later(self.broker, body, self._queue_of[id(source)], exc,
                                      self.policy.backoff(attempts), attempts=attempts, **_properties(source, events))

    async def _give_up(self, body: bytes, source: RabbitMessage, exc: BaseException, attempts: int,
                       events: list[Recorded] = ()) -> None:
        await dead_letter(self.broker, body, self._queue_of[id(source)], exc, attempts=attempts,
                          **_properties(source, events))
        self.counts["dead_lettered"] += 1

    async def _apply(self, events: list[Recorded]) -> list[Outcome]:
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await project_batch(conn, self.projector, events)
            except _OUTAGES as exc:
                if self._closing:
                    raise asyncio.CancelledError from exc
                log.warning("projection %s waits for the database (%s)", self.projector.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    def _count(self, events: list[Recorded], outcomes: list[Outcome]) -> None:
        self.counts.update(o.value for o in outcomes)
        if log.isEnabledFor(logging.DEBUG):
            for e, o in zip(events, outcomes, strict=True):
                correlation_id.set(str(e.correlation_id))  # each event's own: a packed message has many
                log.debug("projection %s: %s %s v%d %s", self.projector.name, e.type, e.stream_id, e.version, o.value)

    async def _ack(self, messages: list[RabbitMessage]) -> None:
        """The last delivery of each channel, with `multiple`: every earlier one of it is settled."""
        last: dict[int, RabbitMessage] = {}
        for msg in messages:
            try:
                last[id(msg.raw_message.channel)] = msg
            except Exception:  # noqa: BLE001 -- its channel is gone: the broker delivers it again anyway
                continue
        for msg in last.values():
            try:
                await msg.ack(multiple=True)
                self.counts["acks"] += 1
            except Exception as exc:  # its channel is gone: the broker delivers them again, duplicates to skip
                log.warning("could not ack message %s (%s); it will be delivered again", msg.message_id, exc)


def _attempts(msg: RabbitMessage) -> int:
    return int((msg.headers or {}).get("x-attempts", 0)) + 1


def _properties(source: RabbitMessage, events: list[Recorded]) -> dict:
    """A copy's properties: the source message's, with headers for the events the copy carries (a copy
    of some of a packed message's events names those, not the message's first)."""
    raw = source.raw_message
    headers = {k: v for k, v in (raw.headers or {}).items() if not k.startswith("x-")}
    headers["x-original-routing-key"] = (raw.headers or {}).get("x-original-routing-key", raw.routing_key or "")
    if events:  # empty: a body that is not events, copied as it came
        first = events[0]
        headers.update(stream_id=first.stream_id, version=first.version, position=first.position,
                       tx_id=first.tx_id, correlation_id=str(first.correlation_id))
        if len(events) > 1:
            headers.update({"x-events": len(events), "x-event-type": first.type})
    return dict(headers=headers, message_id=str(events[0].id) if events else raw.message_id,
                correlation_id=raw.correlation_id, content_type=raw.content_type or "application/json",
                message_type=raw.type, timestamp=raw.timestamp)


async def _each(messages: list[RabbitMessage], settle) -> None:
    for msg in messages:
        try:
            await settle(msg)
        except Exception as exc:  # its channel is gone: the broker delivers it again anyway
            log.warning("could not return message %s (%s)", msg.message_id, exc)


def _named(url: str, name: str) -> str:
    """The URL with aio-pika's `name` parameter: the connection's name in the management UI."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(
        [*urllib.parse.parse_qsl(parts.query), ("name", name)])))


async def _body(msg: RabbitMessage) -> bytes:
    return msg.body


async def declare_topology(rabbitmq_url: str, projector: Projector | None = None, partitions: int | None = None) -> None:
    """Declare the whole topology, and the queue of `projector` if it is not one of the registered ones."""
    projections = topology.subscriptions()
    if projector is not None:
        projections[projector.name] = projector.bindings
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        await topology.declare(await connection.channel(), projections, partitions)
