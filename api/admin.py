"""Operator views (admin): the event log and the projections' status."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from api.auth import requires
from api.pagination import Pager, Sort
from projections.status import ProjectionStatus, database_status, with_queues

ADMIN = [requires("admin")]


class LoggedEvent(msgspec.Struct):
    position: int
    id: uuid.UUID
    stream_id: str
    version: int
    type: str
    data: msgspec.Raw
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    actor: str | None
    recorded_at: datetime


class EventPage(msgspec.Struct):
    items: list[LoggedEvent]
    next_cursor: str | None


_BY_POSITION = Sort(("position",), ("bigint",))


@get("/admin/events", guards=ADMIN, operation_id="listEvents", tags=["admin"],
     summary="Browse the event log by position, filtered by stream, type or correlation id")
async def list_events(
    state: State,
    stream_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
    type: Annotated[str | None, QueryParameter(max_length=100)] = None,
    correlation_id: FromQuery[uuid.UUID | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    cursor: FromQuery[str | None] = None,
    after: Annotated[int, QueryParameter(ge=0, description="events after this position (instead of a cursor)")] = 0,
) -> EventPage:
    """Oldest first, each event as stored: `stream_id` is `<kind>-<uuid>` (`order-...`, `product-...`,
    `user-...`, `scrape-...`), `version` its place in that stream, `position` its place in the log."""
    pager = Pager(state.settings.jwt_secret, _BY_POSITION, limit, cursor, listing="events", stream_id=stream_id,
                  type=type, correlation_id=correlation_id)
    where, params = ["position > %s"], [after]
    for value, clause in ((stream_id, "stream_id = %s"), (type, "type = %s"), (correlation_id, "correlation_id = %s")):
        if value is not None:
            where.append(clause)
            params.append(value)
    if (next_after := pager.condition()) is not None:
        where.append(next_after[0])
        params += next_after[1]
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT position, event_id, stream_id, version, type, data::text, correlation_id, causation_id, actor,"
            f" recorded_at FROM events WHERE {' AND '.join(where)} ORDER BY position LIMIT %s", [*params, pager.fetch])
        rows = await cur.fetchall()
    items, next_cursor = pager.page(
        [LoggedEvent(r[0], r[1], r[2], r[3], r[4], msgspec.Raw(r[5].encode()), *r[6:]) for r in rows])
    return EventPage(items=items, next_cursor=next_cursor)


@get("/admin/projections", guards=ADMIN, operation_id="projectionStatus", tags=["admin"],
     summary="Per projection: checkpoint, head, events behind, lag, queued and dead-lettered messages")
async def projection_status(state: State) -> list[ProjectionStatus]:
    """As `orders projections status` prints it; `queued` and `dead_lettered` are null when RabbitMQ
    does not answer."""
    async with state.pool.connection() as conn:
        statuses = await database_status(conn)
    return await with_queues(statuses, await state.broker.connection())


ROUTES = [list_events, projection_status]
