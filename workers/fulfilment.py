"""`orders worker fulfilment`: for demos, moves paid orders to shipped and shipped ones to delivered
after configurable delays, as an admin would."""

from psycopg import AsyncConnection

from events import orders
from events.users import SYSTEM
from workers.sweeper import Sweeper


class Fulfilment(Sweeper):
    name = "fulfilment"

    def __init__(self, database_url: str, *, ship_after: float, deliver_after: float, poll_seconds: float = 1.0):
        super().__init__(database_url, poll_seconds=poll_seconds)
        self.ship_after, self.deliver_after = ship_after, deliver_after

    async def due(self, conn: AsyncConnection):
        cur = await conn.execute(
            "SELECT id, status FROM orders WHERE (status = 'paid' AND updated_at < now() - make_interval(secs => %s))"
            " OR (status = 'shipped' AND updated_at < now() - make_interval(secs => %s))"
            " ORDER BY updated_at LIMIT 100", (self.ship_after, self.deliver_after))
        return [(order_id, lambda o, d=orders.ship if status == "paid" else orders.deliver: d(o, SYSTEM))
                for order_id, status in await cur.fetchall()]
