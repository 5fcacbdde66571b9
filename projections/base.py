"""What a projector is, and how a batch of delivered events is applied to it exactly once."""

import logging
from enum import Enum
from typing import Protocol

from psycopg import AsyncConnection

from events import store
from events.base import Evolve, Recorded, UnknownEventType

log = logging.getLogger(__name__)


class Projector(Protocol):
    """Turns the events of its streams into rows of its read tables.

    One fold serves every path: the stream kind's `evolve(state, event, version, at)`, the same the
    write side decides from. The live consumers `load` the states a batch touches, fold the batch in
    memory and `save` what changed; the rebuild folds the whole log and COPYs it with `write_all`.
    A state knows the stream version it reflects (`state.version`), which makes delivery exactly-once.
    `bindings` is its subscription: the routing keys of `orders.events` its queue is bound to.
    """

    name: str
    tables: tuple[str, ...]
    bindings: tuple[str, ...]
    evolve: Evolve

    async def version(self, conn: AsyncConnection, stream_id: str) -> int: ...

    async def load(self, conn: AsyncConnection, stream_ids: list[str]) -> dict: ...

    async def save(self, conn: AsyncConnection, states: dict, before: dict) -> None: ...

    async def write_all(self, conn: AsyncConnection, states: dict) -> None: ...


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


def _fold_one(projector: Projector, state, recorded: Recorded, strict: bool):
    try:
        event = recorded.event()
    except UnknownEventType:
        if strict:
            raise
        log.warning("projection %s skips unknown event type %s at position %s",
                    projector.name, recorded.type, recorded.position)
        return state, Outcome.UNKNOWN
    folded = projector.evolve(state, event, recorded.version, recorded.recorded_at)
    return (state if folded is None else folded), Outcome.APPLIED


async def fold_batch(conn: AsyncConnection, projector: Projector, batch: list[Recorded], *,
                     strict: bool = False) -> tuple[list[Outcome], dict[str, int]]:
    """Fold `batch` into the projector's rows; returns each event's outcome and, per stream written,
    the last version applied. Events at or below a stream's stored version are duplicates; beyond the
    next version the missing ones are read from the event store and folded first."""
    streams = sorted({r.stream_id for r in batch})
    before = await projector.load(conn, streams)
    states = dict(before)
    applied: dict[str, int] = {}
    outcomes = []
    for recorded in batch:
        state = states.get(recorded.stream_id)
        current = max(state.version if state is not None else 0, applied.get(recorded.stream_id, 0))
        if recorded.version <= current:
            outcomes.append(Outcome.DUPLICATE)
            continue
        steps = [recorded]
        if recorded.version > current + 1:
            steps = [*await store.read_stream(conn, recorded.stream_id, current + 1, recorded.version - 1), recorded]
        for step in steps:
            state, outcome = _fold_one(projector, state, step, strict)
        states[recorded.stream_id] = state
        applied[recorded.stream_id] = recorded.version
        outcomes.append(outcome)
    changed = {s: states[s] for s in applied if states[s] is not None and states[s] is not before.get(s)}
    if changed:
        await projector.save(conn, changed, before)
    return outcomes, applied


async def project_batch(conn: AsyncConnection, projector: Projector, batch: list[Recorded], *,
                        strict: bool = False) -> list[Outcome]:
    """Apply delivered events with an exactly-once effect, in one transaction: rows, versions and
    the checkpoint commit together, so a crash at any point leaves either all of it or none."""
    if not batch:
        return []
    async with conn.transaction():
        # Serialises two consumers of one stream (e.g. during a handover) without a table lock;
        # taken in one order, so two overlapping batches cannot deadlock.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM (SELECT unnest(%s::text[]) AS k ORDER BY 1) s",
            ([f"{projector.name}:{s}" for s in {r.stream_id for r in batch}],))
        outcomes, applied = await fold_batch(conn, projector, batch, strict=strict)
        # Delivered at commit: API requests waiting to read their own write (api/consistency.py).
        # Duplicates too: their version is in the table already, perhaps put there by a rebuild's
        # swap, which notifies nobody, while a command waits for it.
        notices = dict(applied)
        for r, outcome in zip(batch, outcomes, strict=True):
            if outcome is Outcome.DUPLICATE:
                notices[r.stream_id] = max(notices.get(r.stream_id, 0), r.version)
        if notices:
            await conn.execute("SELECT pg_notify('projected', p) FROM unnest(%s::text[]) AS p",
                               (_notices(projector.name, notices),))
        await store.save_checkpoint(conn, projector.name, max(r.checkpoint for r in batch))
    return outcomes


async def project(conn: AsyncConnection, projector: Projector, recorded: Recorded, *, strict: bool = False) -> Outcome:
    """Apply one delivered event (a batch of one)."""
    return (await project_batch(conn, projector, [recorded], strict=strict))[0]


def _notices(projection: str, applied: dict[str, int], limit: int = 7000) -> list[str]:
    """Lines "<projection> <stream> <version>", packed into as few payloads as NOTIFY's 8 kB allows."""
    payloads, lines, size = [], [], 0
    for stream, version in applied.items():
        line = f"{projection} {stream} {version}"
        if lines and size + len(line) + 1 > limit:
            payloads.append("\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    payloads.append("\n".join(lines))
    return payloads
