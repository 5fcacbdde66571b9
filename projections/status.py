"""Where each projection stands: checkpoint, head, events behind, lag, and its queues."""

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection
from psycopg import AsyncConnection

from events import broker, store
from events.settings import settings
from events.topics import matches_any
from projections import registry


class ProjectionStatus(msgspec.Struct):
    name: str
    checkpoint: int  # position of the last event applied (in commit order)
    head: int  # position of the newest event readers may see
    events_behind: int
    lag_seconds: float
    queued: int | None = None
    dead_lettered: int | None = None


async def database_status(conn: AsyncConnection) -> list[ProjectionStatus]:
    """The relay (every event) and each projection (the events its bindings take)."""
    head = await store.head(conn)
    result = []
    for name, bindings in [("relay", ("#",)), *((p.name, p.bindings) for p in registry().values())]:
        checkpoint = await store.load_checkpoint(conn, name)
        cur = await conn.execute(
            "SELECT type, count(*), extract(epoch FROM now() - min(recorded_at)) FROM events"
            " WHERE (tx_id, position) > (%s, %s) AND (tx_id, position) <= (%s, %s) GROUP BY type",
            (*checkpoint, *head))
        behind = [(n, lag) for t, n, lag in await cur.fetchall() if matches_any(bindings, t)]
        result.append(ProjectionStatus(name=name, checkpoint=checkpoint[1], head=head[1],
                                       events_behind=sum(n for n, _ in behind),
                                       lag_seconds=round(float(max((lag for _, lag in behind), default=0)), 3)))
    return result


async def connect(rabbitmq_url: str, **options) -> AbstractConnection | None:
    """A connection to RabbitMQ for `with_queues`, or None when it cannot be reached."""
    try:
        return await aio_pika.connect(rabbitmq_url, **{"timeout": 5, **options})
    except Exception:
        return None


async def with_queues(statuses: list[ProjectionStatus], connection: AbstractConnection | None,
                      partitions: int | None = None) -> list[ProjectionStatus]:
    """Adds message counts of each projection's queues (all its partitions) and dead-letter queues (left
    empty without a connection, or while a queue is not declared yet)."""
    if connection is None:
        return statuses
    partitions = settings().projection_partitions if partitions is None else partitions
    for s in statuses:
        if s.name == "relay":
            continue
        queues = broker.partition_queues(s.name, partitions)
        for attr, names in (("queued", queues), ("dead_lettered", [broker.dlq(q) for q in queues])):
            counts = [await _message_count(connection, name) for name in names]
            if None not in counts:
                setattr(s, attr, sum(counts))
    return statuses


async def _message_count(connection: AbstractConnection, queue: str) -> int | None:
    try:
        async with connection.channel() as channel:  # the broker closes it if the queue is missing
            declared = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return None  # not declared yet
    return declared.declaration_result.message_count
