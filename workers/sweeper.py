"""Workers that move due orders on through the lifecycle as the system (which may do what an admin
may), through the same command as the API: expiry and the demo fulfilment.

They find candidates in the `orders` read table (cheap, indexed) and decide on the order's own
stream, so a read table that lags only delays a move, and an order that moved on meanwhile is
declined by its decision. Several of one kind may run: two that pick the same order conflict on its
stream version, and the loser skips it.
"""

import asyncio
import logging
import os
import uuid
from collections.abc import Callable

from psycopg import AsyncConnection

from events.base import Event, Meta
from events.commands import ordering
from events.db import make_pool
from events.errors import DomainError
from events.orders import Order
from events.store import WrongExpectedVersion, wake_relay
from events.users import SYSTEM
from workers.runtime import pause

log = logging.getLogger(__name__)

Decide = Callable[[Order | None], list[Event]]


class Sweeper:
    name = "sweeper"  # recorded as the events' actor: system:<name>

    def __init__(self, database_url: str, *, poll_seconds: float):
        self.pool = make_pool(database_url, min_size=1, max_size=2, name=f"orders-{self.name}-{os.getpid()}")
        self.poll_seconds = poll_seconds

    async def due(self, conn: AsyncConnection) -> list[tuple[uuid.UUID, Decide]]:
        """The orders to move now, each with its decision."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open()
        try:
            while not stop.is_set():
                if await self.step() == 0:
                    await pause(stop, self.poll_seconds)
        finally:
            await self.pool.close()

    async def step(self) -> int:
        """Move every order that is due; returns how many moved."""
        async with self.pool.connection() as conn:
            due = await self.due(conn)
        moved = 0
        for order_id, decide in due:
            try:
                await ordering.transition(self.pool, order_id, SYSTEM, decide, Meta(actor=f"system:{self.name}"))
                moved += 1
            except (DomainError, WrongExpectedVersion) as exc:
                log.info("%s skips order %s: %s", self.name, order_id, exc)  # it moved on meanwhile
        if moved:
            log.info("%s moved %d order(s)", self.name, moved)
            async with self.pool.connection() as conn:
                await wake_relay(conn)
        return moved
