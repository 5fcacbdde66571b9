"""`orders worker scraper`: consumes `scraper.requests`, runs scrapes, and publishes each source's
scheduled requests to the same queue, so scheduled and manual scrapes take one path.

Every delivery ends settled: acked when its run finished, else dead-lettered to `scraper.requests.dlq`
with the reason in `x-error` (a body that is not a request, an unknown source, a failed run, a crash).
With prefetch 1 and a single active consumer, one message left unsettled would hold up every request
behind it, so the body is taken raw (FastStream decodes nothing, so it cannot fail before the handler)
and decoded here.
"""

import asyncio
import logging
import os
import uuid

import aio_pika
import msgspec
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from events import scrapes
from events.context import correlation_id
from events.db import make_pool
from workers import sources as source_config, topology
from workers.consumer import declare_topology
from workers.dead_letters import dead_letter
from workers.runtime import pause
from workers.scraper import Scraper, ScrapeRequest, decode_request

log = logging.getLogger(__name__)


async def publish_request(rabbitmq_url: str, request: ScrapeRequest) -> uuid.UUID:
    """What `orders scrape` and the schedules do, and what an operator can do by hand in the UI. Returns
    the request's id (a new one if it had none), the correlation id of its run's events."""
    if request.request_id is None:
        request = msgspec.structs.replace(request, request_id=uuid.uuid4())
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel)
        exchange = await channel.get_exchange(topology.COMMANDS)
        await exchange.publish(aio_pika.Message(msgspec.json.encode(request), content_type="application/json",
                                                message_id=str(request.request_id),
                                                correlation_id=str(request.request_id),
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                               routing_key=topology.SCRAPE_REQUESTED, mandatory=True)
    return request.request_id


async def _raw(msg: RabbitMessage) -> bytes:
    return msg.body


class ScraperWorker:
    def __init__(self, database_url: str, rabbitmq_url: str, *, sources_file: str | None = None,
                 timeout: float = 10.0, retries: int = 3):
        self.rabbitmq_url = rabbitmq_url
        self.sources = source_config.load(sources_file)
        self.pool = make_pool(database_url, min_size=1, max_size=4, name=f"orders-scraper-{os.getpid()}")
        self.scraper = Scraper(self.pool, self.sources, timeout=timeout, retries=retries)
        # No dependency injection: the handler gets the raw body and takes the message from the context.
        self.broker = RabbitBroker(rabbitmq_url, graceful_timeout=30, logger=log, log_level=logging.DEBUG,
                                   apply_types=False)
        self.broker.subscriber(
            RabbitQueue(topology.SCRAPER_QUEUE, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL, decoder=_raw, channel=Channel(prefetch_count=1),
            title=topology.SCRAPER_QUEUE,
            description="Runs a scrape: body {\"source\": NAME} or {\"url\": URL} with optional max_pages, "
                        "max_products, follow, request_id.",
        )(self.handle)

    async def handle(self, body: bytes) -> None:
        msg: RabbitMessage = self.broker.context.get_local("message")
        correlation_id.set(msg.correlation_id)
        try:
            outcome = await self.scraper.run(decode_request(body))
        except asyncio.CancelledError:
            raise  # stopping: not acked, the request is delivered again
        except Exception as exc:  # not a request, or a crash: either way it must not stay unsettled
            log.exception("scrape request %s not run", msg.message_id)
            await self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
            return
        if isinstance(outcome, scrapes.ScrapeFailed):
            await self._dead_letter(msg, outcome.reason)
        else:
            await _settle(msg.ack)

    async def _dead_letter(self, msg: RabbitMessage, reason: str) -> None:
        """A copy to `scraper.requests.dlq` with the reason, then the ack. If the copy cannot be published,
        the message is rejected: the queue dead-letters it itself (to the same DLQ, without the reason)."""
        raw = msg.raw_message
        try:
            await dead_letter(self.broker, msg.body, topology.SCRAPER_QUEUE, reason, headers=raw.headers,
                              content_type=raw.content_type, message_id=raw.message_id,
                              correlation_id=raw.correlation_id)
        except Exception:
            log.exception("cannot publish scrape request %s to the DLQ; rejecting it", msg.message_id)
            await _settle(msg.reject)
        else:
            await _settle(msg.ack)  # after the copy is confirmed: nothing is lost in between

    async def _schedule(self, name: str, minutes: float, stop: asyncio.Event) -> None:
        while not await pause(stop, minutes * 60):
            log.info("scheduled scrape of %s", name)
            await publish_request(self.rabbitmq_url, ScrapeRequest(source=name))

    async def start(self) -> None:
        await self.pool.open()
        await declare_topology(self.rabbitmq_url)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        await self.pool.close()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        schedules = [asyncio.create_task(self._schedule(s.name, s.schedule_minutes, stop))
                     for s in self.sources.values() if s.schedule_minutes]
        try:
            await stop.wait()
        finally:
            for task in schedules:
                task.cancel()
            await self.stop()


async def _settle(settle) -> None:
    try:
        await settle()
    except Exception as exc:  # its channel is gone: the broker delivers it again (x-delivery-limit bounds that)
        log.warning("could not settle a scrape request (%s); it will be delivered again", exc)
