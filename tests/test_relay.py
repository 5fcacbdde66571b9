import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import msgspec

from events import store
from events.base import Recorded
from tests.support import Happened, Tap, eventually
from events.broker import partition_of
from workers.relay import CHECKPOINT, Relay, pack


async def append_events(pool, count: int, streams: int = 10) -> set[str]:
    names = [f"relay-{uuid.uuid4()}" for _ in range(streams)]
    async with pool.connection() as conn:
        for i in range(count):
            name = names[i % streams]
            async with conn.transaction():
                await store.append(conn, name, i // streams, [Happened(seq=i)])
    return set(names)


@contextlib.asynccontextmanager
async def running(relay: Relay):
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def relay_for(services, url: str | None = None) -> Relay:
    return Relay(services.database_url, url or services.rabbitmq_url, poll_seconds=0.2)


async def arrived(tap: Tap, streams: set[str], count: int):
    async def probe():
        return len({t.event.id for t in tap.for_streams(streams)}) >= count
    await eventually(probe, what=f"{count} events on the broker")


async def test_events_read_together_travel_in_one_message_of_their_type(services, pool):
    async with Tap(services.rabbitmq_url) as tap, running(relay_for(services)):
        stream = f"relay-{uuid.uuid4()}"
        async with pool.connection() as conn:
            await store.append(conn, stream, 0, [Happened(n=1), Happened(n=2), Happened(n=3)])
            stored = await store.read_stream(conn, stream)
        await arrived(tap, {stream}, 3)
    [message] = {id(t.message): t.message for t in tap.for_streams({stream})}.values()
    assert message.routing_key == "test.happened" and message.type == "test.happened"
    assert message.delivery_mode == 2 and message.content_type == "application/json"  # persistent
    assert message.message_id == str(stored[0].id)
    assert message.headers["x-events"] == 3 and message.headers["x-event-type"] == "test.happened"
    assert message.headers["x-streams"] == 1 and message.headers["x-last-position"] == stored[-1].position
    body = msgspec.json.decode(message.body, type=list[Recorded])
    assert [(e.id, e.version, e.event()) for e in body] == [(e.id, e.version, e.event()) for e in stored]


async def test_with_one_event_per_message_each_event_is_its_own_message_as_before(services, pool):
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=0.2, max_events_per_message=1)
    async with Tap(services.rabbitmq_url) as tap, running(relay):
        stream = f"relay-{uuid.uuid4()}"
        async with pool.connection() as conn:
            await store.append(conn, stream, 0, [Happened(n=1), Happened(n=2), Happened(n=3)])
            stored = await store.read_stream(conn, stream)
        await arrived(tap, {stream}, 3)
    got = [t.message for t in tap.for_streams({stream})]
    assert len(got) == 3
    for message, event in zip(got, stored, strict=True):
        assert message.routing_key == "test.happened" and message.type == "test.happened"
        assert message.message_id == str(event.id)
        assert message.delivery_mode == 2  # persistent
        assert message.content_type == "application/json"
        assert message.headers["stream_id"] == stream
        assert message.headers["version"] == event.version
        assert message.headers["position"] == event.position
        assert message.headers["correlation_id"] == str(event.correlation_id)
        assert "x-events" not in message.headers
        body = msgspec.json.decode(message.body, type=Recorded)
        assert body.event() == event.event() and body.version == event.version


async def test_appends_succeed_while_the_broker_is_unreachable_and_arrive_once_it_is_back(services, pool):
    closed = "amqp://guest:guest@127.0.0.1:1/"
    async with Tap(services.rabbitmq_url) as tap:
        async with running(relay_for(services, closed)) as blind:
            streams = await append_events(pool, 50)  # appends do not need the broker
            await eventually(lambda: _async(blind.publish_failures > 0), what="a failed publish")
            assert blind.published == 0
        assert tap.for_streams(streams) == []
        async with running(relay_for(services)):
            await arrived(tap, streams, 50)


async def test_relay_resumes_after_its_broker_connection_is_cut(services, pool):
    async with Tap(services.rabbitmq_url) as tap, running(relay_for(services)) as relay:
        first = await append_events(pool, 100)
        await arrived(tap, first, 100)
        # The management API lists a new connection after a short delay.
        cut = await eventually(lambda: services.admin.close_connections(services.vhost, "orders-relay"),
                               what="the relay's connection to cut")
        assert len(cut) == 1
        second = await append_events(pool, 100)
        await arrived(tap, second, 100)
    assert relay.published >= 200


def start_relay(services, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.cli", "relay"],
                            env=services.env(RELAY_POLL_SECONDS="0.2", **env))


async def test_a_killed_relay_resumes_from_its_checkpoint(services, pool):
    async with Tap(services.rabbitmq_url) as tap:
        streams = await append_events(pool, 3000, streams=30)
        relay = start_relay(services, RELAY_BATCH_SIZE="20")
        try:
            async def some():
                return len(tap.for_streams(streams)) > 0
            await eventually(some, what="the first published events")
            relay.send_signal(signal.SIGKILL)
            relay.wait(10)
            before_restart = len({t.event.id for t in tap.for_streams(streams)})
            relay = start_relay(services, RELAY_BATCH_SIZE="20")
            await arrived(tap, streams, 3000)
        finally:
            relay.terminate()
            relay.wait(10)
    ids = [t.event.id for t in tap.for_streams(streams)]
    assert len(set(ids)) == 3000
    assert len(ids) - 3000 <= 20  # at most the one batch in flight at the kill is published twice
    assert before_restart < 3000 or len(ids) == 3000


async def _active_relay_pid(pool) -> int | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted AND a.datname = current_database()",
            (7_420_002,),
        )
        row = await cur.fetchone()
    return int(row[0].rsplit("-", 1)[1]) if row else None


async def test_two_relays_publish_each_event_once_and_the_standby_takes_over(services, pool):
    async with Tap(services.rabbitmq_url) as tap:
        relays = [start_relay(services), start_relay(services)]
        try:
            first = await append_events(pool, 300)
            await arrived(tap, first, 300)
            active = await eventually(lambda: _active_relay_pid(pool), what="an active relay")
            assert active in {r.pid for r in relays}
            async with pool.connection() as conn:
                head = await store.head(conn)
                await eventually(lambda: _checkpoint_at(conn, head), what="the relay checkpoint")
            os.kill(active, signal.SIGKILL)
            second = await append_events(pool, 300)
            await arrived(tap, second, 300)
            assert await _active_relay_pid(pool) not in (None, active)
        finally:
            for r in relays:
                r.terminate()
                r.wait(10)
    ids = [t.event.id for t in tap.for_streams(first | second)]
    assert len(ids) == len(set(ids)) == 600


async def _checkpoint_at(conn, head):
    return await store.load_checkpoint(conn, CHECKPOINT) >= head


async def _async(value):
    return value


async def test_a_notification_wakes_the_idle_relay_long_before_its_next_poll(services, pool):
    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=60)
    async with Tap(services.rabbitmq_url) as tap, running(relay):
        await eventually(lambda: _async(relay.active.is_set()), what="the relay to lead")
        stream = f"relay-{uuid.uuid4()}"
        async with pool.connection() as conn:
            head = await store.head(conn)
            await eventually(lambda: _checkpoint_at(conn, head), what="the relay to drain the backlog and idle")
            await store.append(conn, stream, 0, [Happened()])
            await store.wake_relay(conn)
        await eventually(lambda: _async(len(tap.for_streams({stream})) == 1), timeout=10, what="a woken relay")


async def test_a_successful_command_wakes_the_idle_relay(services, pool):
    from api.app import create_app
    from tests.support import serve

    relay = Relay(services.database_url, services.rabbitmq_url, poll_seconds=60)
    async with Tap(services.rabbitmq_url, "user.#") as tap, running(relay), serve(create_app(services.settings())) as api:
        async with pool.connection() as conn:
            head = await store.head(conn)
            await eventually(lambda: _checkpoint_at(conn, head), what="the relay to drain the backlog and idle")
        email = f"wake-{uuid.uuid4().hex[:8]}@example.com"
        r = await api.post("/auth/register", json={"email": email, "password": "long enough pw", "name": "W"})
        assert r.status_code == 201

        async def published():
            return any(msgspec.json.decode(t.event.data).get("email") == email for t in tap.events)
        await eventually(published, timeout=10, what="the registration on the broker well before the 60 s poll")


def _recorded(stream: str, version: int, type_name: str, position: int) -> Recorded:
    return Recorded(id=uuid.uuid4(), stream_id=stream, version=version, type=type_name, position=position,
                    tx_id=position, recorded_at=datetime.now(UTC), correlation_id=uuid.uuid4())


def test_packing_keeps_each_streams_events_in_order_and_one_type_per_message():
    batch = [_recorded(s, v, t, i) for i, (s, v, t) in enumerate([
        ("a", 1, "product.stock_reserved"), ("b", 1, "order.placed"), ("c", 1, "product.stock_reserved"),
        ("a", 2, "product.stock_released"),  # a changes type: the packet with its earlier event goes out first
        ("c", 2, "product.stock_reserved"), ("d", 1, "order.placed")])]
    packets = pack(batch, max_events=100)
    assert [(p.routing_key, [(e.stream_id, e.version) for e in p.events]) for p in packets] == [
        ("product.stock_reserved", [("a", 1), ("c", 1)]), ("order.placed", [("b", 1), ("d", 1)]),
        ("product.stock_released", [("a", 2)]), ("product.stock_reserved", [("c", 2)])]
    order = {(e.stream_id, e.version): i for i, e in enumerate(e for p in packets for e in p.events)}
    for stream in "abcd":
        versions = sorted(v for s, v in order if s == stream)
        assert [order[(stream, v)] for v in versions] == sorted(order[(stream, v)] for v in versions)


def test_packing_caps_a_message_and_with_one_per_message_keeps_the_log_as_it_is():
    batch = [_recorded(f"s{i}", 1, "order.placed", i) for i in range(7)]
    assert [len(p.events) for p in pack(batch, max_events=3)] == [3, 3, 1]
    singles = pack(batch, max_events=1)
    assert [p.events[0].position for p in singles] == list(range(7))


def test_with_partitions_a_streams_events_share_one_routing_key_with_its_partition():
    batch = [_recorded(f"order-{i}", 1, "order.placed", i) for i in range(40)]
    packets = pack(batch, partitions=2)
    assert {p.routing_key for p in packets} == {"order.placed.p0", "order.placed.p1"}
    for p in packets:
        assert {partition_of(e.stream_id, 2) for e in p.events} == {int(p.routing_key[-1])}


def test_packing_any_interleaving_keeps_every_streams_order():
    import random

    rng = random.Random(7)
    versions, batch = {}, []
    for position in range(3000):
        stream = f"s{rng.randrange(40)}"
        versions[stream] = versions.get(stream, 0) + 1
        batch.append(_recorded(stream, versions[stream], rng.choice(["a.x", "a.y", "b.z"]), position))
    for max_events in (1, 7, 500):
        published = [e for p in pack(batch, max_events=max_events, partitions=3) for e in p.events]
        assert sorted(e.position for e in published) == list(range(3000))
        seen: dict[str, int] = {}
        for e in published:
            assert e.version == seen.get(e.stream_id, 0) + 1, (max_events, e.stream_id, e.version)
            seen[e.stream_id] = e.version
