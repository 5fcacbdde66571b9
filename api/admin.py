"""Operator views (admin): the event log and the projections' status."""

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from api.auth import requires
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
    next_cursor: str | None  # the position to pass as `after` for the next page


@get("/admin/events", guards=ADMIN, operation_id="listEvents", tags=["admin"],
     summary="Browse the event log by position, filtered by stream, type or correlation id")
async def list_events(
    state: State,
    stream_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
    type: Annotated[str | None, QueryParameter(max_length=100)] = None,
    correlation_id: FromQuery[uuid.UUID | None] = None,
    after: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> EventPage:
    where, params = ["position > %s"], [after]
    for value, clause in ((stream_id, "stream_id = %s"), (type, "type = %s"), (correlation_id, "correlation_id = %s")):
        if value is not None:
            where.append(clause)
            params.append(value)
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT position, event_id, stream_id, version, type, data::text, correlation_id, causation_id, actor,"
            f" recorded_at FROM events WHERE {' AND '.join(where)} ORDER BY position LIMIT %s", [*params, limit + 1])
        rows = await cur.fetchall()
    items = [LoggedEvent(r[0], r[1], r[2], r[3], r[4], msgspec.Raw(r[5].encode()), *r[6:]) for r in rows[:limit]]
    return EventPage(items=items, next_cursor=str(items[-1].position) if len(rows) > limit else None)


@get("/admin/projections", guards=ADMIN, operation_id="projectionStatus", tags=["admin"],
     summary="Per projection: checkpoint, head, events behind, lag, queued and dead-lettered messages")
async def projection_status(state: State) -> list[ProjectionStatus]:
    async with state.pool.connection() as conn:
        statuses = await database_status(conn)
    return await with_queues(statuses, state.settings.rabbitmq_url)


ROUTES = [list_events, projection_status]
