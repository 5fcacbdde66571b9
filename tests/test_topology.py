"""The topology on the real broker: the way back from a dead-letter queue."""

import asyncio
import uuid

import aio_pika

from tests.support import eventually
from workers import topology


async def test_redrive_sends_dead_scrape_requests_back_to_the_request_queue(services):
    message_id = uuid.uuid4().hex
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel)
        dlx = await channel.get_exchange(topology.DLX)
        # Dead-lettered as the scraper worker does it: to orders.dlx, the reason in x-error.
        await dlx.publish(aio_pika.Message(b'{"source": "no-such-shop"}', content_type="application/json",
                                           message_id=message_id, headers={"x-error": "ValueError: no-such-shop"}),
                          routing_key=topology.SCRAPER_QUEUE)

    assert await topology.redrive(services.rabbitmq_url, topology.SCRAPER_QUEUE) == 1

    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dlq(topology.SCRAPER_QUEUE), passive=True)
        assert dead.declaration_result.message_count == 0
        requests = await channel.declare_queue(topology.SCRAPER_QUEUE, passive=True)
        # Consumed, not fetched (a single-active-consumer queue refuses basic.get). Requests other tests
        # left stay unacked and go back to the queue when the channel closes.
        async with asyncio.timeout(20), requests.iterator() as delivered:
            async for message in delivered:
                if message.message_id == message_id:
                    await message.ack()
                    break
    assert message.body == b'{"source": "no-such-shop"}' and message.content_type == "application/json"
    assert "x-error" not in (message.headers or {})


async def test_redrive_moves_only_the_messages_the_dlq_held_when_it_started(services):
    # Messages that die again as soon as they are back, as under a consumer that rejects everything:
    # this queue's messages expire on arrival (TTL 0) and go to its DLQ once more while the redrive runs.
    queue = f"test.bounce.{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel)
        dlx = await channel.get_exchange(topology.DLX)
        bouncing = await channel.declare_queue(queue, arguments={
            "x-message-ttl": 0, "x-dead-letter-exchange": topology.DLX, "x-dead-letter-routing-key": queue})
        dead = await channel.declare_queue(topology.dlq(queue))
        await dead.bind(dlx, routing_key=queue)
        try:
            for n in range(2):
                await dlx.publish(aio_pika.Message(f"dead {n}".encode()), routing_key=queue)
            # Bounded: without a limit the redrive keeps moving the same messages as long as they come back.
            moved = await asyncio.wait_for(topology.redrive(services.rabbitmq_url, queue), 20)

            async def back_in_the_dlq():
                declared = await channel.declare_queue(topology.dlq(queue), passive=True)
                return declared.declaration_result.message_count == 2
            await eventually(back_in_the_dlq, what="the two messages to die again")
        finally:
            await bouncing.delete(if_unused=False, if_empty=False)
            await dead.delete(if_unused=False, if_empty=False)
    assert moved == 2
