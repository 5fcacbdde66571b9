"""Liveness and readiness."""

import asyncio
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from api.probes import Broker
from api.problems import problem


@get("/health", operation_id="health", tags=["operations"], summary="The process is up",
     opt={"public": True, "database": False})
async def health() -> dict[str, str]:
    """Asks nothing of PostgreSQL or RabbitMQ: for a liveness probe."""
    return {"status": "ok"}


async def _postgres_ok(pool: AsyncConnectionPool) -> bool:
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
        return True
    except Exception:
        return False


async def _rabbitmq_ok(broker: Broker) -> bool:
    return await broker.connection() is not None


async def _checks(state: State) -> tuple[bool, bool]:
    return await asyncio.gather(_postgres_ok(state.pool), _rabbitmq_ok(state.broker))


Reachable = Literal["ok", "unreachable"]


class Checks(msgspec.Struct):
    postgres: Reachable
    rabbitmq: Reachable


class Readiness(msgspec.Struct):
    status: Literal["ready"]
    checks: Checks


@get("/ready", operation_id="ready", tags=["operations"], summary="PostgreSQL and RabbitMQ are reachable",
     opt={"public": True, "problems": {503: "PostgreSQL or RabbitMQ is unreachable: `checks` says which."}})
async def ready(state: State) -> Response[Readiness]:
    """For a readiness probe: 200 only when both answer within 2 seconds. The answer is shared for a
    second by every caller (api/probes.py), so a load balancer's probes stay cheap."""
    pg, mq = await state.readiness.get(lambda: _checks(state))
    checks = Checks(postgres="ok" if pg else "unreachable", rabbitmq="ok" if mq else "unreachable")
    if pg and mq:
        return Response(Readiness(status="ready", checks=checks))
    return problem(503, "a dependency is unreachable", checks=msgspec.to_builtins(checks))
