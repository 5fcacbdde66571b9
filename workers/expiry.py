"""`orders worker expiry`: pending orders that were not paid within ORDER_PAYMENT_TIMEOUT expire, and
give their reserved stock back, through the same lifecycle path as a cancellation.

It finds candidates in the `orders` read table (cheap, indexed) and decides on the order's own
stream, so a read table that lags only delays an expiry, and an order paid meanwhile never expires
(the decision sees `paid` and declines). Several of these workers may run: two that pick the same
order conflict on its stream version, and the loser skips it.
"""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

from api import ordering
from events import orders
from events.base import Meta
from events.db import make_pool
from events.errors import DomainError
from events.store import WrongExpectedVersion, wake_relay

log = logging.getLogger(__name__)

BATCH = 100


class System:
    """The caller this worker acts as (an admin may see every order)."""

    id = uuid.UUID(int=0)
    role = "admin"


class Expiry:
    def __init__(self, database_url: str, *, timeout: float, poll_seconds: float | None = None):
        self.pool = make_pool(database_url, min_size=1, max_size=2)
        self.timeout = timedelta(seconds=timeout)
        # Often enough that an order expires within about a tenth of its allowance past its deadline.
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(30.0, max(0.1, timeout / 10))
        self.expired = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open()
        try:
            while not stop.is_set():
                if await self.step() == 0:
                    try:
                        await asyncio.wait_for(stop.wait(), self.poll_seconds)
                    except TimeoutError:
                        pass
        finally:
            await self.pool.close()

    async def step(self) -> int:
        """Expire every pending order that is overdue now; returns how many expired."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM orders WHERE status = 'pending' AND updated_at < now() - make_interval(secs => %s)"
                " ORDER BY updated_at LIMIT %s", (self.timeout.total_seconds(), BATCH))
            due = [r[0] for r in await cur.fetchall()]
        expired = 0
        for order_id in due:
            now = datetime.now(UTC)
            try:
                await ordering.transition(self.pool, order_id, System,
                                          lambda o, now=now: orders.expire(o, now, self.timeout),
                                          Meta(actor="system:expiry"))
                expired += 1
            except (DomainError, WrongExpectedVersion) as exc:
                log.info("expiry skips order %s: %s", order_id, exc)  # paid or cancelled meanwhile
        if expired:
            self.expired += expired
            log.info("expired %d unpaid order(s)", expired)
            async with self.pool.connection() as conn:
                await wake_relay(conn)
        return expired
