"""The outbox relay: publishes the events table to RabbitMQ in commit order.

It advances its checkpoint only after the broker has confirmed every message of a batch, so a crash
or a broker outage can only cause a re-publish (consumers deduplicate), never a loss. Only the relay
holding the advisory lock publishes; others wait as standby and take over when its session ends.

Under load one read returns many events, and they travel packed: one message per event type (and
partition) carries them all, in their order, so a busy system publishes, stores, delivers and acks a
few messages where it had hundreds. When the system is quiet a read returns one event, and its message
carries that one event as before: batching adds no waiting. See `pack` for how order is kept.
"""

import asyncio
import logging
import os
from typing import NamedTuple

import aio_pika
import msgspec
import psycopg
from psycopg import AsyncConnection

from events import store
from events.base import Recorded
from events.broker import partition_of, routing_key
from workers import topology
from workers.runtime import pause

log = logging.getLogger(__name__)

RELAY_LOCK = 7_420_002
CHECKPOINT = "relay"
_encode = msgspec.json.encode


class Packet(NamedTuple):
    routing_key: str
    events: list[Recorded]


def pack(batch: list[Recorded], max_events: int = 500, partitions: int = 1) -> list[Packet]:
    """The messages for `batch` (in commit order), each holding events of one type and partition,
    at most `max_events`, in the order to publish them.

    A stream's events must reach its queue in order. A stream's events of one type go to one packet,
    in order. When a stream moves on to another type (a product reserved, then released), the packet
    holding its earlier events is closed first, so it is published before the packet that takes the
    stream's later ones. No other stream is affected: a stream's events are only ever in one open
    packet, the one holding its latest."""
    packets: list[Packet] = []
    open_: dict[str, Packet] = {}  # routing key -> the packet still taking events
    holding: dict[str, Packet] = {}  # stream -> the packet with its latest event

    for e in batch:
        key = routing_key(e.type, partition_of(e.stream_id, partitions), partitions)
        earlier = holding.get(e.stream_id)
        if earlier is not None and earlier.routing_key != key and open_.get(earlier.routing_key) is earlier:
            packets.append(open_.pop(earlier.routing_key))
        packet = open_.get(key)
        if packet is None or len(packet.events) >= max_events:
            if packet is not None:
                packets.append(open_.pop(key))  # full: its streams' next events go to a new packet
            packet = open_[key] = Packet(key, [])
        packet.events.append(e)
        holding[e.stream_id] = packet
    packets.extend(open_.values())
    return packets


def message(packet: Packet) -> aio_pika.Message:
    """One event: the event itself, as it has always been sent. Several: a JSON array of them, with
    headers saying how many and of what type (the management UI shows headers, not bodies)."""
    first = packet.events[0]
    headers = {"stream_id": first.stream_id, "version": first.version, "position": first.position,
               "tx_id": first.tx_id, "correlation_id": str(first.correlation_id)}
    if first.causation_id:
        headers["causation_id"] = str(first.causation_id)
    if len(packet.events) == 1:
        body = _encode(first)
    else:
        body = _encode(packet.events)
        last = packet.events[-1]
        headers.update({"x-events": len(packet.events), "x-event-type": first.type,
                        "x-streams": len({e.stream_id for e in packet.events}),
                        "x-last-position": last.position, "x-last-tx-id": last.tx_id})
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(first.id),  # the first event's: a re-publish after a crash carries the same id
        correlation_id=str(first.correlation_id),
        type=first.type,
        timestamp=first.recorded_at,
        headers=headers,
    )


class Relay:
    def __init__(self, database_url: str, rabbitmq_url: str, *, batch_size: int = 1000, poll_seconds: float = 1.0,
                 max_events_per_message: int = 500, partitions: int = 1, linger: float = 0.02):
        self.database_url, self.rabbitmq_url = database_url, rabbitmq_url
        self.batch_size, self.poll_seconds = batch_size, poll_seconds
        self.max_events_per_message, self.partitions = max(1, max_events_per_message), partitions
        self.linger = linger
        self.published = 0
        self.publish_failures = 0
        self.active = asyncio.Event()  # set while this relay holds the lock
        self._rabbit: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; survives database and broker outages."""
        delay = 0.5
        while not stop.is_set():
            try:
                async with await AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name=f"orders-relay-{os.getpid()}"
                ) as conn:
                    if await self._wait_for_lock(conn, stop):
                        delay = 0.5
                        await self._lead(conn, stop)
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("relay lost the database (%s); retrying in %.1fs", exc, delay)
            except Exception:
                log.exception("relay failed; restarting it in %.1fs", delay)
            finally:
                self.active.clear()
                await self._close_rabbit()
            await pause(stop, delay)
            delay = min(delay * 2, 10)

    async def _wait_for_lock(self, conn: AsyncConnection, stop: asyncio.Event) -> bool:
        said = False
        while not stop.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
            if (await cur.fetchone())[0]:
                log.info("relay active")
                self.active.set()
                return True
            if not said:
                log.info("another relay is active; standing by")
                said = True
            await pause(stop, self.poll_seconds)
        return False

    async def _lead(self, conn: AsyncConnection, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        async with await AsyncConnection.connect(self.database_url, autocommit=True) as listener:
            await listener.execute(f"LISTEN {store.RELAY_CHANNEL}")
            listening = asyncio.create_task(_listen(listener, wake))
            try:
                checkpoint = await store.load_checkpoint(conn, CHECKPOINT)
                while not stop.is_set():
                    wake.clear()
                    batch = await store.read_all(conn, checkpoint, self.batch_size)
                    if not batch:
                        await pause(stop, self.poll_seconds, wake)
                        continue
                    if not await self._publish(batch, stop):
                        return  # stopping during a broker outage: the checkpoint stays put
                    checkpoint = batch[-1].checkpoint
                    await store.save_checkpoint(conn, CHECKPOINT, checkpoint)
                    self.published += len(batch)
                    if 1 < len(batch) < self.batch_size and self.linger:
                        # Events are arriving faster than one at a time: let a few milliseconds' worth
                        # gather, so the next read packs more of them per message, transaction and ack.
                        # A quiet system (a read of one) and a backlog (a full read) never wait here.
                        await pause(stop, self.linger)
            finally:
                listening.cancel()

    async def _publish(self, batch: list[Recorded], stop: asyncio.Event) -> bool:
        """Publish a batch and wait for every confirm; retries through broker outages."""
        delay = 0.5
        while not stop.is_set():
            try:
                exchange = await self._connected_exchange()
                packets = pack(batch, self.max_events_per_message, self.partitions)
                results = await asyncio.gather(
                    *(exchange.publish(message(p), routing_key=p.routing_key, timeout=30) for p in packets),
                    return_exceptions=True,
                )
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is None:
                    return True
                raise failed
            except Exception as exc:  # any broker failure: reconnect and publish the batch again
                self.publish_failures += 1
                log.warning("relay cannot publish (%r); retrying in %.1fs", exc, delay)
                await self._close_rabbit()
                await pause(stop, delay)
                delay = min(delay * 2, 10)
        return False

    async def _connected_exchange(self) -> aio_pika.abc.AbstractExchange:
        if self._exchange is None or self._rabbit is None or self._rabbit.is_closed:
            self._rabbit = await aio_pika.connect(
                self.rabbitmq_url, timeout=10, client_properties={"connection_name": f"orders-relay-{os.getpid()}"}
            )
            channel = await self._rabbit.channel(publisher_confirms=True)
            await topology.declare(channel, partitions=self.partitions)
            self._exchange = await channel.get_exchange(topology.EVENTS)
            log.info("relay connected to RabbitMQ")
        return self._exchange

    async def _close_rabbit(self) -> None:
        rabbit, self._rabbit, self._exchange = self._rabbit, None, None
        if rabbit is not None:
            try:
                await rabbit.close()
            except Exception:  # already broken; nothing to release
                pass


async def _listen(listener: AsyncConnection, wake: asyncio.Event) -> None:
    try:
        async for _ in listener.notifies():
            wake.set()
    except psycopg.OperationalError:
        pass  # polling carries on without wake-ups; the main connection notices a real outage
