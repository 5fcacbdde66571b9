"""Liveness and readiness."""

import asyncio

from litestar import Response, get
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from api.probes import Broker
from api.problems import problem


@get("/health", operation_id="health", tags=["operations"], summary="The process is up")
async def health() -> dict[str, str]:
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


@get("/ready", operation_id="ready", tags=["operations"], summary="PostgreSQL and RabbitMQ are reachable",
     responses=None)
async def ready(state: State) -> Response:
    # Shared for a second by every caller (api/probes.py): a load balancer's probes stay cheap.
    pg, mq = await state.readiness.get(lambda: _checks(state))
    checks = {"postgres": "ok" if pg else "unreachable", "rabbitmq": "ok" if mq else "unreachable"}
    if pg and mq:
        return Response({"status": "ready", "checks": checks})
    return problem(503, "a dependency is unreachable", title="Not ready", checks=checks)
