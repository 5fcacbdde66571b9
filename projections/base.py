"""What a projector is, and how one event is applied to it exactly once."""

import logging
from enum import Enum
from typing import Protocol

from psycopg import AsyncConnection

from events import store
from events.base import Event, Recorded, UnknownEventType

log = logging.getLogger(__name__)


class Projector(Protocol):
    """Turns the events of its streams into rows of its read tables.

    `version` answers which version of a stream the read rows already reflect (0: none), and
    `apply` writes the rows for one event, recording `recorded.version` beside them. Both run inside
    the transaction that also moves the projection's checkpoint.
    """

    name: str
    tables: tuple[str, ...]

    async def version(self, conn: AsyncConnection, stream_id: str) -> int: ...

    async def apply(self, conn: AsyncConnection, recorded: Recorded, event: Event) -> None: ...

    # For the rebuild's bulk path: fold one more event into a stream's state, and COPY all states.
    def fold(self, state, recorded: Recorded, event: Event): ...

    async def write_all(self, conn: AsyncConnection, states: dict) -> None: ...


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


async def apply_one(conn: AsyncConnection, projector: Projector, recorded: Recorded, strict: bool) -> Outcome:
    try:
        event = recorded.event()
    except UnknownEventType:
        if strict:
            raise
        log.warning("projection %s skips unknown event type %s at position %s",
                    projector.name, recorded.type, recorded.position)
        return Outcome.UNKNOWN
    await projector.apply(conn, recorded, event)
    return Outcome.APPLIED


async def project(conn: AsyncConnection, projector: Projector, recorded: Recorded, *, strict: bool = False) -> Outcome:
    """Apply one delivered event with an exactly-once effect, in one transaction.

    At or below the stream's applied version it is a duplicate; beyond the next version the missing
    events are read from the event store and applied first. Rows, versions and the checkpoint commit
    together, so a crash at any point leaves either all of it or none.
    """
    async with conn.transaction():
        # Serialises two consumers of one stream (e.g. during a handover) without a table lock.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           (f"{projector.name}:{recorded.stream_id}",))
        current = await projector.version(conn, recorded.stream_id)
        if recorded.version <= current:
            outcome = Outcome.DUPLICATE
        else:
            if recorded.version > current + 1:
                missing = await store.read_stream(conn, recorded.stream_id, current + 1, recorded.version - 1)
                for earlier in missing:
                    await apply_one(conn, projector, earlier, strict)
            outcome = await apply_one(conn, projector, recorded, strict)
            # Delivered at commit: API requests waiting to read their own write (api/consistency.py).
            await conn.execute("SELECT pg_notify('projected', %s)",
                               (f"{projector.name} {recorded.stream_id} {recorded.version}",))
        await store.save_checkpoint(conn, projector.name, recorded.checkpoint)
    return outcome
