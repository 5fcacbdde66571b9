"""`orders worker fulfilment`: for demos, moves paid orders to shipped and shipped ones to delivered
after configurable delays, through the same use case as the API (as an admin would)."""

import asyncio
import logging
import uuid

from api import ordering
from events import orders
from events.base import Meta
from events.db import make_pool
from events.errors import DomainError
from events.store import WrongExpectedVersion, wake_relay

log = logging.getLogger(__name__)


class System:
    """The actor recorded on the events this worker causes."""

    id = uuid.UUID(int=0)
    role = "admin"


class Fulfilment:
    def __init__(self, database_url: str, *, ship_after: float, deliver_after: float, poll_seconds: float = 1.0):
        self.pool = make_pool(database_url, min_size=1, max_size=2)
        self.ship_after, self.deliver_after, self.poll_seconds = ship_after, deliver_after, poll_seconds
        self.moved = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open()
        try:
            while not stop.is_set():
                if await self.step() == 0:
                    try:
                        await asyncio.wait_for(stop.wait(), self.poll_seconds)
                    except asyncio.TimeoutError:
                        pass
        finally:
            await self.pool.close()

    async def step(self) -> int:
        """Advance every order that is due; returns how many moved."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, status FROM orders WHERE (status = 'paid' AND updated_at < now() - make_interval(secs => %s))"
                " OR (status = 'shipped' AND updated_at < now() - make_interval(secs => %s))"
                " ORDER BY updated_at LIMIT 100", (self.ship_after, self.deliver_after))
            due = await cur.fetchall()
        moved = 0
        for order_id, status in due:
            decide = orders.ship if status == "paid" else orders.deliver
            try:
                await ordering.transition(self.pool, order_id, System, lambda o, d=decide: d(o, System.id, "admin"),
                                          Meta(actor="system:fulfilment"))
                moved += 1
            except (DomainError, WrongExpectedVersion) as exc:
                log.info("fulfilment skips order %s: %s", order_id, exc)  # moved on meanwhile (e.g. cancelled)
        if moved:
            self.moved += moved
            async with self.pool.connection() as conn:
                await wake_relay(conn)
        return moved
