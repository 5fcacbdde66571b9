"""Fixed-window rate limits kept in PostgreSQL, so every API process shares one count: requests per
client address (login, register), and failed logins per account."""

import time

from litestar import Request
from litestar.exceptions import HTTPException
from psycopg_pool import AsyncConnectionPool

WINDOW_SECONDS = 60
FAILED_LOGIN_WINDOW_SECONDS = 15 * 60
_SWEEP = 100  # ended counters deleted at most per hit: the work of a hit stays bounded

_HIT = ("INSERT INTO rate_limits AS r (key, window_start, hits, expires_at) VALUES (%(key)s, %(window)s, 1, %(end)s)"
        " ON CONFLICT (key) DO UPDATE SET"
        "   hits = CASE WHEN r.window_start = excluded.window_start THEN r.hits + 1 ELSE 1 END,"
        "   window_start = excluded.window_start, expires_at = excluded.expires_at"
        " RETURNING hits")
# SKIP LOCKED: a hit never waits for another's clean-up, and two clean-ups never lock each other's rows.
_SWEEP_ENDED = ("DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE expires_at <= %s"
                " LIMIT %s FOR UPDATE SKIP LOCKED)")
_FORGIVE = "UPDATE rate_limits SET hits = hits - 1 WHERE key = %s AND window_start = %s AND hits > 0"


class TooManyRequests(HTTPException):
    status_code = 429


def client_address(request: Request) -> str:
    """The connection's peer, or the client a trusted proxy names (api/transport.py trust_proxies)."""
    return request.client.host if request.client else "unknown"


async def limit(pool: AsyncConnectionPool, request: Request, action: str, per_minute: int) -> None:
    """Count one hit for (action, client address); 429 with Retry-After once over the limit."""
    await hit(pool, f"{action}:{client_address(request)}", per_minute, WINDOW_SECONDS, f"too many {action} attempts")


async def hit(pool: AsyncConnectionPool, key: str, allowed: int, window_seconds: int, what: str) -> None:
    """Count one hit for `key` in the current window; 429 with Retry-After once over `allowed`. Counters
    of ended windows are deleted as hits come, so rows do not pile up."""
    now = time.time()
    window = int(now // window_seconds)
    end = (window + 1) * window_seconds
    async with pool.connection() as conn:
        hits = (await (await conn.execute(_HIT, {"key": key, "window": window, "end": end})).fetchone())[0]
        await conn.execute(_SWEEP_ENDED, (int(now), _SWEEP))
    if hits > allowed:
        retry_after = max(1, int(end - now + 0.999))
        raise TooManyRequests(detail=f"{what}; try again in {retry_after}s", headers={"Retry-After": str(retry_after)})


async def forgive(pool: AsyncConnectionPool, key: str, window_seconds: int) -> None:
    """Take back one hit of the current window (a login that succeeded after all)."""
    async with pool.connection() as conn:
        await conn.execute(_FORGIVE, (key, int(time.time() // window_seconds)))
