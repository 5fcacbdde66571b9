"""The rebuild's bulk path: fold the event log in memory with the projectors' own `fold`, then COPY
one row per entity into the (index-less) shadow tables and build their indexes afterwards.

It runs in the rebuild's process for a short log, and for a long one in a process per projection,
so that the second core folds too (`bulk_in_process`). Every copy reads the log up to the same
`head`, so the shadow tables all stand at one checkpoint for the catch-up that follows.
"""

import asyncio
import gc
from collections.abc import AsyncIterator, Callable

from psycopg import AsyncConnection

from events.base import UnknownEventType, decode
from events.topics import like_prefix, matches_any
from projections.base import Projector

BATCH = 20000
COPY_CHUNK = 20000  # entities per COPY transaction: a fraction of a second each
SCHEMA = "rebuild"


def type_patterns(projector: Projector) -> list[str]:
    """SQL LIKE patterns that find at least the event types routed to a projector (its bindings);
    `matches` then keeps exactly those."""
    return [like_prefix(b) for b in projector.bindings]


async def _read_lean(conn: AsyncConnection, head: tuple[int, int], patterns: list[str],
                     part: tuple[int, int]) -> AsyncIterator[list[tuple]]:
    """The events up to `head` in commit order, in batches, through one server-side cursor: one
    index scan for the whole log (a query per batch would plan and skip its way in again each time)."""
    async with conn.transaction(), conn.cursor("rebuild_events", binary=True) as cur:  # binary: cheaper to parse
        await cur.execute(
            "SELECT stream_id, version, type, recorded_at, convert_to(data::text, 'UTF8') FROM events"
            " WHERE (tx_id, position) <= (%s, %s) AND type LIKE ANY(%s)"
            "   AND (hashtext(stream_id) & 2147483647) %% %s = %s"
            " ORDER BY tx_id, position",
            (*head, patterns, part[1], part[0]))
        while batch := await cur.fetchmany(BATCH):
            yield batch


async def bulk(conn: AsyncConnection, projectors: list[Projector], head: tuple[int, int], finish: list[str],
               on_batch: Callable[[int], None] = lambda n: None, part: tuple[int, int] = (0, 1)) -> int:
    """Fold the log up to `head` for `projectors`, COPY their shadow tables, then run `finish` (the
    shadow tables' index and constraint DDL). Returns the number of events folded.

    `part` (k, n): only the streams whose hash is k modulo n, so that n processes can share one
    projection; a stream's events always stay together and in order."""
    states: dict[str, dict] = {p.name: {} for p in projectors}
    routes: dict[str, list[Projector]] = {}  # event type -> the projectors it goes to
    patterns = [pattern for p in projectors for pattern in type_patterns(p)]
    folded = 0
    batches = _read_lean(conn, head, patterns, part)
    # Folding allocates millions of objects that all stay alive until the COPY: the cyclic garbage
    # collector would walk them again and again and find nothing to free.
    gc.disable()
    try:
        async for batch in batches:
            for stream_id, version, type_name, recorded_at, data in batch:
                wanted = routes.get(type_name)
                if wanted is None:
                    wanted = routes[type_name] = [p for p in projectors if matches(p, type_name)]
                if not wanted:
                    continue  # found by the LIKE prefix, bound by no binding
                try:
                    event = decode(type_name, data)
                except UnknownEventType:  # a rebuild must not drop data quietly: it stops, saying where
                    raise UnknownEventType(type_name, f"in stream {stream_id} at version {version}") from None
                for projector in wanted:
                    mine = states[projector.name]
                    state = projector.evolve(mine.get(stream_id), event, version, recorded_at)
                    if state is not None:
                        mine[stream_id] = state
            folded += len(batch)
            on_batch(len(batch))
        for projector in projectors:
            rows = list(states[projector.name].items())
            for start in range(0, len(rows), COPY_CHUNK):
                # Short transactions: while one is open, the live relay cannot read past its id
                # (events/store.visible_bound), so one long COPY would stall every live projection.
                async with conn.transaction():
                    await projector.write_all(conn, dict(rows[start:start + COPY_CHUNK]))
    finally:
        states.clear()
        gc.enable()
        await batches.aclose()  # on a failure: ends the cursor's transaction now, not after the connection closed
    for statement in finish:  # indexes built once over the loaded rows: far cheaper than row by row
        await conn.execute(statement)
    return folded


def matches(projector: Projector, event_type: str) -> bool:
    return matches_any(projector.bindings, event_type)


_progress = None  # a multiprocessing.Value shared with the rebuild's process


def init_worker(progress) -> None:
    global _progress
    _progress = progress


def _count(n: int) -> None:
    with _progress.get_lock():
        _progress.value += n


def bulk_in_process(database_url: str, name: str, head: tuple[int, int], part: tuple[int, int]) -> int:
    """`bulk` for one part of one projection in a process of its own (a ProcessPoolExecutor's worker,
    set up with `init_worker`); progress goes to the shared counter. The caller adds the indexes
    once every part is in."""
    from projections import registry

    async def run() -> int:
        async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f"SET search_path = {SCHEMA}, public")
            return await bulk(conn, [registry()[name]], head, [], _count, part)

    return asyncio.run(run())
