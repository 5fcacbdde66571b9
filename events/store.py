"""The event store: append with optimistic concurrency, read a stream, read everything in commit order.

Functions take a connection so that an append can share its transaction with the write-side guards
(stock, unique emails) that protect invariants spanning streams.
"""

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from events.base import Event, Meta, Recorded

_encode = msgspec.json.encode


class WrongExpectedVersion(Exception):
    def __init__(self, stream_id: str, expected: int, actual: int | None):
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")


# One round trip, for one stream or several (an order and the products it reserves). Each stream's
# head must be at its expected version, and the head's transaction id must not be above ours: a
# transaction that took its id early and appends after a later one committed would otherwise sort
# before the event it follows. That is rare (it needs a long transaction) and is reported as a
# conflict, so the caller retries with a fresh transaction. A refused stream fails the statement
# (events_refuse_stale), so nothing of the batch is written and the transaction cannot commit.
_BATCH = """batch AS (
    SELECT b.stream, b.expected, b.ord, e.doc, e.n
    FROM jsonb_to_recordset(%(batch)s::jsonb) AS b(ord int, stream text, expected int, events jsonb)
    CROSS JOIN LATERAL jsonb_array_elements(b.events) WITH ORDINALITY AS e(doc, n){after_prior}
), checked AS (
    SELECT s.stream, s.expected, coalesce(h.version, 0) AS head,
           coalesce(h.version, 0) = s.expected
           AND (h.tx_id IS NULL OR h.tx_id <= pg_current_xact_id()::text::bigint) AS ok
    FROM (SELECT DISTINCT stream, expected FROM batch) AS s
    LEFT JOIN LATERAL (
        SELECT version, tx_id FROM events WHERE stream_id = s.stream ORDER BY version DESC LIMIT 1
    ) AS h ON true
), inserted AS (
    INSERT INTO events (event_id, stream_id, version, type, data,
                        correlation_id, causation_id, actor, schema_version)
    SELECT gen_random_uuid(), b.stream, b.expected + b.n, b.doc->>'type', b.doc->'data',
           %(correlation)s, %(causation)s, %(actor)s, 1
    FROM batch AS b JOIN checked AS c USING (stream)
    WHERE c.ok
    ORDER BY b.ord, b.n
    RETURNING 1
)"""
_RESULT = """
SELECT events_refuse_stale((SELECT string_agg(stream || ' ' || expected || ' ' || head, E'\\n')
                            FROM checked WHERE NOT ok)),
       (SELECT count(*) FROM inserted)"""


def append_statement(prior: str = "", after: str = "") -> str:
    """The append as one statement, with CTEs of the caller's: `prior` (a CTE named `prior`, run before the
    events are read, e.g. taking locks) and `after` (more writes of the same statement, e.g. the
    write-side rows the events change). One statement: all of it is written, or none."""
    before = f"{prior},\n" if prior else ""
    return (f"WITH {before}" + _BATCH.format(after_prior="\n    CROSS JOIN (SELECT count(*) FROM prior) AS p" if prior else "")
            + (f",\n{after}" if after else "") + _RESULT)


_APPEND = append_statement()

STALE = "OR409"  # the SQLSTATE of events_refuse_stale


class _Doc(msgspec.Struct, array_like=False):
    type: str
    data: Event


class _Append(msgspec.Struct):
    ord: int
    stream: str
    expected: int
    events: list[_Doc]


def append_params(appends: Sequence[tuple[str, int, Sequence[Event]]], meta: Meta | None = None) -> dict:
    """The parameters of `_APPEND` (one JSON text parameter for all the events: cheap to send)."""
    meta = meta or Meta()
    return {"correlation": meta.correlation_id, "causation": meta.causation_id, "actor": meta.actor,
            "batch": _encode([_Append(i, s, v, [_Doc(e.type, e) for e in events])
                              for i, (s, v, events) in enumerate(appends)]).decode()}


def conflict(exc: BaseException) -> WrongExpectedVersion | None:
    """The WrongExpectedVersion an error of `_APPEND` means, if it means one."""
    if isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name == "events_stream_id_version_key":
        # A concurrent append took the version first: "Key (stream_id, version)=(order-..., 2) already exists."
        found = re.search(r"=\((.*), (\d+)\)", exc.diag.message_detail or "")
        return WrongExpectedVersion(found[1] if found else "?", int(found[2]) - 1 if found else -1, None)
    if isinstance(exc, psycopg.Error) and exc.sqlstate == STALE:
        stream, expected, head = (exc.diag.message_detail or "? -1 0").splitlines()[0].rsplit(" ", 2)
        return WrongExpectedVersion(stream, int(expected), int(head))
    return None


async def append(
    conn: AsyncConnection,
    stream_id: str,
    expected_version: int,
    events: Sequence[Event],
    meta: Meta | None = None,
) -> int:
    """Append `events` after `expected_version` (0 for a new stream); returns the new version.

    Raises WrongExpectedVersion when the stream has moved on; nothing of the batch is written
    (run it inside a transaction and let the exception roll it back).
    """
    if events:
        await append_many(conn, [(stream_id, expected_version, events)], meta)
    return expected_version + len(events)


async def append_many(conn: AsyncConnection, appends: Sequence[tuple[str, int, Sequence[Event]]],
                      meta: Meta | None = None) -> None:
    """`append` to several streams in one statement: (stream, expected version, events) each, each
    stream at most once; the events get positions in the order given. Run it in a transaction: a
    refused stream raises WrongExpectedVersion, which rolls the others back."""
    appends = [(stream, expected, events) for stream, expected, events in appends if events]
    if appends:
        await execute_append(conn, _APPEND, append_params(appends, meta))


async def execute_append(conn: AsyncConnection, statement: str, params: dict) -> None:
    """Run a statement of `append_statement`; a refused stream raises WrongExpectedVersion. (In pipeline
    mode the refusal comes at the sync: `pipelined` turns it into the same.)"""
    try:
        await conn.execute(statement, params)
    except psycopg.Error as exc:
        if (refused := conflict(exc)) is not None:
            raise refused from None
        raise


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = %s", (stream_id,))
    return (await cur.fetchone())[0]


COLUMNS = """event_id, stream_id, version, type, position, tx_id, recorded_at,
              correlation_id, causation_id, actor, schema_version, data::text"""


def recorded(row: tuple) -> Recorded:
    """A Recorded from a row of `SELECT {COLUMNS}`."""
    return Recorded(
        id=row[0], stream_id=row[1], version=row[2], type=row[3], position=row[4], tx_id=row[5],
        recorded_at=row[6], correlation_id=row[7], causation_id=row[8], actor=row[9],
        schema_version=row[10], data=msgspec.Raw(row[11].encode()),
    )


async def read_stream(
    conn: AsyncConnection, stream_id: str, from_version: int = 1, to_version: int | None = None
) -> list[Recorded]:
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE stream_id = %s AND version >= %s AND version <= %s"
        " ORDER BY version",
        (stream_id, from_version, to_version if to_version is not None else 2**31 - 1),
    )
    return [recorded(r) for r in await cur.fetchall()]


async def visible_bound(conn: AsyncConnection) -> int:
    """A transaction id below which every transaction of this database has ended.

    That is the snapshot's xmin, except that transactions of other databases on the same server are
    ignored (they never write our events table, and a long one there must not stall our readers).
    The activity is read after the snapshot, in a statement of its own, so a transaction of ours that
    is in the snapshot either shows in the activity or has ended, and its events are visible to the
    read that follows. Run it outside a transaction (autocommit).
    """
    cur = await conn.execute("SELECT pg_current_snapshot()::text")
    xmin, xmax, xip = (await cur.fetchone())[0].split(":")
    if not xip:
        return int(xmax)
    if conn.info.transaction_status != TransactionStatus.IDLE:
        await conn.execute("SELECT pg_stat_clear_snapshot()")  # no cached activity from earlier in it
    cur = await conn.execute(
        "SELECT backend_xid::text::bigint FROM pg_stat_activity"
        "  WHERE datname = current_database() AND backend_xid IS NOT NULL"
        " UNION ALL SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database = current_database()")
    ours = {r[0] for r in await cur.fetchall()}
    running = [int(x) for x in xip.split(",") if int(x) % 2**32 in ours]
    return min(running) if running else int(xmax)


async def read_all(conn: AsyncConnection, after: tuple[int, int] = (0, 0), limit: int = 1000) -> list[Recorded]:
    """Events after the checkpoint `(tx_id, position)`, in commit order, never skipping one.

    Only transactions below `visible_bound` are read: each of those has committed or aborted, so
    nothing can later appear before the returned rows. A transaction that is still open holds the
    reader back (it does not skip past it); it shows as lag, not as loss.
    """
    bound = await visible_bound(conn)
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE (tx_id, position) > (%s, %s) AND tx_id < %s"
        " ORDER BY tx_id, position LIMIT %s",
        (after[0], after[1], bound, limit),
    )
    return [recorded(r) for r in await cur.fetchall()]


async def head(conn: AsyncConnection) -> tuple[int, int]:
    """The checkpoint of the newest event a reader may see now."""
    bound = await visible_bound(conn)
    cur = await conn.execute(
        "SELECT tx_id, position FROM events WHERE tx_id < %s ORDER BY tx_id DESC, position DESC LIMIT 1", (bound,))
    row = await cur.fetchone()
    return (row[0], row[1]) if row else (0, 0)


async def load_checkpoint(conn: AsyncConnection, name: str) -> tuple[int, int]:
    cur = await conn.execute("SELECT tx_id, position FROM checkpoints WHERE name = %s", (name,))
    row = await cur.fetchone()
    return (row[0], row[1]) if row else (0, 0)


async def save_checkpoint(conn: AsyncConnection, name: str, checkpoint: tuple[int, int]) -> None:
    """Move a checkpoint forward; never backward (a redelivered old event must not rewind it)."""
    await conn.execute(
        "INSERT INTO checkpoints AS c (name, tx_id, position) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position,"
        "   updated_at = now()"
        " WHERE (c.tx_id, c.position) < (excluded.tx_id, excluded.position)",
        (name, checkpoint[0], checkpoint[1]),
    )


RELAY_CHANNEL = "orders_events"


async def wake_relay(conn: AsyncConnection) -> None:
    """Tell the relay that events were committed. Call it after the commit, outside the transaction:
    a NOTIFY inside it would serialise every commit on the notification queue's lock."""
    await conn.execute(f"NOTIFY {RELAY_CHANNEL}")


@asynccontextmanager
async def pipelined(conn: AsyncConnection) -> AsyncIterator[psycopg.AsyncPipeline]:
    """One transaction in pipeline mode: BEGIN, the block's statements, COMMIT, sent in as many round
    trips as the block has syncs plus one (results of earlier statements are read after
    `await pipeline.sync()`). An append refused on its expected version raises WrongExpectedVersion
    and commits nothing: the refusal fails its statement, so the queued COMMIT cannot commit."""
    try:
        async with conn.pipeline() as pipeline:
            await conn.execute("BEGIN")
            yield pipeline
            await conn.execute("COMMIT")
    except BaseException as exc:
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            with suppress(psycopg.Error):  # a broken connection: the server ended the transaction
                await conn.execute("ROLLBACK")
        if isinstance(exc, psycopg.Error) and (refused := conflict(exc)) is not None:
            raise refused from None
        raise
