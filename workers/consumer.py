"""A projection worker: consumes `projections.<name>` and applies the events to its projector in
batches, one transaction each.

Acks only after the batch's transaction commits, and with as few acks as it can: one `basic.ack`
with `multiple` for the done deliveries of a channel that no unsettled one precedes. A message whose
handling fails is published again with an attempt count after a backoff that doubles each time (to
the back of the queue, so other streams keep flowing) and, after `max_attempts`, to the dead-letter
queue with the error in its headers. A message that cannot be decoded, or whose event data does not
fit its type, would fail the same way every time: it goes to the dead-letter queue at once.
Losing the database is not the message's fault: the worker waits for it and does not spend the
message's attempts.
"""

import asyncio
import enum
import logging
import os
import urllib.parse
from collections import Counter

import aio_pika
import msgspec
import psycopg
import psycopg_pool
from aio_pika.exceptions import ChannelInvalidStateError
from aiormq.abc import AbstractChannel
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from events.base import Recorded
from events.db import make_pool
from projections import Outcome, Projector
from projections.base import project_batch
from workers import topology
from events.context import correlation_id

log = logging.getLogger(__name__)

_OUTAGES = (psycopg.OperationalError, psycopg_pool.PoolTimeout)
# Undecodable bodies and event data that does not fit its type: retrying cannot help.
_PERMANENT = (msgspec.MsgspecError,)
MAX_BACKOFF = 60.0


_MAX_TRACKED = 10_000  # deliveries one channel keeps track of beyond its watermark


class _State(enum.Enum):
    WAITING = enum.auto()  # in `_pending` or in the batch in hand
    RETRYING = enum.auto()  # unacked until its copy is re-published
    DONE = enum.auto()  # committed, not acked yet
    ACKED = enum.auto()  # acked alone: settled, but no tag for a multiple ack (the broker forgot it)


class _Deliveries:
    """The deliveries of one channel from its first unsettled one, by delivery tag (1, 2, ...).

    An ack with `multiple` settles every delivery up to its tag, waiting, retrying or not yet handled
    ones too: so it only goes up to the watermark, below which every tag is settled."""

    def __init__(self) -> None:
        self.watermark = 0
        self.last = 0  # the highest tag `handle` has seen
        self.states: dict[int, _State] = {}
        self.unacked: dict[int, RabbitMessage] = {}  # the DONE ones

    def register(self, msg: RabbitMessage) -> None:
        tag = msg.raw_message.delivery_tag
        self.states[tag] = _State.WAITING
        self.last = max(self.last, tag)

    def mark(self, msg: RabbitMessage, state: _State) -> None:
        tag = msg.raw_message.delivery_tag
        self.states[tag] = state
        if state is _State.DONE:
            self.unacked[tag] = msg

    def advance(self, everything: bool = False) -> tuple[RabbitMessage | None, list[RabbitMessage]]:
        """Move the watermark over the settled tags. Returns the message to ack with `multiple` (the
        last done one passed, if any) and the done ones to ack alone: all of them if `everything`,
        else those behind a tag that will not settle soon (a retry takes seconds, and a prefetch
        window full of done messages stalls the queue; a tag `handle` skipped never settles)."""
        upto = None
        while (state := self.states.get(self.watermark + 1)) in (_State.DONE, _State.ACKED):
            self.watermark += 1
            del self.states[self.watermark]
            if state is _State.DONE:
                upto = self.unacked.pop(self.watermark)
        held = self.states.get(self.watermark + 1)
        if not (everything or held is _State.RETRYING or (held is None and self.watermark < self.last)):
            return upto, []
        alone = list(self.unacked.values())
        self.states.update(dict.fromkeys(self.unacked, _State.ACKED))
        self.unacked.clear()
        if len(self.states) > _MAX_TRACKED:
            # A tag that never settles holds the watermark: forget the settled tags behind it. The
            # watermark then stops at them for good and this channel's acks go one by one: slower,
            # never wrong, and the memory stays bounded.
            log.warning("delivery %d never settled; acking this channel's messages one by one", self.watermark + 1)
            self.states = {t: s for t, s in self.states.items() if s is not _State.ACKED}
        return upto, alone


class ProjectionConsumer:
    def __init__(self, projector: Projector, database_url: str, rabbitmq_url: str, *,
                 max_attempts: int = 5, retry_seconds: float = 1.0, prefetch: int = 256, batch_size: int = 128):
        self.projector = projector
        self.queue = topology.projection_queue(projector.name)
        self.rabbitmq_url = rabbitmq_url
        self.max_attempts, self.retry_seconds, self.batch_size = max_attempts, retry_seconds, batch_size
        self.counts: Counter[str] = Counter()  # outcomes, failures, and the acks sent
        self.pool = make_pool(database_url, min_size=1, max_size=4)
        # No dependency injection: the handler takes the message from the broker's context. FastStream
        # would otherwise resolve the message parameter in a thread for every message, and decode
        # the JSON body that msgspec decodes anyway.
        self.broker = RabbitBroker(_named(rabbitmq_url, f"orders-projection-{projector.name}-{os.getpid()}"), graceful_timeout=10, logger=log, log_level=logging.DEBUG, apply_types=False)
        self.broker.subscriber(
            RabbitQueue(self.queue, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL,
            decoder=_body,
            channel=Channel(prefetch_count=prefetch),
            title=self.queue,
            description=f"Applies events to the {projector.name} read tables.",
        )(self.handle)
        self._closing = False
        self._pending: list[RabbitMessage] = []
        self._flusher: asyncio.Task | None = None
        self._retries: set[asyncio.Task] = set()
        self._deliveries: dict[AbstractChannel, _Deliveries] = {}  # a new channel restarts the tags

    async def start(self) -> None:
        await self.pool.open()
        await declare_topology(self.rabbitmq_url, self.projector)
        await self.broker.start()
        log.info("projection %s consuming %s", self.projector.name, self.queue)

    async def stop(self) -> None:
        self._closing = True
        if self._flusher is not None:
            await asyncio.wait([self._flusher])  # the batch in hand commits (or rolls back); the rest is redelivered
        for retry in list(self._retries):
            retry.cancel()  # not acked yet: the broker delivers the message again
        await self._ack_done(everything=True)
        await self.broker.stop()
        await self.pool.close()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def handle(self, _body: bytes) -> None:
        """Queue the message for the next batch; it is acked once its batch commits.

        Returning at once lets FastStream hand over the next prefetched message, so while one batch
        is in the database the next one gathers: one transaction per batch instead of per event,
        and no waiting when the queue is quiet (a batch is whatever arrived meanwhile)."""
        msg = self.broker.context.get_local("message")
        try:
            channel = msg.raw_message.channel
        except ChannelInvalidStateError:
            pass  # never acked: the broker delivers it again on another channel
        else:
            if (deliveries := self._deliveries.get(channel)) is None:
                deliveries = self._deliveries[channel] = _Deliveries()
            deliveries.register(msg)
        self._pending.append(msg)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending and not self._closing:
            batch, self._pending = self._pending[:self.batch_size], self._pending[self.batch_size:]
            await self._apply_batch(batch)

    async def _apply_batch(self, messages: list[RabbitMessage]) -> None:
        decoded = []
        for msg in messages:
            try:
                decoded.append((msg, msgspec.json.decode(msg.body, type=Recorded)))
            except msgspec.DecodeError as exc:
                self._failed(msg, exc)
        if not decoded:
            return
        try:
            outcomes = await self._apply([r for _, r in decoded])
        except asyncio.CancelledError:
            raise  # shutting down: not acked, so they are delivered again
        except Exception:
            # One bad event must not hold up the others: apply them one by one, so that only the
            # failing one is retried (and, in the end, dead-lettered).
            for msg, recorded in decoded:
                if self._closing:
                    return  # the rest is delivered again; stop() acks the done ones
                await self._apply_alone(msg, recorded)
        else:
            for (msg, recorded), outcome in zip(decoded, outcomes, strict=True):
                self._done(msg, recorded, outcome)
        await self._ack_done()

    async def _apply_alone(self, msg: RabbitMessage, recorded: Recorded) -> None:
        correlation_id.set(msg.correlation_id)
        try:
            [outcome] = await self._apply([recorded])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(msg, exc)
        else:
            self._done(msg, recorded, outcome)

    def _done(self, msg: RabbitMessage, recorded: Recorded, outcome: Outcome) -> None:
        self._mark(msg, _State.DONE)
        self.counts[outcome.value] += 1
        if log.isEnabledFor(logging.DEBUG):
            correlation_id.set(msg.correlation_id)
            log.debug("projection %s: %s %s v%d %s", self.projector.name, recorded.type, recorded.stream_id,
                      recorded.version, outcome.value)

    def _failed(self, msg: RabbitMessage, exc: Exception) -> None:
        """Count and log now; retry or dead-letter in the background, so that the other streams do
        not wait out this message's backoff. It stays unacked until then."""
        correlation_id.set(msg.correlation_id)
        attempts = int((msg.headers or {}).get("x-attempts", 0)) + 1
        self._mark(msg, _State.RETRYING)
        self.counts["failed"] += 1
        log.error("projection %s failed on message %s (attempt %d)", self.projector.name, msg.message_id, attempts,
                  exc_info=exc)
        retry = asyncio.create_task(self._retry_or_dead_letter(msg, attempts, exc))
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def _apply(self, batch: list[Recorded]) -> list[Outcome]:
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    return await project_batch(conn, self.projector, batch)
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
        try:
            if attempts >= self.max_attempts or isinstance(exc, _PERMANENT):  # retrying cannot help these
                await self.broker.publish(msg.body, exchange=topology.DLX, routing_key=self.queue, **common)
                self.counts["dead_lettered"] += 1
                log.error("projection %s dead-lettered message %s after %d attempts", self.projector.name,
                          msg.message_id, attempts)
            else:
                await asyncio.sleep(self.backoff(attempts))
                await self.broker.publish(msg.body, routing_key=self.queue, **common)
        except Exception:  # give it back; the queue's delivery limit still bounds its attempts
            log.exception("projection %s could not re-publish message %s", self.projector.name, msg.message_id)
            try:
                await msg.nack(requeue=True)
            except Exception as err:  # its channel is gone: the broker delivers it again
                log.warning("could not return message %s (%s); it will be delivered again", msg.message_id, err)
            else:
                self._mark(msg, _State.ACKED)  # settled: never left unacked on a channel that lives on
            return
        if await self._ack(msg):  # after the copy is published: nothing is lost in between
            self._mark(msg, _State.ACKED)  # only now may a multiple ack cover its tag

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: retry_seconds, doubling, at most a minute."""
        return min(self.retry_seconds * 2 ** (attempts - 1), MAX_BACKOFF)

    def _mark(self, msg: RabbitMessage, state: _State) -> None:
        try:
            deliveries = self._deliveries.get(msg.raw_message.channel)
        except ChannelInvalidStateError:
            return  # its channel is gone: nothing of it is acked any more
        if deliveries is not None:
            deliveries.mark(msg, state)

    async def _ack_done(self, everything: bool = False) -> None:
        """Ack what is done, per channel, and forget the channels that are closed.

        Only the flusher calls it (and stop(), once the flusher is finished): the acks go out in
        the order they are decided, so none is sent after a multiple ack that covers its tag."""
        for channel, deliveries in list(self._deliveries.items()):
            upto, alone = deliveries.advance(everything)
            if upto is not None:
                await self._ack(upto, multiple=True)
            for msg in alone:
                await self._ack(msg)
            if channel.is_closed:
                self._deliveries.pop(channel, None)  # its unacked deliveries come again on a new one

    async def _ack(self, msg: RabbitMessage, multiple: bool = False) -> bool:
        try:
            await msg.ack(multiple=multiple)
        except Exception as exc:  # its channel is gone: the broker delivers it again, a duplicate to skip
            log.warning("could not ack message %s (%s); it will be delivered again", msg.message_id, exc)
            return False
        self.counts["acks"] += 1
        return True


def _named(url: str, name: str) -> str:
    """The URL with aio-pika's `name` parameter: the connection's name in the management UI."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(
        [*urllib.parse.parse_qsl(parts.query), ("name", name)])))


async def _body(msg: RabbitMessage) -> bytes:
    return msg.body


async def declare_topology(rabbitmq_url: str, projector: Projector | None = None) -> None:
    """Declare the whole topology, and the queue of `projector` if it is not one of the registered ones."""
    projections = topology.subscriptions()
    if projector is not None:
        projections[projector.name] = projector.bindings
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        await topology.declare(await connection.channel(), projections)
