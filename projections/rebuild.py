"""`orders projections rebuild`: replay the event store into fresh shadow tables with the live
projectors' own code (their `evolve`, folded in memory, written with COPY), catch up with the live
consumers' `fold_batch`, then swap them in while the API keeps serving.

The shadow tables live in a schema `rebuild` with the same names, and the replay runs with
`search_path = rebuild, public`: the projectors' unqualified SQL writes the shadow tables and still
reads `public.events`. The swap locks the live tables, replays the last events, and moves the shadow
tables into `public` in one transaction, so a reader sees the old table or the new one, never a
half-built one; it waits (it does not fail) for the moment of the swap.
"""

import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from psycopg import AsyncConnection

from events import store
from events.base import decode
from projections import registry
from projections.base import Projector, fold_batch
from workers import topology

SCHEMA = "rebuild"
BATCH = 20000


def _matches(projector: Projector, event_type: str) -> bool:
    return any(event_type.startswith(b.rstrip("#")) for b in topology.PROJECTIONS[projector.name])


def progress_bar(done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-9)
    left = (total - done) / rate if rate and total > done else 0
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events"
                     f"  {rate:,.0f} events/s  {left:,.0f}s left ")
    sys.stderr.flush()


async def _replay(conn: AsyncConnection, projectors: list[Projector], after: tuple[int, int],
                  on_batch: Callable[[int], None] = lambda n: None) -> tuple[tuple[int, int], int]:
    """Catch up event by event from `after`, through the live consumers' `fold_batch`."""
    applied = 0
    while batch := await store.read_all(conn, after, BATCH):
        async with conn.transaction():
            for projector in projectors:
                mine = [r for r in batch if _matches(projector, r.type)]
                if mine:
                    await fold_batch(conn, projector, mine, strict=True)  # unknown types fail loudly
        after = batch[-1].checkpoint
        applied += len(batch)
        on_batch(applied)
    return after, applied


class Step(NamedTuple):
    """What folding needs of a recorded event (the bulk path reads only these columns)."""

    stream_id: str
    version: int
    recorded_at: datetime


async def _read_lean(conn: AsyncConnection, after: tuple[int, int]) -> list[tuple]:
    bound = await store.visible_bound(conn)
    cur = conn.cursor(binary=True)  # binary rows: cheaper to parse than text
    await cur.execute(
        "SELECT tx_id, position, stream_id, version, type, recorded_at, convert_to(data::text, 'UTF8') FROM events"
        " WHERE (tx_id, position) > (%s, %s) AND tx_id < %s ORDER BY tx_id, position LIMIT %s",
        (after[0], after[1], bound, BATCH))
    return await cur.fetchall()


async def _bulk(conn: AsyncConnection, projectors: list[Projector],
                on_batch: Callable[[int], None] = lambda n: None) -> tuple[tuple[int, int], int]:
    """The whole log folded in memory with each projector's `fold` (its `evolve`), then written with
    COPY: one row per entity instead of a round trip per event."""
    states: dict[str, dict] = {p.name: {} for p in projectors}
    routes: dict[str, list[Projector]] = {}  # event type -> the projectors it goes to
    after, applied = (0, 0), 0
    while batch := await _read_lean(conn, after):
        for tx_id, position, stream_id, version, type_name, recorded_at, data in batch:
            wanted = routes.get(type_name)
            if wanted is None:
                wanted = routes[type_name] = [p for p in projectors if _matches(p, type_name)]
            if not wanted:
                continue
            event = decode(type_name, data)  # an unknown type raises: a rebuild must not drop data quietly
            step = Step(stream_id, version, recorded_at)
            for projector in wanted:
                folded = states[projector.name]
                state = projector.fold(folded.get(stream_id), step, event)
                if state is not None:
                    folded[stream_id] = state
        after = (batch[-1][0], batch[-1][1])
        applied += len(batch)
        on_batch(applied)
    async with conn.transaction():
        for projector in projectors:
            await projector.write_all(conn, states[projector.name])
    return after, applied


async def _differences(conn: AsyncConnection, table: str) -> int:
    cur = await conn.execute(
        f"SELECT (SELECT count(*) FROM (TABLE {SCHEMA}.{table} EXCEPT ALL TABLE public.{table}) a)"
        f"     + (SELECT count(*) FROM (TABLE public.{table} EXCEPT ALL TABLE {SCHEMA}.{table}) b)")
    return (await cur.fetchone())[0]


async def rebuild(database_url: str, names: list[str] | None = None, *, verify: bool = False, dry_run: bool = False,
                  progress: Callable[[int, int, float], None] | None = progress_bar) -> dict:
    """Returns {"events": replayed, "seconds": ..., "differences": {table: rows} (with verify)}."""
    known = registry()
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ValueError(f"unknown projection(s): {', '.join(unknown)}; known: {', '.join(known)}")
    projectors = [known[n] for n in (names or known)]
    tables = [t for p in projectors for t in p.tables]
    started = time.monotonic()
    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table in tables:
            await conn.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)")
        await conn.execute(f"SET search_path = {SCHEMA}, public")
        total = (await (await conn.execute("SELECT count(*) FROM public.events")).fetchone())[0]
        report = (lambda n: progress(n, total, started)) if progress else (lambda n: None)
        checkpoint, replayed = await _bulk(conn, projectors, report)
        result = {"events": replayed, "differences": {}}
        async with conn.transaction():
            for table in tables:
                await conn.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE")
            checkpoint, tail = await _replay(conn, projectors, checkpoint)
            result["events"] += tail
            if verify or dry_run:
                result["differences"] = {t: await _differences(conn, t) for t in tables}
            if not dry_run:
                for table in reversed(tables):  # dependents (order_lines) before what they refer to
                    await conn.execute(f"DROP TABLE public.{table} CASCADE")
                for table in tables:
                    await conn.execute(f"ALTER TABLE {SCHEMA}.{table} SET SCHEMA public")
                for projector in projectors:
                    await store.save_checkpoint(conn, projector.name, checkpoint)
        await conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    if progress:
        sys.stderr.write("\n")
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
