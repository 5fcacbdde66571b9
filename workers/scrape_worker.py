"""`orders worker scraper`: consumes `scraper.requests`, runs scrapes, and publishes each source's
scheduled requests to the same queue, so scheduled and manual scrapes take one path."""

import asyncio
import logging

import aio_pika
import msgspec
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage, RabbitQueue
from faststream.rabbit.schemas import QueueType

from events.db import make_pool
from workers import sources as source_config, topology
from workers.consumer import declare_topology
from workers.scraper import Scraper, ScrapeRequest

log = logging.getLogger(__name__)


async def publish_request(rabbitmq_url: str, request: ScrapeRequest) -> None:
    """What `orders scrape` and the schedules do, and what an operator can do by hand in the UI."""
    async with await aio_pika.connect(rabbitmq_url, timeout=10) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel)
        exchange = await channel.get_exchange(topology.COMMANDS)
        body = msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(request).items() if v is not None})
        await exchange.publish(aio_pika.Message(body, content_type="application/json",
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                               routing_key=topology.SCRAPE_REQUESTED, mandatory=True)


class ScraperWorker:
    def __init__(self, database_url: str, rabbitmq_url: str, *, sources_file: str | None = None,
                 timeout: float = 10.0, retries: int = 3):
        self.rabbitmq_url = rabbitmq_url
        self.sources = source_config.load(sources_file)
        self.pool = make_pool(database_url, min_size=1, max_size=4)
        self.scraper = Scraper(self.pool, self.sources, timeout=timeout, retries=retries)
        self.broker = RabbitBroker(rabbitmq_url, graceful_timeout=30, logger=log, log_level=logging.DEBUG)
        self.broker.subscriber(
            RabbitQueue(topology.SCRAPER_QUEUE, queue_type=QueueType.QUORUM, declare=False),
            ack_policy=AckPolicy.MANUAL, channel=Channel(prefetch_count=1), title=topology.SCRAPER_QUEUE,
            description="Runs a scrape: body {\"source\": NAME} or {\"url\": URL} with optional max_pages, max_products.",
        )(self.handle)
        self.runs = 0

    async def handle(self, msg: RabbitMessage) -> None:
        try:
            request = msgspec.json.decode(msg.body, type=ScrapeRequest)
            self.scraper.resolve(request)
        except (msgspec.DecodeError, ValueError) as exc:
            await self._dead_letter(msg, exc)
        else:
            try:
                await self.scraper.run(request)
                self.runs += 1
            except asyncio.CancelledError:
                raise  # stopping: not acked, the request is delivered again
            except Exception as exc:
                log.exception("scrape failed")
                await self._dead_letter(msg, exc)
        await msg.ack()

    async def _dead_letter(self, msg: RabbitMessage, exc: Exception) -> None:
        log.error("scrape request dead-lettered: %s", exc)
        await self.broker.publish(msg.body, exchange=topology.DLX, routing_key=topology.SCRAPER_QUEUE, persist=True,
                                  headers={**(msg.headers or {}), "x-error": f"{type(exc).__name__}: {exc}"[:1000]},
                                  content_type="application/json")

    async def _schedule(self, name: str, minutes: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), minutes * 60)
            except asyncio.TimeoutError:
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
