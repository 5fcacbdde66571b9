import asyncio
import contextlib
import uuid
from typing import NamedTuple

import aio_pika
import msgspec
import psycopg
import pytest
from faststream.rabbit import RabbitBroker

from events import store
from events.base import Recorded, unpack
from projections import Outcome, project
from projections.base import project_batch
from tests.support import Happened, Poisoned, eventually
from workers.consumer import ProjectionConsumer, declare_topology
from workers.dead_letters import RetryPolicy
from workers.relay import Relay


class Count(NamedTuple):
    version: int
    total: int
    seqs: list[int]


class CounterProjector:
    """A projector over test streams: one row per stream with a running total and the seqs seen."""

    name = "testcount"
    tables = ("test_counters",)
    bindings = ("test.#",)

    async def version(self, conn, stream_id: str) -> int:
        cur = await conn.execute("SELECT version FROM test_counters WHERE stream_id = %s", (stream_id,))
        row = await cur.fetchone()
        return row[0] if row else 0

    async def load(self, conn, stream_ids: list[str]) -> dict:
        cur = await conn.execute("SELECT stream_id, version, total, seqs FROM test_counters WHERE stream_id = ANY(%s)",
                                 (stream_ids,))
        return {r[0]: Count(*r[1:]) for r in await cur.fetchall()}

    def evolve(self, state: Count | None, event, version: int, at) -> Count:
        _, total, seqs = state or Count(0, 0, [])
        match event:
            case Happened(n=n, seq=seq):
                return Count(version, total + n, [*seqs, seq])
            case Poisoned(reason=reason):
                raise RuntimeError(reason)

    async def save(self, conn, states: dict, before: dict) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO test_counters (stream_id, version, total, seqs) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, total = excluded.total,"
                " seqs = excluded.seqs", [(s, *state) for s, state in states.items()])


@pytest.fixture(scope="module")
async def counters(pool):
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS test_counters"
                           " (stream_id text PRIMARY KEY, version int NOT NULL, total int NOT NULL, seqs int[] NOT NULL)")
    return CounterProjector()


async def row(pool, stream: str):
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT version, total, seqs FROM test_counters WHERE stream_id = %s", (stream,))
        return await cur.fetchone()


async def stream_of(pool, n: int) -> tuple[str, list[Recorded]]:
    stream = f"count-{uuid.uuid4()}"
    async with pool.connection() as conn:
        await store.append(conn, stream, 0, [Happened(n=10 * i, seq=i) for i in range(1, n + 1)])
        return stream, await store.read_stream(conn, stream)


@pytest.mark.parametrize("order", [
    [1, 1, 2, 2, 3, 3],  # every event twice
    [2, 1, 3],  # out of order
    [3],  # after a gap
    [3, 2, 1, 3],
])
async def test_any_delivery_order_leaves_the_row_as_one_in_order_pass(pool, counters, order):
    reference, ref_events = await stream_of(pool, 3)
    target, events = await stream_of(pool, 3)
    async with pool.connection() as conn:
        for e in ref_events:
            assert await project(conn, counters, e) == Outcome.APPLIED
        outcomes = [await project(conn, counters, events[v - 1]) for v in order]
    assert await row(pool, target) == await row(pool, reference) == (3, 60, [1, 2, 3])
    assert outcomes[0] == Outcome.APPLIED
    assert outcomes.count(Outcome.DUPLICATE) == len(order) - outcomes.count(Outcome.APPLIED)


async def test_one_batch_with_duplicates_and_gaps_applies_each_event_once(pool, counters):
    a, in_a = await stream_of(pool, 3)
    b, in_b = await stream_of(pool, 2)
    async with pool.connection() as conn:
        outcomes = await project_batch(conn, counters, [in_a[1], in_b[0], in_a[0], in_a[2], in_b[1], in_b[1]])
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE, Outcome.APPLIED, Outcome.APPLIED,
                        Outcome.DUPLICATE]
    assert await row(pool, a) == (3, 60, [1, 2, 3])
    assert await row(pool, b) == (2, 30, [1, 2])


async def test_an_unknown_event_type_is_skipped_and_later_events_still_apply(pool, counters):
    stream = f"count-{uuid.uuid4()}"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO events (event_id, stream_id, version, type, data, correlation_id)"
            " VALUES (%s, %s, 1, 'test.from-the-future', '{}', %s)", (uuid.uuid4(), stream, uuid.uuid4()))
        await store.append(conn, stream, 1, [Happened(n=5, seq=2)])
        unknown, known = await store.read_stream(conn, stream)
        with pytest.raises(LookupError):
            await project(conn, counters, unknown, strict=True)  # a rebuild must not lose data quietly
        assert await project(conn, counters, unknown) == Outcome.UNKNOWN
        assert await project(conn, counters, known) == Outcome.APPLIED
    assert await row(pool, stream) == (2, 5, [2])


@contextlib.asynccontextmanager
async def pipeline(services, projector, **consumer_args):
    async with pipeline_for(services, projector, **consumer_args) as consumer:
        yield consumer


@contextlib.asynccontextmanager
async def pipeline_for(services, projector, **consumer_args):
    """The projection consumer and the relay, running against the real broker and database."""
    consumer_args.setdefault("retry_seconds", 0.05)  # the backoff's shape is tested on its own
    consumer = ProjectionConsumer(projector, services.database_url, services.rabbitmq_url, **consumer_args)
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=0.2)
    stop = asyncio.Event()
    await consumer.start()
    relaying = asyncio.create_task(relay.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await relaying
        await consumer.stop()


async def test_events_flow_through_the_broker_into_the_read_table(services, pool, counters):
    async with pipeline(services, counters):
        streams = [(await stream_of(pool, 5))[0] for _ in range(20)]

        async def all_projected():
            return all([await row(pool, s) == (5, 150, [1, 2, 3, 4, 5]) for s in streams])
        await eventually(all_projected, what="20 streams projected")
        async with pool.connection() as conn:
            checkpoint = await store.load_checkpoint(conn, counters.name)
            last = (await store.read_stream(conn, streams[-1]))[-1]
        assert checkpoint >= last.checkpoint


async def test_a_cut_broker_connection_loses_and_duplicates_nothing(services, pool, counters):
    async with pipeline(services, counters):
        appending = asyncio.create_task(_streams(pool, 60))
        first = (await stream_of(pool, 5))[0]
        await eventually(lambda: _row_is(pool, first, (5, 150, [1, 2, 3, 4, 5])), what="the first stream")
        # Cut while events flow: acks of a batch in hand fail on the dead channel, the broker
        # delivers those messages again on the new one, and their versions make them duplicates.
        cut = await eventually(lambda: services.admin.close_connections(services.vhost, "orders-projection-testcount"),
                               what="the consumer's connection to cut")
        assert len(cut) == 1
        streams = [first, *await appending]

        async def all_projected():
            return all([await row(pool, s) == (5, 150, [1, 2, 3, 4, 5]) for s in streams])
        await eventually(all_projected, what="every stream projected exactly once", timeout=60)


async def _streams(pool, n: int) -> list[str]:
    return [(await stream_of(pool, 5))[0] for _ in range(n)]


async def test_a_poison_message_is_dead_lettered_and_other_streams_keep_flowing(services, pool, counters):
    async with pipeline(services, counters, max_attempts=3) as consumer:
        poisoned = f"count-{uuid.uuid4()}"
        async with pool.connection() as conn:
            await store.append(conn, poisoned, 0, [Poisoned(reason="bad data")])
        healthy = [(await stream_of(pool, 2))[0] for _ in range(5)]

        async def healthy_projected():
            return all([await row(pool, s) == (2, 30, [1, 2]) for s in healthy])
        await eventually(healthy_projected, what="the healthy streams")
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == 1), what="a dead letter")
        assert consumer.counts["failed"] == 3

    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue("projections.testcount.dlq", passive=True)
        message = await dlq.get(timeout=5)
        await message.ack()
    assert message.headers["stream_id"] == poisoned
    assert message.headers["x-attempts"] == 3
    assert "bad data" in message.headers["x-error"]
    assert message.headers["x-original-routing-key"] == "test.poisoned"
    assert await row(pool, poisoned) is None


async def _async(value):
    return value


async def test_a_dead_letter_comes_back_with_redrive_after_the_fix(services, pool, counters):
    from workers import topology

    class Flaky(CounterProjector):
        broken = True

        def evolve(self, state, event, version, at):
            if self.broken:
                raise RuntimeError("bug in the projector")
            return super().evolve(state, event, version, at)

    projector = Flaky()
    async with pipeline(services, projector, max_attempts=2) as consumer:
        stream, _ = await stream_of(pool, 1)
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == 1), what="a dead letter")
        assert await row(pool, stream) is None
        projector.broken = False  # the fix is deployed
        assert await topology.redrive(services.rabbitmq_url, "projections.testcount") == 1
        await eventually(lambda: _row_is(pool, stream, (1, 10, [1])), what="the redriven event applied")


async def _row_is(pool, stream, expected):
    return await row(pool, stream) == expected


async def test_batches_are_acked_with_fewer_acks_than_messages_and_none_left_unacked(services, pool, counters):
    streams = [await stream_of(pool, 5) for _ in range(60)]
    await _relayed(services, pool, streams[-1][1][-1])
    async with pipeline(services, counters) as consumer:
        async def all_projected():
            return all([await row(pool, s) == (5, 150, [1, 2, 3, 4, 5]) for s, _ in streams])
        await eventually(all_projected, what="300 events projected")
        await eventually(lambda: _figures_are(services, counters.name, ready=0, unacked=0), timeout=30,
                         what="every message acked while the consumer runs")
        messages = sum(consumer.counts[o.value] for o in Outcome)
        assert messages >= 300
        assert consumer.counts["acks"] < messages


async def test_a_failed_stream_waits_its_backoff_in_the_retry_queue_while_the_queue_flows(services, pool, counters):
    async with pipeline(services, counters, max_attempts=2, retry_seconds=3) as consumer:
        poisoned = f"count-{uuid.uuid4()}"
        async with pool.connection() as conn:
            await store.append(conn, poisoned, 0, [Poisoned(reason="bad data")])
        healthy = [(await stream_of(pool, 2))[0] for _ in range(10)]

        async def healthy_projected():
            return all([await row(pool, s) == (2, 30, [1, 2]) for s in healthy])
        await eventually(healthy_projected, what="the streams behind the failed one")
        assert consumer.counts["failed"] == 1

        async def waiting_in_retry():
            async with await aio_pika.connect(services.rabbitmq_url) as connection:
                channel = await connection.channel()
                retry = await channel.declare_queue("projections.testcount.retry", passive=True)
                main = await channel.declare_queue("projections.testcount", passive=True)
                return retry.declaration_result.message_count == 1 and main.declaration_result.message_count == 0
        await eventually(waiting_in_retry, timeout=3, what="the failed stream's copy in the retry queue")
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == 1), what="the second attempt to fail")
        assert consumer.counts["failed"] == 2

    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        dlq = await (await connection.channel()).declare_queue("projections.testcount.dlq", passive=True)
        message = await dlq.get(timeout=5)
        await message.ack()
    assert message.headers["stream_id"] == poisoned and message.headers["x-attempts"] == 2
    assert message.headers["x-original-routing-key"] == "test.poisoned"
    assert await row(pool, poisoned) is None


async def test_a_bad_event_in_a_packed_message_holds_back_only_its_own_stream(services, pool, counters):
    """One message carries several streams' events; one stream's event fails: the other streams of the
    same message are applied, and only the failing stream's events are sent on, as a copy of their own."""

    class Picky(CounterProjector):
        def evolve(self, state, event, version, at):
            if isinstance(event, Happened) and event.n == 13:
                raise RuntimeError("thirteen")
            return super().evolve(state, event, version, at)

    streams = [f"count-{uuid.uuid4()}" for _ in range(5)]
    async with pool.connection() as conn, conn.transaction():  # one transaction: one read, one packed message
        for i, stream in enumerate(streams):
            await store.append(conn, stream, 0, [Happened(n=13 if i == 2 else 1, seq=1)])
    async with pipeline(services, Picky(), max_attempts=1) as consumer:
        async def others_projected():
            return all([await row(pool, s) == (1, 1, [1]) for i, s in enumerate(streams) if i != 2])
        await eventually(others_projected, what="the other streams of the message")
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == 1), what="the bad stream dead-lettered")
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        dlq = await (await connection.channel()).declare_queue("projections.testcount.dlq", passive=True)
        message = await dlq.get(timeout=5)
        await message.ack()
    [dead] = unpack(message.body)
    assert dead.stream_id == streams[2] and message.headers["stream_id"] == streams[2]
    assert await row(pool, streams[2]) is None


async def _relayed(services, pool, last: Recorded) -> None:
    """Relay the events up to `last` into the queue before any consumer runs, and wait until the
    management API counts them: its figures lag by up to a statistics interval, so from then on none
    it reports comes from before they were queued."""
    await declare_topology(services.rabbitmq_url, CounterProjector())
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=0.2)
    stop = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: _relay_reached(pool, last), what="the relay to publish the events")
    finally:
        stop.set()
        await relaying
    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        queue = await (await connection.channel()).declare_queue("projections.testcount", passive=True)
        ready = queue.declaration_result.message_count
    await eventually(lambda: _figures_are(services, "testcount", ready=ready, unacked=0), timeout=30,
                     what=f"the management API to count {ready} messages ready")


async def _relay_reached(pool, last: Recorded) -> bool:
    async with pool.connection() as conn:
        return await store.load_checkpoint(conn, "relay") >= last.checkpoint


async def _figures_are(services, projection: str, *, ready: int, unacked: int) -> bool:
    queue = await services.admin.queue(services.vhost, f"projections.{projection}")
    return queue.get("messages_ready") == ready and queue.get("messages_unacknowledged") == unacked


async def _notified(listener, line: str, timeout: float = 5.0) -> None:
    """Wait, up to `timeout` seconds, for a notification on `projected` with `line` among its lines."""
    async for note in listener.notifies(timeout=timeout):
        if line in note.payload.splitlines():
            return
    raise AssertionError(f"no notification {line!r} within {timeout}s")


async def test_duplicates_are_notified_too(services, pool, counters):
    """A command may wait for a version that a rebuild's swap put in the table (it notifies nobody): the
    redelivered event, a duplicate now, is what wakes it."""
    stream, (first, second) = await stream_of(pool, 2)
    async with await psycopg.AsyncConnection.connect(services.database_url, autocommit=True) as listener:
        await listener.execute("LISTEN projected")
        async with pool.connection() as conn:
            assert await project(conn, counters, first) == Outcome.APPLIED
            await _notified(listener, f"testcount {stream} 1")
            assert await project(conn, counters, first) == Outcome.DUPLICATE
            await _notified(listener, f"testcount {stream} 1")
            assert await project(conn, counters, second) == Outcome.APPLIED
            await _notified(listener, f"testcount {stream} 2")
            # a batch of duplicates only: one line for the stream, with the highest version
            assert await project_batch(conn, counters, [second, first]) == [Outcome.DUPLICATE] * 2
            await _notified(listener, f"testcount {stream} 2")
    assert await row(pool, stream) == (2, 30, [1, 2])


async def test_a_copy_the_broker_refuses_gives_the_batch_back_and_nothing_is_lost(services, pool, counters,
                                                                                   monkeypatch):
    """The broker refuses the failed stream's copy three times: each time the batch is given back to the
    queue (not left unacked on a channel that lives on) and comes again; then the copies go through, and
    the stream is dead-lettered after its attempts while the streams around it are projected."""
    refused, publish = [], RabbitBroker.publish

    async def refusing_publish(broker, *args, **kwargs):
        if len(refused) < 3:
            refused.append(kwargs["headers"]["x-attempts"])
            raise aio_pika.exceptions.AMQPConnectionError("the broker refuses the copy")
        return await publish(broker, *args, **kwargs)
    monkeypatch.setattr(RabbitBroker, "publish", refusing_publish)

    async with pipeline(services, counters, max_attempts=3) as consumer:
        healthy = [(await stream_of(pool, 2))[0] for _ in range(10)]
        poisoned = f"count-{uuid.uuid4()}"
        async with pool.connection() as conn:
            await store.append(conn, poisoned, 0, [Poisoned(reason="bad data")])
        healthy += [(await stream_of(pool, 2))[0] for _ in range(10)]

        async def healthy_projected():
            return all([await row(pool, s) == (2, 30, [1, 2]) for s in healthy])
        await eventually(healthy_projected, what="the healthy streams")
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == 1), what="a dead letter")
        assert refused == [1, 1, 1]  # given back three times: the copy of the first attempt, refused
        assert consumer.counts["failed"] == 6  # 3 given back, then attempts 1, 2 and 3
        await eventually(lambda: _figures_are(services, counters.name, ready=0, unacked=0), timeout=30,
                         what="nothing left unacked")

    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        dlq = await (await connection.channel()).declare_queue("projections.testcount.dlq", passive=True)
        dead = []
        while (message := await dlq.get(fail=False)) is not None:
            await message.ack()
            dead.append(message)
    assert [m.headers["stream_id"] for m in dead] == [poisoned] and dead[0].headers["x-attempts"] == 3


POISON = [
    ("not JSON, declared as JSON", b"{not json", "application/json"),
    ("not JSON, no content type", b"{not json", None),
    ("a JSON array", b"[1, 2, 3]", "application/json"),
    ("a 1 MB body", b"x" * 1_048_576, "application/json"),
]


async def test_undecodable_messages_are_dead_lettered_at_once_and_the_next_one_flows(services, pool, counters):
    async with pipeline(services, counters, max_attempts=5) as consumer:
        stream, [good] = await stream_of(pool, 1)
        # An envelope that decodes, with event data that does not fit its type: as hopeless as garbage.
        misfit = msgspec.json.encode(msgspec.structs.replace(
            good, stream_id=f"count-{uuid.uuid4()}", data=msgspec.Raw(b'{"n": "not a number"}')))
        async with await aio_pika.connect(services.rabbitmq_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            for _, body, content_type in [*POISON, ("misfit data", misfit, "application/json")]:
                await channel.default_exchange.publish(aio_pika.Message(body, content_type=content_type),
                                                       routing_key="projections.testcount")
        healthy, _ = await stream_of(pool, 2)
        await eventually(lambda: _row_is(pool, healthy, (2, 30, [1, 2])), what="the event after the poison")
        await eventually(lambda: _async(consumer.counts["dead_lettered"] == len(POISON) + 1), what="five dead letters")
        assert consumer.counts["failed"] == len(POISON) + 1  # one attempt each: no retries

    async with await aio_pika.connect(services.rabbitmq_url) as connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue("projections.testcount.dlq", passive=True)
        dead = []
        while (message := await dlq.get(fail=False)) is not None:
            await message.ack()
            dead.append(message)
    assert len(dead) == len(POISON) + 1
    assert all(m.headers["x-attempts"] == 1 and m.headers["x-error"] for m in dead)
    assert sorted(len(m.body) for m in dead)[-1] == 1_048_576


def test_retries_back_off_doubling_up_to_a_minute():
    policy = RetryPolicy(max_attempts=5, retry_seconds=1.0)
    delays = [policy.backoff(n) for n in range(1, 10)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert sum(delays[:4]) == 15.0  # five attempts span fifteen seconds, not one
    assert max(delays) == 60.0
