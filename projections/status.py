"""Where each projection stands: checkpoint, head, events behind, lag, and its queues."""

import aio_pika
import msgspec
from psycopg import AsyncConnection

from events import store
from workers import topology


class ProjectionStatus(msgspec.Struct):
    name: str
    checkpoint: int  # position of the last event applied (in commit order)
    head: int  # position of the newest event readers may see
    events_behind: int
    lag_seconds: float
    queued: int | None = None
    dead_lettered: int | None = None


def _type_pattern(binding: str) -> str:
    return binding.replace("#", "%").replace("*", "%")


async def database_status(conn: AsyncConnection) -> list[ProjectionStatus]:
    head = await store.head(conn)
    result = []
    for name, bindings in [("relay", ("#",)), *topology.PROJECTIONS.items()]:
        checkpoint = await store.load_checkpoint(conn, name)
        cur = await conn.execute(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), 0) FROM events"
            " WHERE (tx_id, position) > (%s, %s) AND (tx_id, position) <= (%s, %s) AND type LIKE ANY(%s)",
            (*checkpoint, *head, [_type_pattern(b) for b in bindings]))
        behind, lag = await cur.fetchone()
        result.append(ProjectionStatus(name=name, checkpoint=checkpoint[1], head=head[1], events_behind=behind,
                                       lag_seconds=round(float(lag), 3)))
    return result


async def with_queues(statuses: list[ProjectionStatus], rabbitmq_url: str) -> list[ProjectionStatus]:
    """Adds message counts of each projection's queue and DLQ (left empty if RabbitMQ is unreachable)."""
    try:
        connection = await aio_pika.connect(rabbitmq_url, timeout=5)
    except Exception:
        return statuses
    async with connection:
        for s in statuses:
            if s.name not in topology.PROJECTIONS:
                continue
            queue = topology.projection_queue(s.name)
            for attr, name in (("queued", queue), ("dead_lettered", topology.dlq(queue))):
                channel = await connection.channel()
                try:
                    declared = await channel.declare_queue(name, passive=True)
                    setattr(s, attr, declared.declaration_result.message_count)
                except aio_pika.exceptions.ChannelClosed:
                    pass  # not declared yet
    return statuses


async def redrive(rabbitmq_url: str, projection: str) -> int:
    """Move every message of the projection's DLQ back to its queue, attempts reset. Returns how many."""
    return await topology.redrive(rabbitmq_url, topology.projection_queue(projection))
