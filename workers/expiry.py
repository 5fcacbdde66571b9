"""`orders worker expiry`: pending orders that were not paid within ORDER_PAYMENT_TIMEOUT expire, and
give their reserved stock back, through the same lifecycle path as a cancellation."""

from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection

from events import orders
from workers.sweeper import Sweeper

BATCH = 100


class Expiry(Sweeper):
    name = "expiry"

    def __init__(self, database_url: str, *, timeout: float, poll_seconds: float | None = None):
        # By default often enough that an order expires within a tenth of its allowance past its deadline.
        super().__init__(database_url, poll_seconds=poll_seconds if poll_seconds is not None
                         else min(30.0, max(0.1, timeout / 10)))
        self.timeout = timedelta(seconds=timeout)

    async def due(self, conn: AsyncConnection):
        cur = await conn.execute(
            "SELECT id FROM orders WHERE status = 'pending' AND created_at <= now() - make_interval(secs => %s)"
            " ORDER BY created_at LIMIT %s", (self.timeout.total_seconds(), BATCH))
        now = datetime.now(UTC)
        return [(order_id, lambda o: orders.expire(o, now, self.timeout)) for (order_id,) in await cur.fetchall()]
