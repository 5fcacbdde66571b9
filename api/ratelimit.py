"""Fixed-window rate limits kept in PostgreSQL, so every API process shares one count per client."""

import time

from litestar import Request
from litestar.exceptions import HTTPException
from psycopg_pool import AsyncConnectionPool

WINDOW_SECONDS = 60


class TooManyRequests(HTTPException):
    status_code = 429


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def limit(pool: AsyncConnectionPool, request: Request, action: str, per_minute: int) -> None:
    """Count one hit for (action, client address); 429 with Retry-After once over the limit."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO rate_limits AS r (key, window_start, hits) VALUES (%s, %s, 1)"
            " ON CONFLICT (key) DO UPDATE SET"
            "   hits = CASE WHEN r.window_start = excluded.window_start THEN r.hits + 1 ELSE 1 END,"
            "   window_start = excluded.window_start"
            " RETURNING hits",
            (f"{action}:{client_address(request)}", window),
        )
        hits = (await cur.fetchone())[0]
    if hits > per_minute:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        raise TooManyRequests(detail=f"too many {action} attempts; try again in {retry_after}s",
                              headers={"Retry-After": str(retry_after)})
