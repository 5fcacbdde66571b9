import asyncio
import random
import uuid

import msgspec
import pytest

from events import store
from events.base import Meta
from events.store import WrongExpectedVersion
from tests.support import Happened


def new_stream() -> str:
    return f"test-{uuid.uuid4()}"


async def test_appends_and_reads_a_stream_with_its_metadata(pool):
    stream, meta = new_stream(), Meta(actor="user-1", causation_id=uuid.uuid4())
    async with pool.connection() as conn:
        assert await store.append(conn, stream, 0, [Happened(n=1), Happened(n=2)], meta) == 2
        assert await store.append(conn, stream, 2, [Happened(n=3)]) == 3
        events = await store.read_stream(conn, stream)
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.event().n for e in events] == [1, 2, 3]
    assert events[0].type == "test.happened"
    assert events[0].correlation_id == meta.correlation_id and events[0].actor == "user-1"
    assert events[0].causation_id == meta.causation_id
    assert len({e.id for e in events}) == 3
    assert events[0].position < events[1].position < events[2].position


@pytest.mark.parametrize("expected", [0, 1, 3])
async def test_a_wrong_expected_version_raises_and_writes_nothing(pool, expected):
    stream = new_stream()
    async with pool.connection() as conn:
        await store.append(conn, stream, 0, [Happened(), Happened()])
        with pytest.raises(WrongExpectedVersion):
            async with conn.transaction():
                await store.append(conn, stream, expected, [Happened(n=7), Happened(n=8), Happened(n=9)])
        assert [e.event().n for e in await store.read_stream(conn, stream)] == [1, 1]


async def test_a_failed_append_rolls_back_the_other_streams_of_its_transaction(pool):
    a, b = new_stream(), new_stream()
    async with pool.connection() as conn:
        await store.append(conn, b, 0, [Happened()])
        with pytest.raises(WrongExpectedVersion):
            async with conn.transaction():
                await store.append(conn, a, 0, [Happened()])
                await store.append(conn, b, 0, [Happened()])
        assert await store.stream_version(conn, a) == 0
        assert await store.stream_version(conn, b) == 1


async def test_one_append_to_several_streams_writes_them_in_order(pool):
    a, b = new_stream(), new_stream()
    async with pool.connection() as conn:
        await store.append(conn, b, 0, [Happened(seq=1)])
        async with conn.transaction():
            await store.append_many(conn, [(a, 0, [Happened(seq=2), Happened(seq=3)]), (b, 1, [Happened(seq=4)])])
        written = [*await store.read_stream(conn, a), *(await store.read_stream(conn, b))[1:]]
    assert [(e.stream_id, e.version, e.event().seq) for e in written] == [(a, 1, 2), (a, 2, 3), (b, 2, 4)]
    assert [e.position for e in written] == sorted(e.position for e in written)


async def test_one_stale_stream_fails_an_append_to_several_and_names_that_stream(pool):
    a, b = new_stream(), new_stream()
    async with pool.connection() as conn:
        await store.append(conn, b, 0, [Happened()])
        with pytest.raises(WrongExpectedVersion) as refused:
            async with conn.transaction():
                await store.append_many(conn, [(a, 0, [Happened()]), (b, 0, [Happened()])])
        assert (refused.value.stream_id, refused.value.actual) == (b, 1)
        assert await store.stream_version(conn, a) == 0


async def test_a_concurrent_append_to_the_same_version_conflicts(pool):
    stream = new_stream()

    async def append_one(n: int):
        async with pool.connection() as conn:
            async with conn.transaction():
                return await store.append(conn, stream, 0, [Happened(n=n)])

    results = await asyncio.gather(*(append_one(n) for n in range(10)), return_exceptions=True)
    assert sum(r == 1 for r in results) == 1
    assert sum(isinstance(r, WrongExpectedVersion) for r in results) == 9
    async with pool.connection() as conn:
        assert len(await store.read_stream(conn, stream)) == 1


async def test_a_tailing_reader_sees_every_committed_event_once_in_commit_order(pool):
    """8 writers x 500 events on shared streams, with conflicts, while a reader tails the log."""
    writers, per_writer = 8, 500
    streams = [new_stream() for _ in range(24)]
    committed: dict[int, list[int]] = {w: [] for w in range(writers)}  # writer -> seqs in commit order
    conflicts = 0
    done = asyncio.Event()

    async def writer(w: int) -> None:
        nonlocal conflicts
        rng = random.Random(w)
        seq = 0
        async with pool.connection() as conn:
            while seq < per_writer:
                stream = rng.choice(streams)
                version = await store.stream_version(conn, stream)
                if rng.random() < 0.1:
                    version -= 1  # deliberately stale
                batch = [Happened(writer=w, seq=seq + i) for i in range(min(rng.randint(1, 3), per_writer - seq))]
                try:
                    async with conn.transaction():
                        await store.append(conn, stream, version, batch)
                except WrongExpectedVersion:
                    conflicts += 1
                    continue
                committed[w].extend(e.seq for e in batch)
                seq += len(batch)

    seen: list = []

    async def reader() -> None:
        checkpoint = await head_checkpoint()
        async with pool.connection() as conn:
            while True:
                finished = done.is_set()
                batch = await store.read_all(conn, checkpoint, 300)
                seen.extend(e for e in batch if e.stream_id in stream_set)
                if batch:
                    checkpoint = batch[-1].checkpoint
                elif finished:
                    return
                else:
                    await asyncio.sleep(0.005)

    async def head_checkpoint():
        async with pool.connection() as conn:
            return await store.head(conn)

    stream_set = set(streams)
    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    await reading

    assert conflicts > 0
    decoded = [(e, msgspec.json.decode(e.data, type=Happened)) for e in seen]
    # every committed event exactly once, nothing from a failed batch
    assert sorted((h.writer, h.seq) for _, h in decoded) == sorted(
        (w, s) for w, seqs in committed.items() for s in seqs)
    assert len({e.id for e, _ in decoded}) == len(decoded) == writers * per_writer
    # commit order: each writer's events come in the order its transactions committed ...
    for w in range(writers):
        assert [h.seq for _, h in decoded if h.writer == w] == committed[w]
    # ... and each stream's versions come 1, 2, 3, ... with nothing missing or repeated
    versions: dict[str, list[int]] = {}
    for e, _ in decoded:
        versions.setdefault(e.stream_id, []).append(e.version)
    for v in versions.values():
        assert v == list(range(1, len(v) + 1))
    checkpoints = [e.checkpoint for e, _ in decoded]
    assert checkpoints == sorted(checkpoints)


async def test_an_open_transaction_holds_readers_back_instead_of_being_skipped(pool):
    stream_slow, stream_fast = new_stream(), new_stream()
    async with pool.connection() as slow, pool.connection() as fast, pool.connection() as reader:
        start = await store.head(reader)
        async with slow.transaction():
            await store.append(slow, stream_slow, 0, [Happened(n=1)])  # takes the lower position
            async with fast.transaction():
                await store.append(fast, stream_fast, 0, [Happened(n=2)])
            # The fast transaction committed, but the slow one is still open below it.
            assert [e for e in await store.read_all(reader, start) if e.stream_id == stream_fast] == []
        read = [e for e in await store.read_all(reader, start) if e.stream_id in (stream_slow, stream_fast)]
    assert [e.stream_id for e in read] == [stream_slow, stream_fast]


async def test_a_long_transaction_in_another_database_does_not_hold_readers_back(pool):
    import psycopg

    from tests.support import ADMIN_DATABASE_URL

    stream = new_stream()
    async with await psycopg.AsyncConnection.connect(ADMIN_DATABASE_URL) as elsewhere:
        await elsewhere.execute("CREATE TEMP TABLE t (x int)")
        await elsewhere.execute("INSERT INTO t VALUES (1)")  # holds a transaction id, left open
        async with pool.connection() as conn:
            start = await store.head(conn)
            await store.append(conn, stream, 0, [Happened(n=1)])
            read = [e for e in await store.read_all(conn, start) if e.stream_id == stream]
        await elsewhere.rollback()
    assert len(read) == 1
