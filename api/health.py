"""Liveness and readiness."""

import asyncio

import aio_pika
from litestar import Response, get
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

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


async def _rabbitmq_ok(url: str) -> bool:
    try:
        connection = await aio_pika.connect(url, timeout=2)
    except Exception:
        return False
    await connection.close()
    return True


@get("/ready", operation_id="ready", tags=["operations"], summary="PostgreSQL and RabbitMQ are reachable",
     responses=None)
async def ready(state: State) -> Response:
    pg, mq = await asyncio.gather(_postgres_ok(state.pool), _rabbitmq_ok(state.settings.rabbitmq_url))
    checks = {"postgres": "ok" if pg else "unreachable", "rabbitmq": "ok" if mq else "unreachable"}
    if pg and mq:
        return Response({"status": "ready", "checks": checks})
    return problem(503, "a dependency is unreachable", checks=checks)
